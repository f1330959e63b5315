"""stockcast: predict tomorrow's close, and keep the model that does it in production.

One package per lifecycle stage; a stage imports only the stages before it (``tests/unit/test_architecture.py``):

    core      storage, registry, flow runs and events, configuration parsing, card components
    data      the CSV contract, sources, validation, snapshots (generated markets in data.synthetic)
    train     configuration, model zoo, walk-forward backtest, gate, selection, training card, PR report
    serve     serving bundle, answers, micro-batching, client, batch prediction
    deploy    configuration, packaging, targets, smoke test, rollout
    operate   configuration, prediction tables, decisions, monitoring, the daily loop

``flowbase`` is what every flow in ``flows/`` builds on. The feature library (``features``) sits below all of them
and imports nothing of ``stockcast``.
"""
