"""Walk-forward backtest and metrics: how every candidate is scored, on the same folds and the same rows.

Timing convention (DESIGN.md §4). A row at date d holds features known at the close of d and the target
`next_close`, the close of the ticker's next trading day d+1. Folds split the trading calendar by date only:

    train: [train_start .. train_end]   gap: gap_days dates   test: [test_start .. test_end]

The last training row (train_end) has its target realised at train_end + 1, which is a gap date when
gap_days >= 1: so the training set is complete before the test window opens, and no training target coincides
with a test date. A model refitted every evening could have been trained exactly like this. A ticker with
missing days (a trading halt) could still carry a target from beyond the gap; `backtest` drops such training rows
explicitly, so the guard does not rest on the calendar being regular.

A backtest can run in tasks, each on a group of folds: `evaluate_candidate` puts the pieces back together, and
scores them exactly as one backtest over every fold.

Metrics are data: `score_predictions` returns one row per fold and a dict of overall figures; `leaderboard`
ranks candidates by mean fold RMSE of the predicted return (scale-free: a $500 stock weighs as much as a $5 one),
whose first row is the challenger. RMSE on price, the figure users ask for, is reported beside it.

Fold sizes adapt to the history (`plan_fold_sizes`): a year of prices leaves about 120 trading days after the
features' warm-up, too few for four quarterly test windows after a year of training, so the windows shrink in
proportion, or the run stops with one sentence that counts the warm-up and names the setting to change.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd

from stockcast.core.errors import UserError
from stockcast.core.frames import require_columns
from stockcast.data.monthly import FrameRows, RowSource, in_row_order, read_rows
from stockcast.train.candidates import (
    MODELLING_FRAME,
    TARGET_COLUMN,
    CandidateSpec,
    next_close_from_return,
    usable_mask,
)
from stockcast.train.factories import fit_candidate

ORACLE_COLUMN = "oracle_next_close"
NEXT_DATE_COLUMN = "next_date"
"""The date of the row's target close (the ticker's next row), beside the target (``features.next_day_target``)."""
SELECTION_COLUMNS = ["date", "ticker", "is_warm", "next_close", TARGET_COLUMN, NEXT_DATE_COLUMN]
"""What decides whether a row is trained on: its keys, warm-up flag, target and when the target is realised."""
CLIPPED_COLUMN = "clipped"
FOLD_WINDOWS = ("expanding", "rolling")
MIN_TEST_DAYS = 5
MIN_TRAIN_DAYS = 40


class HistoryTooShortError(UserError):
    """The data is too short for the walk-forward backtest, even with adapted folds."""

    headline = "History too short"


@dataclass(frozen=True)
class FoldSizes:
    """The fold sizes a backtest runs with (the configured ones, or adapted to a short history)."""

    n_folds: int
    test_days: int
    min_train_days: int
    gap_days: int
    usable_days: int
    adapted: bool

    def describe(self) -> str:
        """One line for logs and cards."""
        how = "adapted to the history" if self.adapted else "as configured"
        return (
            f"{self.n_folds} folds of {self.test_days} test days after at least {self.min_train_days} training days "
            f"and a gap of {self.gap_days} ({how}; {self.usable_days} usable trading days)"
        )


def plan_fold_sizes(
    n_days: int,
    *,
    warm_up_days: int,
    n_folds: int,
    test_days: int,
    gap_days: int,
    min_train_days: int,
    adapt: bool,
    min_test_total: int,
    feature_set: str,
) -> FoldSizes:
    """The fold sizes for a history of ``n_days`` trading days whose first ``warm_up_days`` (the feature set's
    longest look-back, less one) have no warm features, and whose last day has no target yet.

    When the configured folds do not fit and ``adapt`` is on, the test windows and the first training window shrink
    in proportion, to at least ``MIN_TEST_DAYS`` per fold (and ``min_test_total`` in all, so the gate can judge) and
    ``MIN_TRAIN_DAYS``; otherwise ``HistoryTooShortError`` says what is short, by how much, and what to change.
    """
    usable = max(n_days - warm_up_days - 1, 0)
    needed = min_train_days + gap_days + n_folds * test_days
    if usable >= needed:
        return FoldSizes(n_folds, test_days, min_train_days, gap_days, usable, adapted=False)
    smallest_test = max(MIN_TEST_DAYS, -(-min_test_total // n_folds))
    smallest = MIN_TRAIN_DAYS + gap_days + n_folds * smallest_test
    if adapt and usable >= smallest:
        scale = (usable - gap_days) / (min_train_days + n_folds * test_days)
        adapted_test = max(smallest_test, int(test_days * scale))
        adapted_test = min(adapted_test, (usable - gap_days - MIN_TRAIN_DAYS) // n_folds)
        adapted_train = usable - gap_days - n_folds * adapted_test
        return FoldSizes(n_folds, adapted_test, adapted_train, gap_days, usable, adapted=True)
    required = smallest if adapt else needed
    raise HistoryTooShortError(
        f"the data has {n_days} trading days; feature set '{feature_set}' spends the first {warm_up_days} of each "
        f"ticker's history warming up its longest look-back and the last has no next day yet, leaving {usable} to "
        f"train and test on, fewer than the {required} the backtest needs "
        + (
            f"even adapted (at least {MIN_TRAIN_DAYS} training days + gap {gap_days} + {n_folds} folds x "
            f"{smallest_test} test days)"
            if adapt
            else f"(backtest.min_train_days {min_train_days} + gap_days {gap_days} + n_folds {n_folds} x "
            f"test_days {test_days}; set backtest.adapt = true to shrink them)"
        )
        + "; supply more history, or lower backtest.n_folds in the training configuration"
    )


@dataclass(frozen=True)
class Fold:
    """One walk-forward fold: inclusive training and test date ranges on the trading calendar."""

    index: int
    train_start: pd.Timestamp
    train_end: pd.Timestamp
    test_start: pd.Timestamp
    test_end: pd.Timestamp
    n_train_days: int
    n_test_days: int


@dataclass(frozen=True)
class CandidateEvaluation:
    """A candidate's backtest: its per-row predictions, per-fold metrics and overall metrics."""

    candidate_id: str
    predictions: pd.DataFrame
    per_fold: pd.DataFrame
    overall: dict[str, Any]


