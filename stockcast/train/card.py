"""TrainFlow's card: the gate's verdict, the leaderboard, the lineage, the folds, and whether the challenger's edge
over the naive baseline is real."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import pandas as pd

from stockcast.core.cards import line_chart, scatter_chart, table
from stockcast.core.registry import ModelRecord
from stockcast.train.gate import daily_losses

if TYPE_CHECKING:  # both load the model zoo (scikit-learn, CatBoost), which the card step does not need
    from stockcast.train.backtest import Fold
    from stockcast.train.selection import Selection


def calibration(predictions: pd.DataFrame, *, bins: int = 10) -> pd.DataFrame:
    """Mean predicted and mean realised next-day return per decile of the prediction: a model with a real signal
    shows realised returns rising with predicted ones; a flat line means its ranking carries nothing."""
    decile = pd.qcut(predictions["predicted_return"].rank(method="first"), bins, labels=False)
    grouped = predictions.groupby(decile)
    return pd.DataFrame(
        {"predicted_return": grouped["predicted_return"].mean(), "realised_return": grouped["next_return"].mean()}
    ).reset_index(drop=True)


def cumulative_advantage(challenger: pd.DataFrame, naive: pd.DataFrame) -> pd.DataFrame:
    """Running sum over test days of (naive's daily squared error - the challenger's): rising while the
    challenger beats naive. It is the series the gate's Diebold-Mariano test is computed on."""
    difference = daily_losses(naive) - daily_losses(challenger)
    return pd.DataFrame({"date": difference.index, "cumulative_advantage": difference.cumsum().to_numpy()})


def training_card(
    selection: Selection, folds: Sequence[Fold], record: ModelRecord, promoted: bool, *, data_notes: str = ""
) -> Sequence:
    """What TrainFlow's card shows: the gate's verdict, the leaderboard, lineage, folds (with ``data_notes``: how
    they were sized, which targets were dropped), and whether the challenger's edge over naive is real (calibration
    by decile, cumulative advantage over the test days)."""
    from metaflow.cards import Markdown

    board = selection.leaderboard
    shown = [c for c in ["rank", "candidate_id", "mean_fold_rmse_return", "rmse_return_vs_naive", "mean_fold_rmse",
                         "rmse_vs_naive", "rmse_vs_oracle", "mape", "hit_rate", "n_clipped", "train_seconds"]
             if c in board.columns]  # fmt: skip
    comparisons = pd.DataFrame(selection.decision.comparisons)
    if len(comparisons):  # p-values span orders of magnitude: rounding to 4 places would show 1.7e-06 as 0
        comparisons["p_value"] = comparisons["p_value"].map(lambda p: f"{p:.3g}")
    challenger = selection.challenger_predictions
    fold_table = pd.DataFrame(
        [{k: v.strftime("%Y-%m-%d") if isinstance(v, pd.Timestamp) else v for k, v in vars(f).items()} for f in folds]
    )
    verdict = "PROMOTED to champion" if promoted else "NOT promoted"
    name = selection.challenger.candidate_id
    return [
        Markdown(f"# Model `{record.version}`: {verdict}"),
        Markdown(f"**Gate.** {selection.decision.reason}"),
        *([table(comparisons)] if len(comparisons) else []),
        Markdown(
            "## Leaderboard (walk-forward)\n\nRanked by the mean fold RMSE of the predicted next-day return, which "
            "is scale-free (a $500 stock weighs as a $5 one); RMSE on price beside it. `n_clipped`: predictions "
            "outside the band of returns the training fold saw, clipped to it."
        ),
        table(board[shown]),
        Markdown("## Lineage"),
        table(pd.DataFrame(list(record.lineage().items()), columns=["", "value"])),
        Markdown(f"## Folds\n\n{data_notes}" if data_notes else "## Folds"),
        table(fold_table),
        Markdown(f"## {name}: realised vs predicted next-day return, by decile of the prediction"),
        scatter_chart(calibration(challenger), x="predicted_return", y="realised_return"),
        Markdown(f"## {name} vs naive: cumulative daily squared-error advantage (rising = {name} is better)"),
        line_chart(cumulative_advantage(challenger, selection.naive_predictions), x="date", y="cumulative_advantage"),
    ]
