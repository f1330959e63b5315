"""Model selection: the training configuration, the model zoo, the walk-forward backtest, the promotion gate, the
library behind TrainFlow's steps, its card and the pull-request report."""