def walk_forward_folds(
    dates: pd.Series | pd.Index | np.ndarray | Sequence[Any],
    *,
    n_folds: int,
    test_days: int,
    gap_days: int,
    window: Literal["expanding", "rolling"],
    min_train_days: int,
    train_days: int | None = None,
) -> list[Fold]:
    """Split the trading calendar into `n_folds` consecutive test windows at its end, each after a gap.

    `dates` are the dates of the rows that will be trained and scored (duplicates across tickers are fine; the
    calendar is their sorted unique values). Test windows are `test_days` trading days long, adjacent and in
    time order; the last ends on the last date. Each training window ends `gap_days` trading days before its
    test window and starts at the first date ("expanding") or `train_days` dates before its end ("rolling").
    The first fold must have at least `min_train_days` training dates, otherwise a ValueError says how many
    dates are needed.
    """
    for name, value in {"n_folds": n_folds, "test_days": test_days, "min_train_days": min_train_days}.items():
        if value < 1:
            raise ValueError(f"{name} must be a positive number of trading days/folds, got {value}")
    if gap_days < 1:
        raise ValueError(
            f"gap_days must be at least 1 (got {gap_days}): the last training row's target is the next day's "
            "close, which must be realised before the first test date"
        )
    if window not in FOLD_WINDOWS:
        raise ValueError(f"window must be one of {FOLD_WINDOWS}, got {window!r}")
    if window == "rolling" and (train_days is None or train_days < min_train_days):
        raise ValueError(f"a rolling window needs train_days >= min_train_days ({min_train_days}), got {train_days}")

    calendar = pd.DatetimeIndex(dates).unique().dropna().sort_values()
    needed = min_train_days + gap_days + n_folds * test_days
    if len(calendar) < needed:
        raise ValueError(
            f"the walk-forward backtest needs at least {needed} trading days (min_train_days {min_train_days} "
            f"+ gap_days {gap_days} + n_folds {n_folds} x test_days {test_days}), but the data has "
            f"{len(calendar)}; use fewer or shorter folds, or more history"
        )

    folds = []
    first_test_position = len(calendar) - n_folds * test_days
    for index in range(n_folds):
        test_start = first_test_position + index * test_days
        train_end = test_start - gap_days - 1
        train_start = 0 if window == "expanding" else max(0, train_end + 1 - int(train_days or 0))
        folds.append(
            Fold(
                index=index,
                train_start=calendar[train_start],
                train_end=calendar[train_end],
                test_start=calendar[test_start],
                test_end=calendar[test_start + test_days - 1],
                n_train_days=train_end - train_start + 1,
                n_test_days=test_days,
            )
        )
    return folds


