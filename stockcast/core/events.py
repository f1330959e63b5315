"""Names of the Metaflow events that chain the deployed flows. Each is namespaced by Metaflow to the project and
branch (``namespaced_event_name``: ``mfns.stockcast.<branch>.<name>``), so a test branch never starts production's
flows. Kept apart from the modules that compute, so that importing them costs a flow's every task nothing."""

DATA_EVENT = "data_arrived"
"""Published by the data producer to start IngestFlow; its payload names the day's files:
``{"prices": "s3://...", "financials": "s3://...", "today": "YYYY-MM-DD"}``."""
RETRAIN_EVENT = "retrain"
"""Published by MonitorFlow when the champion should be retrained; TrainFlow is ``@trigger``-ed by it on Argo
Workflows. Outside a deployment the daily loop (``stockcast.operate.loop``) starts TrainFlow itself."""
