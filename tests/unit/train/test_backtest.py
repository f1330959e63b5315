"""Walk-forward folds, the backtest's leakage guards, the metrics, and selection on planted and null markets."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from stockcast.core.storage import LocalStore
from stockcast.data.monthly import MonthlyWriter
from stockcast.train.backtest import (
    Fold,
    backtest,
    daily_information_coefficients,
    direction_hit_rate,
    evaluate_candidate,
    leaderboard,
    mae,
    mape,
    rmse,
    score_predictions,
    training_rows,
    walk_forward_folds,
)
from stockcast.train.candidates import CandidateSpec
from stockcast.train.gate import decide

FEATURES = ["feature_a", "feature_b", "sector"]
CATEGORICAL = ["sector"]
FOLD_SETTINGS = {"n_folds": 3, "test_days": 40, "gap_days": 1, "window": "expanding", "min_train_days": 150}


def with_targets(frame: pd.DataFrame) -> pd.DataFrame:
    """Targets from each ticker's next row, as the feature library makes them (NaN on the last row)."""
    next_close = frame.groupby("ticker")["close"].shift(-1)
    next_date = frame.groupby("ticker")["date"].shift(-1)
    return frame.assign(next_close=next_close, next_return=next_close / frame["close"] - 1, next_date=next_date)


def synthetic_panel(*, signal: float, n_tickers: int = 12, n_days: int = 320, seed: int = 0) -> pd.DataFrame:
    """A modelling frame whose next-day return is `signal * feature_a` plus 1 % noise.

    With `signal=0` prices are a pure (martingale) random walk: nothing can beat tomorrow = today on average.
    `oracle_next_close` is the best achievable prediction: the planted part of the return, without the noise.
    """
    rng = np.random.default_rng(seed)
    n_rows = n_tickers * n_days
    feature_a = rng.normal(size=n_rows)
    planted_return = signal * feature_a
    next_return = planted_return + 0.01 * rng.normal(size=n_rows)
    ticker = np.repeat([f"T{i:02d}" for i in range(n_tickers)], n_days)
    growth = pd.Series(1 + next_return).groupby(ticker).cumprod().groupby(ticker).shift(1, fill_value=1.0)
    close = np.repeat(rng.uniform(20, 300, n_tickers), n_days) * growth.to_numpy()
    frame = pd.DataFrame(
        {
            "date": np.tile(pd.bdate_range("2022-01-03", periods=n_days).to_numpy(), n_tickers),
            "ticker": ticker,
            "close": close,
            "feature_a": feature_a,
            "feature_b": np.where(rng.random(n_rows) < 0.05, np.nan, rng.normal(size=n_rows)),
            "sector": np.repeat(np.resize(["tech", "energy", "health"], n_tickers), n_days),
            "is_warm": np.tile(np.arange(n_days) >= 10, n_tickers),
            "oracle_next_close": close * (1 + planted_return),
        }
    )
    return with_targets(frame)


def spec(factory: str, **params: object) -> CandidateSpec:
    # No target clipping (the band is then the training fold's range): the drift model reports exactly the mean
    # of what it was fitted on, which is how these tests see the training rows.
    return CandidateSpec(factory, factory, factory, dict(params), random_seed=0, target_clip_quantile=0.0)


ZOO = [
    spec("naive"),
    spec("drift"),
    spec("ridge", alpha=1.0),
    spec("hist_gradient_boosting", max_iter=40),
    spec("catboost", iterations=40, depth=3),
]


def folds_for(frame: pd.DataFrame, **overrides: object) -> list[Fold]:
    return walk_forward_folds(frame["date"], **{**FOLD_SETTINGS, **overrides})


# --- Folds -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("gap_days", [1, 3])
def test_expanding_folds_are_adjacent_ordered_and_separated_by_the_gap(gap_days: int) -> None:
    calendar = pd.bdate_range("2020-01-01", periods=400)

    folds = walk_forward_folds(
        calendar, n_folds=4, test_days=30, gap_days=gap_days, window="expanding", min_train_days=100
    )

    position = {date: index for index, date in enumerate(calendar)}
    assert [fold.index for fold in folds] == [0, 1, 2, 3]
    assert folds[-1].test_end == calendar[-1]
    for fold in folds:
        assert fold.train_start == calendar[0]
        assert fold.train_start <= fold.train_end < fold.test_start <= fold.test_end
        assert position[fold.test_start] - position[fold.train_end] - 1 == gap_days
        assert position[fold.test_end] - position[fold.test_start] + 1 == fold.n_test_days == 30
        assert position[fold.train_end] - position[fold.train_start] + 1 == fold.n_train_days
    for earlier, later in itertools.pairwise(folds):
        assert position[later.test_start] == position[earlier.test_end] + 1
    assert folds[0].n_train_days >= 100