def final_training_start(dates: pd.DatetimeIndex, folds: Sequence[Fold], window: str) -> pd.Timestamp | None:
    """Where the model that will serve starts learning: at the first date (``None``) with an expanding window; with a
    rolling one, as many dates before the last as each fold trained on (on all the history, a rolling backtest would
    have chosen the model for one window and served it fitted on another)."""
    span = folds[-1].n_train_days if folds else 0
    if window != "rolling" or not span or len(dates) <= span:
        return None
    return pd.DatetimeIndex(dates).sort_values()[-span]


def backtest(
    spec: CandidateSpec,
    rows: RowSource | pd.DataFrame,
    folds: Sequence[Fold],
    feature_columns: Sequence[str],
    categorical_columns: Sequence[str],
    *,
    max_train_rows: int | None = None,
    seed: int = 0,
) -> pd.DataFrame:
    """Fit the candidate on each fold's training rows and predict its test rows.

    ``rows`` is the modelling frame, in memory or stored by month (``stockcast.data.monthly``): a fold reads its
    window alone, so a task holds its fold's rows, not the market's history. Only usable rows (warm, known target)
    are trained on or scored; a fold with more than ``max_train_rows`` of them trains on a sample of that many
    (``training_rows``). Returns one row per (fold, date, ticker) with `candidate_id, fold, date, ticker, close,
    next_close, next_return, predicted_return, predicted_close, clipped` (the prediction left the plausible band and
    was clipped to it) and `oracle_next_close` when the frame has it, sorted by fold, date and ticker.
    """
    from stockcast.train.zoo import predict_returns  # the model libraries: only a backtest's task needs them

    source = FrameRows(rows) if isinstance(rows, pd.DataFrame) else rows
    if isinstance(rows, pd.DataFrame) and not rows.index.is_unique:
        raise ValueError("the modelling frame's index must be unique (reset it after filtering or concatenating)")
    key_columns = ["date", "ticker", "close", "next_close", TARGET_COLUMN]
    oracle_columns = [ORACLE_COLUMN] if ORACLE_COLUMN in source.columns else []
    columns = modelling_columns(source, feature_columns)
    start, end = min(fold.train_start for fold in folds), max(fold.test_end for fold in folds)
    if not isinstance(source, FrameRows) and _fits(source.count(start, end), max_train_rows):
        # Every fold's rows together are no more than one fold may train on: read them once, not once a fold.
        source = FrameRows(read_rows(source, start, end, columns))

    pieces = []
    for fold in folds:
        training = training_rows(source, columns, fold=fold, max_rows=max_train_rows, seed=seed)
        test = read_rows(source, fold.test_start, fold.test_end, columns)
        test = test[usable_mask(test).to_numpy()]
        if training.empty or test.empty:
            raise ValueError(f"fold {fold.index} has no usable {'training' if training.empty else 'test'} rows")
        estimator = fit_candidate(spec, training, feature_columns, categorical_columns)
        predicted_return, clipped = predict_returns(estimator, test, feature_columns)
        pieces.append(
            test[key_columns + oracle_columns].assign(
                candidate_id=spec.candidate_id,
                fold=fold.index,
                predicted_return=predicted_return,
                predicted_close=next_close_from_return(test["close"], predicted_return),
                **{CLIPPED_COLUMN: clipped},
            )
        )
    output = [
        "candidate_id", "fold", *key_columns, "predicted_return", "predicted_close", CLIPPED_COLUMN, *oracle_columns
    ]  # fmt: skip
    predictions = pd.concat(pieces, ignore_index=True)[output]
    return predictions.sort_values(["fold", "date", "ticker"], ignore_index=True)


