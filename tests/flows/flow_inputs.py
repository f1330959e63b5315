"""Inputs the flow tests share: small training configurations and a market whose predictable part is planted."""

from stockcast.data.generator import MarketSpec

SMALL_CONFIG = """
feature_set = "full"
seed = 7

[backtest]
n_folds = 3
test_days = 60
gap_days = 1
window = "expanding"
min_train_days = 120

[gate]
alpha = 0.05
min_days = 20

[[candidates]]
name = "naive"
factory = "naive"

[[candidates]]
name = "drift"
factory = "drift"

[[candidates]]
name = "ridge"
factory = "ridge"
grid = { alpha = [10.0] }

[[candidates]]
name = "hist_gbm"
factory = "hist_gradient_boosting"
params = { max_iter = 30, min_samples_leaf = 50 }
grid = { learning_rate = [0.1] }

[[candidates]]
name = "catboost"
factory = "catboost"
params = { iterations = 40, thread_count = 1 }
grid = { depth = [3] }
"""

# Naive and ridge only: a quick TrainFlow run that still beats naive on the planted market, for the tests that need
# a champion (or a run to resume) rather than a model selection.
QUICK_CONFIG = (
    SMALL_CONFIG[: SMALL_CONFIG.index('[[candidates]]\nname = "drift"')]
    + """
[[candidates]]
name = "ridge"
factory = "ridge"
grid = { alpha = [10.0] }
"""
)

# A market whose predictable part is strong enough that 40 tickers x 2.5 years settle the gate clearly.
PLANTED = MarketSpec(
    n_tickers=40,
    start="2022-06-01",
    end="2024-12-31",
    seed=5,
    reversal_speed=0.5,
    overreaction_share=1.0,
    earnings_drift_share=0.5,
    valuation_pull=0.01,
)