def test_rolling_folds_keep_a_fixed_training_length_and_slide() -> None:
    calendar = pd.bdate_range("2020-01-01", periods=400)

    folds = walk_forward_folds(
        calendar, n_folds=3, test_days=50, gap_days=2, window="rolling", min_train_days=100, train_days=120
    )

    assert [fold.n_train_days for fold in folds] == [120, 120, 120]
    starts = [calendar.get_loc(fold.train_start) for fold in folds]
    assert np.diff(starts).tolist() == [50, 50]


def test_folds_depend_only_on_the_set_of_dates() -> None:
    calendar = pd.bdate_range("2020-01-01", periods=300)
    shuffled_with_repeats = np.random.default_rng(1).permutation(np.concatenate([calendar, calendar[::3]]))

    settings = {"n_folds": 2, "test_days": 20, "gap_days": 1, "window": "expanding", "min_train_days": 50}

    assert walk_forward_folds(shuffled_with_repeats, **settings) == walk_forward_folds(calendar, **settings)


def test_just_enough_history_works_and_one_day_less_is_a_clear_error() -> None:
    settings = {"n_folds": 3, "test_days": 20, "gap_days": 2, "window": "expanding", "min_train_days": 60}
    needed = 60 + 2 + 3 * 20

    assert walk_forward_folds(pd.bdate_range("2020-01-01", periods=needed), **settings)[0].n_train_days == 60
    with pytest.raises(ValueError, match=f"needs at least {needed} trading days .* has {needed - 1}"):
        walk_forward_folds(pd.bdate_range("2020-01-01", periods=needed - 1), **settings)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"gap_days": 0}, "gap_days must be at least 1"),
        ({"n_folds": 0}, "n_folds must be a positive"),
        ({"window": "sliding"}, "window must be one of"),
        ({"window": "rolling"}, "rolling window needs train_days"),
        ({"window": "rolling", "train_days": 10}, "rolling window needs train_days >= min_train_days"),
    ],
)
def test_invalid_fold_settings_are_refused(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        walk_forward_folds(pd.bdate_range("2020-01-01", periods=400), **{**FOLD_SETTINGS, **overrides})


# --- Backtest --------------------------------------------------------------------------------------------------


def test_backtest_scores_every_usable_test_row_once_in_its_fold() -> None:
    frame = synthetic_panel(signal=0.0).assign(is_warm=lambda f: f["is_warm"] & (f["ticker"] != "T03"))
    folds = folds_for(frame)

    predictions = backtest(spec("naive"), frame, folds, FEATURES, CATEGORICAL)

    usable = frame[frame["is_warm"] & frame["next_return"].notna()]
    in_test = usable[usable["date"].between(folds[0].test_start, folds[-1].test_end)]
    assert len(predictions) == len(in_test)
    assert not predictions.duplicated(["date", "ticker"]).any()
    assert "T03" not in set(predictions["ticker"])
    for fold in folds:
        dates = predictions.loc[predictions["fold"] == fold.index, "date"]
        assert dates.between(fold.test_start, fold.test_end).all()
    np.testing.assert_array_equal(predictions["predicted_close"], predictions["close"])


def test_training_never_sees_targets_from_the_gap_or_the_test_window() -> None:
    frame = synthetic_panel(signal=0.0)
    folds = folds_for(frame, gap_days=2)
    # The drift model predicts the mean target of its training rows, so it reports exactly what it was fitted on.
    predictions = backtest(spec("drift"), frame, folds, FEATURES, CATEGORICAL)

    usable = frame[frame["is_warm"] & frame["next_return"].notna()]
    for fold in folds:
        training_targets = usable.loc[usable["date"].between(fold.train_start, fold.train_end), "next_return"]
        one_day_more = usable.loc[usable["date"].between(fold.train_start, fold.test_start), "next_return"]
        predicted = predictions.loc[predictions["fold"] == fold.index, "predicted_return"]
        assert predicted.to_numpy() == pytest.approx(training_targets.mean(), rel=1e-12)
        assert training_targets.mean() != pytest.approx(one_day_more.mean(), rel=1e-9)


def test_a_target_that_spans_a_trading_halt_into_the_test_window_is_not_trained_on() -> None:
    panel = synthetic_panel(signal=0.0)
    fold = folds_for(panel)[-1]
    halted = (panel["ticker"] == "T00") & panel["date"].between(fold.train_end, fold.test_start, inclusive="right")
    # T00 does not trade from the gap day to the first test day: its train_end row's target is a test-window close.
    frame = with_targets(panel.loc[~halted].reset_index(drop=True))
    spanning = (frame["ticker"] == "T00") & (frame["date"] == fold.train_end)
    frame.loc[spanning, "next_return"] = 5.0  # so that training on it would be impossible to miss

    predicted = backtest(spec("drift"), frame, [fold], FEATURES, CATEGORICAL)["predicted_return"]

    usable = frame[frame["is_warm"] & frame["next_return"].notna()]
    training = usable[usable["date"].between(fold.train_start, fold.train_end)]
    assert predicted.to_numpy() == pytest.approx(training.loc[~spanning, "next_return"].mean(), rel=1e-12)
    assert training["next_return"].mean() > training.loc[~spanning, "next_return"].mean() + 1e-4


def test_shifting_test_window_features_cannot_change_what_the_model_learned() -> None:
    frame = synthetic_panel(signal=0.004)
    folds = folds_for(frame)
    last = folds[-1]
    in_last_test = frame["date"].between(last.test_start, last.test_end)
    shifted_tickers = frame["ticker"].isin(["T00", "T01", "T02", "T03"])
    # If any scaler, clipper or imputer were fitted on test rows, this shift would move every prediction.
    shifted = frame.assign(feature_a=frame["feature_a"].mask(in_last_test & shifted_tickers, frame["feature_a"] + 40))

    original = backtest(spec("ridge", alpha=1.0), frame, folds, FEATURES, CATEGORICAL)
    after_shift = backtest(spec("ridge", alpha=1.0), shifted, folds, FEATURES, CATEGORICAL)

    untouched = ~((original["fold"] == last.index) & original["ticker"].isin(["T00", "T01", "T02", "T03"]))
    np.testing.assert_allclose(
        after_shift.loc[untouched, "predicted_close"], original.loc[untouched, "predicted_close"]
    )
    assert not np.allclose(after_shift.loc[~untouched, "predicted_close"], original.loc[~untouched, "predicted_close"])


def test_a_training_sample_is_bounded_spread_and_the_same_however_the_rows_are_read(tmp_path) -> None:
    frame = synthetic_panel(signal=0.0, n_tickers=30)
    fold = folds_for(frame)[-1]
    keys = ["ticker", "date"]
    everything = training_rows(frame, fold=fold)

    sample = training_rows(frame, fold=fold, max_rows=2000, seed=1)

    assert len(sample) == 2000 < len(everything)
    assert sample.merge(everything, on=list(frame.columns), how="left", indicator=True)["_merge"].eq("both").all()
    pd.testing.assert_frame_equal(sample, sample.sort_values(keys, ignore_index=True))
    assert sample["ticker"].nunique() == 30 and sample["date"].nunique() > 0.9 * everything["date"].nunique()
    # The same rows read from months stored apart; another seed draws other rows; a cap above the count takes all.
    writer = MonthlyWriter(LocalStore(tmp_path), "frame")
    writer.add(frame)
    pd.testing.assert_frame_equal(training_rows(writer.finish(), fold=fold, max_rows=2000, seed=1), sample)
    assert not training_rows(frame, fold=fold, max_rows=2000, seed=2)[keys].equals(sample[keys])
    pd.testing.assert_frame_equal(training_rows(frame, fold=fold, max_rows=len(everything), seed=1), everything)


# --- Metrics ---------------------------------------------------------------------------------------------------


def test_metrics_on_hand_computed_inputs() -> None:
    assert rmse([1, 2, 3], [1, 2, 5]) == pytest.approx(np.sqrt(4 / 3))
    assert mae([1, 2, 3], [1, 2, 5]) == pytest.approx(2 / 3)
    assert mape([100, 200], [110, 190]) == pytest.approx(0.075)
    assert direction_hit_rate([1.0, -1.0, 1.0], [0.5, -0.2, -0.1]) == pytest.approx(2 / 3)
    # Zero on either side makes no directional call: half credit.
    assert direction_hit_rate([0.1, -0.2, 0.0, 0.3], [0.2, 0.1, -0.1, 0.0]) == pytest.approx((1 + 0 + 0.5 + 0.5) / 4)
    assert direction_hit_rate(np.zeros(5), [0.1, -0.1, 0.2, 0.0, -0.3]) == 0.5


def test_score_predictions_per_fold_and_overall_by_hand() -> None:
    predictions = pd.DataFrame(
        {
            "candidate_id": "m",
            "fold": [0, 0, 1],
            "date": pd.to_datetime(["2024-01-02", "2024-01-03", "2024-01-05"]),
            "ticker": ["A", "A", "A"],
            "close": [10.0, 20.0, 50.0],
            "next_close": [11.0, 19.0, 52.0],
            "next_return": [0.1, -0.05, 0.04],
            "predicted_return": [0.05, -0.025, -0.02],
            "predicted_close": [10.5, 19.5, 49.0],
            "oracle_next_close": [11.5, 19.0, 52.0],
        }
    )

    per_fold, overall = score_predictions(predictions)

    first, second = per_fold.iloc[0], per_fold.iloc[1]
    assert first["rmse"] == pytest.approx(0.5)
    assert first["rmse_naive"] == pytest.approx(1.0)
    assert first["rmse_vs_naive"] == pytest.approx(0.5)
    assert first["mae"] == pytest.approx(0.5)
    assert first["mape"] == pytest.approx((0.5 / 11 + 0.5 / 19) / 2)
    assert first["hit_rate"] == 1.0
    assert first["rmse_vs_oracle"] == pytest.approx(0.5 / np.sqrt(0.125))
    assert (second["rmse"], second["rmse_vs_naive"], second["hit_rate"]) == pytest.approx((3.0, 1.5, 0.0))
    assert overall["mean_fold_rmse"] == pytest.approx((0.5 + 3.0) / 2)
    assert overall["rmse"] == pytest.approx(np.sqrt((0.25 + 0.25 + 9.0) / 3))
    assert overall["rmse_vs_naive"] == pytest.approx(np.sqrt(9.5 / 3) / np.sqrt(6 / 3))
    assert (overall["candidate_id"], overall["n_folds"], overall["n_rows"], overall["n_days"]) == ("m", 2, 3, 3)


def test_naive_baseline_is_exactly_itself_relative_to_naive() -> None:
    frame = synthetic_panel(signal=0.004)

    per_fold, overall = score_predictions(backtest(spec("naive"), frame, folds_for(frame), FEATURES, CATEGORICAL))

    assert (per_fold["rmse_vs_naive"] == 1.0).all()
    assert overall["rmse_vs_naive"] == 1.0
    assert overall["hit_rate"] == 0.5


def test_leaderboard_ranks_by_mean_fold_return_rmse_with_ties_broken_by_id() -> None:
    results = [
        {"candidate_id": "b", "mean_fold_rmse_return": 1.0, "mean_fold_rmse": 0.1},
        {"candidate_id": "c", "mean_fold_rmse_return": 0.5, "mean_fold_rmse": 9.0},
        {"candidate_id": "a", "mean_fold_rmse_return": 1.0, "mean_fold_rmse": 0.2},
        {"candidate_id": "d", "mean_fold_rmse_return": float("nan"), "mean_fold_rmse": 0.0},
    ]

    board = leaderboard(results)

    assert board["candidate_id"].tolist() == ["c", "a", "b", "d"]
    assert board["rank"].tolist() == [1, 2, 3, 4]
    with pytest.raises(ValueError, match="more than once"):
        leaderboard([*results, {"candidate_id": "a", "mean_fold_rmse_return": 0.1}])


@pytest.mark.parametrize("candidate", ZOO, ids=lambda candidate: candidate.factory)
def test_a_backtest_run_in_groups_of_folds_scores_exactly_like_one_run_over_every_fold(candidate) -> None:
    frame = synthetic_panel(signal=0.004)
    folds = folds_for(frame)
    whole = evaluate_candidate(candidate.candidate_id, [backtest(candidate, frame, folds, FEATURES, CATEGORICAL)])

    # Two tasks, finished in either order: the last fold alone, the first two together.
    pieces = [backtest(candidate, frame, group, FEATURES, CATEGORICAL) for group in ([folds[2]], folds[:2])]
    grouped = evaluate_candidate(candidate.candidate_id, pieces)

    pd.testing.assert_frame_equal(grouped.predictions, whole.predictions, check_exact=True)
    pd.testing.assert_frame_equal(grouped.per_fold, whole.per_fold, check_exact=True)
    pd.testing.assert_series_equal(pd.Series(grouped.overall), pd.Series(whole.overall), check_exact=True)
    assert whole.per_fold["fold"].tolist() == [0, 1, 2]
    with pytest.raises(ValueError, match=r"fold\(s\) \[2\] more than once"):
        evaluate_candidate(candidate.candidate_id, [*pieces, pieces[0]])


# --- Selection end to end on markets with and without a signal ------------------------------------------------


def run_zoo(frame: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, pd.DataFrame]]:
    folds = folds_for(frame)
    evaluations = [
        evaluate_candidate(candidate.candidate_id, [backtest(candidate, frame, folds, FEATURES, CATEGORICAL)])
        for candidate in ZOO
    ]
    return leaderboard(e.overall for e in evaluations), {e.candidate_id: e.predictions for e in evaluations}