def modelling_columns(source: RowSource, feature_columns: Sequence[str]) -> list[str]:
    """The columns a model is fitted and scored on: keys, features, target (and when it is realised), warm-up flag,
    and the oracle when there is one; ``ValueError`` names those the frame lacks."""
    wanted = [*SELECTION_COLUMNS, "close", *feature_columns]
    missing = [name for name in wanted if name not in source.columns]
    if missing:
        raise ValueError(f"{MODELLING_FRAME}: missing column(s) {missing}; got {list(source.columns)}")
    extra = [ORACLE_COLUMN] if ORACLE_COLUMN in source.columns else []
    return list(dict.fromkeys([*wanted, *extra]))


def training_rows(
    source: RowSource | pd.DataFrame,
    columns: Sequence[str] | None = None,
    *,
    fold: Fold | None = None,
    since: pd.Timestamp | None = None,
    max_rows: int | None = None,
    seed: int = 0,
) -> pd.DataFrame:
    """The rows a model is trained on: usable rows of the ``fold``'s training window (without one, every usable row
    from ``since`` on) whose target is realised before its test window opens, in (ticker, date) order.

    Leakage guard: a training row whose target close comes from the test window or later (possible when a ticker
    skips days) would teach the model the future it is about to be scored on.

    Memory bound: with more than ``max_rows`` such rows, the ``max_rows`` of them with the smallest hash of
    (ticker, date, ``seed``): a uniform sample across tickers and years, the same whichever way the table is stored
    or the work split. A first pass reads only the few columns that decide which rows those are, the second the
    chosen rows' columns, so a task holds the sample, never the whole window.
    """
    source = FrameRows(source) if isinstance(source, pd.DataFrame) else source
    start, end, before = (since, None, None) if fold is None else (fold.train_start, fold.train_end, fold.test_start)
    threshold = None
    if not _fits(source.count(start, end), max_rows):
        scores = [
            _sample_scores(piece[_trainable(piece, before)], seed)
            for piece in source.pieces(start, end, SELECTION_COLUMNS)
        ]
        pooled = np.concatenate(scores) if scores else np.array([], dtype=np.uint64)
        if len(pooled) > max_rows:
            threshold = np.partition(pooled, max_rows - 1)[max_rows - 1]
    kept = []
    for piece in source.pieces(start, end, columns):
        mask = _trainable(piece, before)
        if threshold is not None:
            mask[mask] = _sample_scores(piece[mask], seed) <= threshold
        kept.append(piece[mask])
    wanted = {name: dtype for name, dtype in source.columns.items() if columns is None or name in columns}
    return in_row_order(kept, wanted)


def _fits(rows: int, max_rows: int | None) -> bool:
    return max_rows is None or rows <= max_rows


def _trainable(piece: pd.DataFrame, before: pd.Timestamp | None) -> np.ndarray:
    mask = usable_mask(piece).to_numpy(copy=True)
    if before is not None:
        mask &= (piece[NEXT_DATE_COLUMN] < before).to_numpy()
    return mask


def _sample_scores(rows: pd.DataFrame, seed: int) -> np.ndarray:
    """A pseudo-random number per row, from its ticker, date and the seed alone (SipHash with a seed-made key)."""
    key = f"{seed % 10**16:016d}"
    return pd.util.hash_pandas_object(rows[["ticker", "date"]], index=False, hash_key=key).to_numpy()


# --- Metrics ---------------------------------------------------------------------------------------------------


def rmse(actual: Any, predicted: Any) -> float:
    """Root mean squared error, in the units of the inputs (dollars when given closes)."""
    errors = np.asarray(predicted, dtype=float) - np.asarray(actual, dtype=float)
    return float(np.sqrt(np.mean(errors**2)))


def mae(actual: Any, predicted: Any) -> float:
    """Mean absolute error, in the units of the inputs."""
    return float(np.mean(np.abs(np.asarray(predicted, dtype=float) - np.asarray(actual, dtype=float))))


def mape(actual: Any, predicted: Any) -> float:
    """Mean absolute percentage error as a fraction (0.01 = 1 %); prices are positive, so it is defined."""
    actual_values = np.asarray(actual, dtype=float)
    return float(np.mean(np.abs(np.asarray(predicted, dtype=float) - actual_values) / np.abs(actual_values)))