def test_with_a_planted_signal_a_real_model_wins_close_to_the_oracle_and_is_promoted() -> None:
    board, predictions = run_zoo(synthetic_panel(signal=0.004))
    best = board.iloc[0]

    assert best["candidate_id"] not in {"naive", "drift"}
    # 0.4 % planted vs 1 % noise per day: the best achievable RMSE is sqrt(1 / (1 + 0.16)) ~ 0.93 of naive's.
    assert best["rmse_vs_naive"] < 0.96
    assert 0.99 < best["rmse_vs_oracle"] < 1.03
    assert best["hit_rate"] > 0.55
    decision = decide(predictions[best["candidate_id"]], predictions["naive"], None, alpha=0.05)
    assert decision.promote, decision.reason


def test_on_a_pure_random_walk_the_best_model_does_not_beat_naive() -> None:
    board, predictions = run_zoo(synthetic_panel(signal=0.0, seed=1))
    best = board.iloc[0]

    # On a martingale no prediction beats tomorrow = today on average; the best of five only gets lucky by noise.
    assert best["rmse_vs_naive"] > 0.99
    decision = decide(predictions[best["candidate_id"]], predictions["naive"], None, alpha=0.05)
    assert not decision.promote
    assert "does not beat the naive baseline" in decision.reason


def test_daily_information_coefficients_measure_how_well_each_day_is_ranked() -> None:
    dates = pd.Series(pd.to_datetime(["2024-01-02"] * 4 + ["2024-01-03"] * 4 + ["2024-01-04"] * 2))
    predicted = pd.Series([0.01, 0.02, 0.03, 0.04, 0.04, 0.03, 0.02, 0.01, 0.01, 0.02])
    realised = pd.Series([0.001, 0.002, 0.005, 0.009, 0.001, 0.002, 0.005, 0.009, 0.01, 0.02])

    coefficients = daily_information_coefficients(dates, predicted, realised)

    assert coefficients["n"].tolist() == [4, 4, 2]
    assert coefficients["rank_ic"].tolist()[:2] == pytest.approx([1.0, -1.0])  # same order; reversed order
    assert 0.9 < coefficients["ic"].iloc[0] < 1.0  # ordered alike, not linearly
    assert np.isnan(coefficients["ic"].iloc[2]), "two tickers rank nothing"
    naive = daily_information_coefficients(dates, predicted * 0, realised)
    assert naive["ic"].isna().all(), "a constant prediction (naive) ranks nothing"