def direction_hit_rate(predicted_return: Any, realised_return: Any) -> float:
    """Share of rows whose predicted return has the sign of the realised one.

    A row where either return is exactly zero scores 0.5: a zero prediction makes no directional call, and a
    flat day has no direction to call. So the naive baseline (always zero) scores exactly 0.5, the same as a
    coin flip, and the figure stays defined and comparable across candidates.
    """
    predicted_sign = np.sign(np.asarray(predicted_return, dtype=float))
    realised_sign = np.sign(np.asarray(realised_return, dtype=float))
    no_call = (predicted_sign == 0) | (realised_sign == 0)
    return float(np.mean(np.where(no_call, 0.5, (predicted_sign == realised_sign).astype(float))))


def daily_information_coefficients(dates: pd.Series, predicted: pd.Series, realised: pd.Series) -> pd.DataFrame:
    """Each day's information coefficient (the cross-sectional Pearson correlation of predicted and realised
    returns) and rank IC (Spearman's: what a rule that buys the top-ranked tickers lives on), one row per date
    (``date``, ``n``, ``ic``, ``rank_ic``). NaN on a day with fewer than three tickers or a constant side (the naive
    baseline predicts no move: it ranks nothing)."""
    frame = pd.DataFrame(
        {
            "date": dates.to_numpy(),
            "predicted": predicted.astype(float).to_numpy(),
            "realised": realised.astype(float).to_numpy(),
        }
    ).dropna()
    frame = frame.assign(
        predicted_rank=frame.groupby("date")["predicted"].rank(), realised_rank=frame.groupby("date")["realised"].rank()
    )
    rows = []
    for day, group in frame.groupby("date", sort=True):
        varied = len(group) >= 3 and group["predicted"].nunique() > 1 and group["realised"].nunique() > 1
        rows.append(
            {
                "date": day,
                "n": len(group),
                "ic": float(np.corrcoef(group["predicted"], group["realised"])[0, 1]) if varied else float("nan"),
                "rank_ic": float(np.corrcoef(group["predicted_rank"], group["realised_rank"])[0, 1])
                if varied
                else float("nan"),
            }
        )
    return pd.DataFrame(rows, columns=["date", "n", "ic", "rank_ic"])


def _metrics(predictions: pd.DataFrame) -> dict[str, Any]:
    """Every metric on one set of prediction rows; the naive and oracle references use the very same rows."""
    actual = predictions["next_close"]
    model_rmse = rmse(actual, predictions["predicted_close"])
    # The naive prediction of tomorrow's close is today's close: a zero return.
    naive_rmse = rmse(actual, predictions["close"])
    return_rmse = rmse(predictions[TARGET_COLUMN], predictions["predicted_return"])
    naive_return_rmse = rmse(predictions[TARGET_COLUMN], np.zeros(len(predictions)))
    metrics: dict[str, Any] = {
        "n_rows": len(predictions),
        "n_days": int(predictions["date"].nunique()),
        "rmse_return": return_rmse,
        "rmse_return_naive": naive_return_rmse,
        "rmse_return_vs_naive": return_rmse / naive_return_rmse if naive_return_rmse > 0 else float("nan"),
        "n_clipped": int(predictions[CLIPPED_COLUMN].sum()) if CLIPPED_COLUMN in predictions.columns else 0,
        "rmse": model_rmse,
        "rmse_naive": naive_rmse,
        "rmse_vs_naive": model_rmse / naive_rmse if naive_rmse > 0 else float("nan"),
        "mae": mae(actual, predictions["predicted_close"]),
        "mape": mape(actual, predictions["predicted_close"]),
        "hit_rate": direction_hit_rate(predictions["predicted_return"], predictions[TARGET_COLUMN]),
    }
    coefficients = daily_information_coefficients(
        predictions["date"], predictions["predicted_return"], predictions[TARGET_COLUMN]
    )
    metrics["mean_daily_ic"] = _mean_or_nan(coefficients["ic"])
    metrics["mean_daily_rank_ic"] = _mean_or_nan(coefficients["rank_ic"])
    if ORACLE_COLUMN in predictions.columns:
        oracle_rmse = rmse(actual, predictions[ORACLE_COLUMN])
        metrics["rmse_oracle"] = oracle_rmse
        metrics["rmse_vs_oracle"] = model_rmse / oracle_rmse if oracle_rmse > 0 else float("nan")
    return metrics


def _mean_or_nan(values: pd.Series) -> float:
    known = values.dropna()
    return float(known.mean()) if len(known) else float("nan")


def score_predictions(predictions: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Per-fold metrics (one row per fold) and overall metrics for one candidate's backtest predictions.

    Scale-free: `rmse_return` (RMSE of the predicted next-day return), `rmse_return_vs_naive` (over the naive
    baseline's on the same rows: below 1 beats it), `rmse_vs_naive` (the same ratio on price), `hit_rate` (see
    `direction_hit_rate`), `mean_daily_ic` and `mean_daily_rank_ic` (``daily_information_coefficients``) and,
    when the oracle column is present, `rmse_vs_oracle` (1 is the best achievable).
    Price metrics: `rmse`, `mae`, `mape` (fraction). `n_clipped` counts predictions clipped to the plausible band.
    Overall figures pool every test row; `mean_fold_rmse_return` (the selection criterion), `mean_fold_rmse` and
    `std_fold_rmse` summarise the folds.
    """
    require_columns(
        predictions,
        ["candidate_id", "fold", "date", "close", "next_close", TARGET_COLUMN, "predicted_return", "predicted_close"],
        "backtest predictions",
    )
    candidate_ids = predictions["candidate_id"].unique()
    if len(candidate_ids) != 1:
        raise ValueError(f"score one candidate at a time; got {list(candidate_ids)}")
    per_fold = pd.DataFrame(
        [
            {"fold": fold, "test_start": rows["date"].min(), "test_end": rows["date"].max(), **_metrics(rows)}
            for fold, rows in predictions.groupby("fold", sort=True)
        ]
    )
    overall = {
        "candidate_id": str(candidate_ids[0]),
        "n_folds": len(per_fold),
        "mean_fold_rmse_return": float(per_fold["rmse_return"].mean()),
        "mean_fold_rmse": float(per_fold["rmse"].mean()),
        "std_fold_rmse": float(per_fold["rmse"].std(ddof=1)) if len(per_fold) > 1 else float("nan"),
        **_metrics(predictions),
    }
    return per_fold, overall


def evaluate_candidate(candidate_id: str, fold_predictions: Sequence[pd.DataFrame]) -> CandidateEvaluation:
    """Score one candidate's walk-forward backtest from its predictions (``backtest``), given in pieces over
    disjoint groups of the folds (one piece per task that ran a group; one piece for a backtest run at once).

    Put back in (fold, date, ticker) order, the pieces are exactly what one ``backtest`` over all their folds
    returns, so the metrics are too. Raises ``ValueError`` when two pieces hold the same fold.
    """
    if not fold_predictions:
        raise ValueError(f"no backtest predictions to score for {candidate_id}")
    folds = [int(fold) for piece in fold_predictions for fold in piece["fold"].unique()]
    repeated = sorted({fold for fold in folds if folds.count(fold) > 1})
    if repeated:
        raise ValueError(f"backtest predictions of {candidate_id} hold fold(s) {repeated} more than once")
    predictions = pd.concat(fold_predictions, ignore_index=True)
    predictions = predictions.sort_values(["fold", "date", "ticker"], ignore_index=True)
    per_fold, overall = score_predictions(predictions)
    return CandidateEvaluation(candidate_id, predictions, per_fold, overall)


def leaderboard(results: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """Candidates' overall metrics ranked by mean fold RMSE of the return (ties by id); row 0 is the challenger."""
    board = pd.DataFrame([dict(result) for result in results])
    if board.empty:
        raise ValueError("no candidate results to rank")
    duplicated = board["candidate_id"][board["candidate_id"].duplicated()].tolist()
    if duplicated:
        raise ValueError(f"candidate ids appear more than once: {duplicated}")
    board = board.sort_values(["mean_fold_rmse_return", "candidate_id"], ignore_index=True, na_position="last")
    board.insert(0, "rank", np.arange(1, len(board) + 1))
    return board
