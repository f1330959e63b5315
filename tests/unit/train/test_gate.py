"""The promotion gate: the Diebold–Mariano test against hand and reference computations, and the decisions."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from stockcast.train.gate import daily_losses, decide, diebold_mariano, newey_west_lag, served_reference

N_DAYS, N_TICKERS = 120, 8


def market(seed: int = 0) -> pd.DataFrame:
    """Realised closes for a small panel: a 2 %-a-day random walk around 100."""
    rng = np.random.default_rng(seed)
    dates = pd.bdate_range("2024-01-02", periods=N_DAYS)
    frame = pd.DataFrame(
        {
            "date": np.repeat(dates.to_numpy(), N_TICKERS),
            "ticker": np.tile([f"T{i}" for i in range(N_TICKERS)], N_DAYS),
            "close": 100 * np.exp(rng.normal(0, 0.2, N_DAYS * N_TICKERS)),
        }
    )
    return frame.assign(next_close=frame["close"] * (1 + rng.normal(0, 0.02, len(frame))))


def predictions(frame: pd.DataFrame, candidate_id: str, predicted_close: np.ndarray | pd.Series) -> pd.DataFrame:
    """Backtest-like rows: the gate reads the returns, derived from the closes as the backtest does."""
    predicted_close = np.asarray(predicted_close, dtype=float)
    return frame.assign(
        candidate_id=candidate_id,
        predicted_close=predicted_close,
        next_return=frame["next_close"] / frame["close"] - 1.0,
        predicted_return=predicted_close / frame["close"] - 1.0,
    )


def naive(frame: pd.DataFrame) -> pd.DataFrame:
    return predictions(frame, "naive", frame["close"])


def better_than_naive(frame: pd.DataFrame, candidate_id: str, error_share: float, seed: int) -> pd.DataFrame:
    """Predictions whose error is `error_share` of the naive error, plus a little noise."""
    noise = np.random.default_rng(seed).normal(0, 0.1, len(frame))
    return predictions(
        frame, candidate_id, frame["next_close"] + error_share * (frame["close"] - frame["next_close"]) + noise
    )


# --- The test statistic ----------------------------------------------------------------------------------------


def test_dm_matches_a_hand_computation_with_a_newey_west_lag() -> None:
    # d = [2, 0, 1, -1, 3]: mean 1, centred [1, -1, 0, -2, 2], gamma0 = 10/5 = 2, gamma1 = (-1 + 0 + 0 - 4)/5 = -1.
    # Bartlett weight at lag 1 of 1: 1/2, so the long-run variance is 2 + 2 * 0.5 * (-1) = 1 and
    # DM = 1 / sqrt(1/5) = sqrt(5); the HLN factor for h=1 is sqrt((5 + 1 - 2) / 5), giving exactly 2.
    loss_b = np.array([5.0, 4.0, 6.0, 3.0, 2.0])
    loss_a = loss_b + np.array([2.0, 0.0, 1.0, -1.0, 3.0])

    result = diebold_mariano(loss_a, loss_b, max_lag=1)

    assert result.statistic == pytest.approx(2.0)
    assert result.p_value == pytest.approx(stats.t.cdf(2.0, df=4))
    assert (result.mean_difference, result.n, result.max_lag) == (1.0, 5, 1)
    # h = 2: HLN factor sqrt((5 + 1 - 4 + 2/5) / 5) = sqrt(0.48).
    assert diebold_mariano(loss_a, loss_b, horizon=2, max_lag=1).statistic == pytest.approx(np.sqrt(5 * 0.48))


def test_without_autocorrelation_terms_dm_is_the_one_sample_t_test() -> None:
    rng = np.random.default_rng(3)
    loss_a, loss_b = rng.gamma(2.0, size=60), rng.gamma(2.1, size=60)

    result = diebold_mariano(loss_a, loss_b, max_lag=0)
    reference = stats.ttest_1samp(loss_a - loss_b, 0.0, alternative="less")

    assert result.statistic == pytest.approx(reference.statistic, rel=1e-10)
    assert result.p_value == pytest.approx(reference.pvalue, rel=1e-10)


def test_positively_autocorrelated_differentials_need_the_hac_variance() -> None:
    rng = np.random.default_rng(5)
    shocks = rng.normal(size=500)
    persistent = np.zeros(500)
    for t in range(1, 500):
        persistent[t] = 0.8 * persistent[t - 1] + shocks[t]
    differential = persistent - 0.3

    naive_iid = diebold_mariano(differential, np.zeros(500), max_lag=0)
    hac = diebold_mariano(differential, np.zeros(500))

    assert hac.max_lag == newey_west_lag(500) == 5
    # Clustered losses carry less information than their count suggests: the HAC statistic is less extreme.
    assert naive_iid.statistic < hac.statistic < 0
    assert hac.p_value > naive_iid.p_value


def test_false_promotions_under_the_null_happen_at_about_the_nominal_rate() -> None:
    rng = np.random.default_rng(11)
    p_values = [diebold_mariano(rng.normal(size=250), rng.normal(size=250)).p_value for _ in range(400)]

    # 400 trials at alpha 0.05: the rejection count is Binomial(400, 0.05), mean 20, standard deviation 4.4.
    assert 8 <= sum(p < 0.05 for p in p_values) <= 34


def test_identical_losses_carry_no_evidence_and_constant_gains_are_decisive() -> None:
    losses = np.array([1.0, 2.0, 3.0, 2.0])

    identical = diebold_mariano(losses, losses)
    always_better = diebold_mariano(losses - 0.5, losses)

    assert (identical.statistic, identical.p_value) == (0.0, 0.5)
    assert (always_better.statistic, always_better.p_value) == (-np.inf, 0.0)


@pytest.mark.parametrize(
    ("loss_a", "loss_b", "message"),
    [([1.0, 2.0], [1.0], "equal length"), ([1.0], [2.0], "at least 2"), ([1.0, np.nan], [1.0, 2.0], "finite")],
)
def test_dm_refuses_unusable_input(loss_a: list[float], loss_b: list[float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        diebold_mariano(loss_a, loss_b)


def test_daily_loss_is_the_mean_squared_return_error_across_tickers_per_day() -> None:
    frame = pd.DataFrame(
        {
            "date": pd.to_datetime(["2024-01-03", "2024-01-02", "2024-01-02"]),
            "next_return": [0.01, 0.0, -0.02],
            "predicted_return": [0.04, 0.01, 0.01],
        }
    )

    losses = daily_losses(frame)

    assert losses.index.tolist() == list(pd.to_datetime(["2024-01-02", "2024-01-03"]))
    np.testing.assert_allclose(losses.tolist(), [(0.01**2 + 0.03**2) / 2, 0.03**2])


def test_the_gate_weighs_a_cheap_stock_like_an_expensive_one() -> None:
    """Scale-free: a model better on 99 $5 stocks and worse on one $500 stock (same size of errors in percent)
    beats naive; on price, the one expensive stock would decide."""
    rng = np.random.default_rng(5)
    dates = np.repeat(pd.bdate_range("2024-01-02", periods=60).to_numpy(), 100)
    close = np.tile(np.r_[500.0, np.full(99, 5.0)], 60)
    realised = rng.normal(0.0, 0.02, len(close))
    frame = pd.DataFrame({"date": dates, "ticker": np.tile([f"T{i}" for i in range(100)], 60), "close": close}).assign(
        next_close=close * (1 + realised)
    )
    expensive = frame["close"] == 500.0
    # Half the naive error on cheap stocks, twice it on the expensive one.
    share = np.where(expensive, 2.0, 0.5)
    challenger = predictions(frame, "m", frame["next_close"] + share * (frame["close"] - frame["next_close"]))

    assert decide(challenger, naive(frame), None, alpha=0.05).promote


# --- Decisions -------------------------------------------------------------------------------------------------


def test_a_clearly_better_challenger_is_promoted_with_a_readable_reason() -> None:
    frame = market()
    challenger = better_than_naive(frame, "catboost[depth=4]", error_share=0.5, seed=1)
    champion = better_than_naive(frame, "ridge[alpha=1.0]", error_share=0.8, seed=2)

    decision = decide(challenger, naive(frame), champion, alpha=0.05)

    assert decision.promote
    assert decision.reason.startswith("Promote catboost[depth=4]: it beats the naive baseline (")
    assert "and beats the champion ridge[alpha=1.0] (" in decision.reason
    assert f"over {N_DAYS} days" in decision.reason
    assert [c["against"] for c in decision.comparisons] == ["naive", "champion"]
    for comparison in decision.comparisons:
        assert comparison["passed"]
        assert comparison["p_value"] < 0.05
        assert comparison["mean_loss_difference"] < 0
        assert comparison["n_days"] == N_DAYS
    assert json.loads(json.dumps(decision.to_dict()))["promote"] is True


def test_a_challenger_identical_to_the_champion_is_not_promoted() -> None:
    frame = market()
    challenger = better_than_naive(frame, "catboost[depth=4]", error_share=0.5, seed=1)
    champion = challenger.assign(candidate_id="catboost[depth=4]")

    decision = decide(challenger, naive(frame), champion, alpha=0.05)

    assert not decision.promote
    assert "does not beat the champion catboost[depth=4]" in decision.reason
    assert "naive" not in decision.reason  # it did beat the naive baseline: only the failed comparison is named
    champion_comparison = decision.comparisons[1]
    assert (champion_comparison["statistic"], champion_comparison["mean_loss_difference"]) == (0.0, 0.0)


def test_the_naive_baseline_never_beats_itself() -> None:
    frame = market()

    decision = decide(naive(frame), naive(frame), None, alpha=0.05)

    assert not decision.promote
    assert decision.reason.startswith("Do not promote naive: it does not beat the naive baseline")


def test_a_challenger_worse_than_the_champion_is_not_promoted_even_if_it_beats_naive() -> None:
    frame = market()
    challenger = better_than_naive(frame, "ridge[alpha=1.0]", error_share=0.8, seed=2)
    champion = better_than_naive(frame, "catboost[depth=4]", error_share=0.5, seed=1)

    decision = decide(challenger, naive(frame), champion, alpha=0.05)

    assert not decision.promote
    assert [c["passed"] for c in decision.comparisons] == [True, False]
    assert decision.comparisons[1]["mean_loss_difference"] > 0


def test_comparisons_pair_only_the_common_rows_and_demand_enough_days() -> None:
    frame = market()
    challenger = better_than_naive(frame, "m", error_share=0.5, seed=1)
    late_champion = better_than_naive(frame, "old", error_share=0.9, seed=2).iloc[-10 * N_TICKERS :]

    decision = decide(challenger, naive(frame), late_champion, alpha=0.05, min_days=20)

    assert decision.comparisons[1]["n_days"] == 10
    assert not decision.promote
    assert "only 10 paired test days, fewer than the 20 required" in decision.reason


def test_predictions_scored_on_different_data_cannot_be_compared() -> None:
    frame = market()
    challenger = better_than_naive(frame, "m", error_share=0.5, seed=1)
    other_data = naive(frame.assign(next_close=frame["next_close"] * 1.01))

    with pytest.raises(ValueError, match="different realised closes"):
        decide(challenger, other_data, None, alpha=0.05)
    with pytest.raises(ValueError, match="one-to-one"):
        decide(pd.concat([challenger, challenger]), naive(frame), None, alpha=0.05)
    with pytest.raises(ValueError, match="alpha"):
        decide(challenger, naive(frame), None, alpha=0.5)


# --- Refreshes and the champion as it served ---------------------------------------------------------------------


def as_served(predictions: pd.DataFrame) -> pd.DataFrame:
    """A model's predictions as its published tables hold them (``as_of``, ticker, predicted return)."""
    return predictions.assign(as_of=predictions["date"])


def test_a_refresh_no_worse_than_the_champion_as_it_served_is_promoted_as_a_refresh() -> None:
    frame = market()
    champion = better_than_naive(frame, "v3 (catboost[depth=4])", error_share=0.5, seed=1)
    refit = champion.assign(candidate_id="catboost[depth=4]")  # the same spec: re-scored, the champion itself
    served = served_reference(refit, as_served(champion), "v3 (catboost[depth=4])")

    decision = decide(refit, naive(frame), champion, alpha=0.05, refresh_margin=0.05, served_predictions=served)

    assert decision.promote, decision.reason
    assert decision.reason.startswith("Promote refresh catboost[depth=4]: it beats the naive baseline (")
    assert "and is not worse than the served champion v3 (catboost[depth=4]) by more than 5% (" in decision.reason
    assert "against a 5% margin" in decision.reason
    assert [c["against"] for c in decision.comparisons] == ["naive", "served champion"]  # the re-scored one is it


def test_a_refresh_needs_the_champion_to_have_served_long_enough() -> None:
    frame = market()
    champion = better_than_naive(frame, "v3 (catboost[depth=4])", error_share=0.5, seed=1)
    refit = champion.assign(candidate_id="catboost[depth=4]")
    recent = as_served(champion)[champion["date"] >= sorted(champion["date"].unique())[-10]]

    never = decide(refit, naive(frame), champion, alpha=0.05, refresh_margin=0.05)
    young = decide(
        refit,
        naive(frame),
        champion,
        alpha=0.05,
        refresh_margin=0.05,
        served_predictions=served_reference(refit, recent, "v3"),
    )

    assert not never.promote and "is not shown to be within 5% of the served champion (only 0 paired" in never.reason
    assert not young.promote and "of the served champion v3 (only 10 paired test days, fewer than the 20" in (
        young.reason
    )


def test_a_refresh_clearly_worse_than_the_champion_as_it_served_is_not_promoted() -> None:
    frame = market()
    champion = better_than_naive(frame, "v3 (ridge[alpha=1.0])", error_share=0.5, seed=1)
    worse = better_than_naive(frame, "ridge[alpha=1.0]", error_share=0.8, seed=2)
    served = served_reference(worse, as_served(champion), "v3 (ridge[alpha=1.0])")

    decision = decide(worse, naive(frame), champion, alpha=0.05, refresh_margin=0.05, served_predictions=served)

    assert not decision.promote
    assert "Do not promote refresh ridge[alpha=1.0]: it is not shown to be within 5% of the served champion v3" in (
        decision.reason
    )


def test_refreshes_no_better_than_the_margin_allows_are_promoted_at_about_the_nominal_rate() -> None:
    """At the boundary of the null (the refit's loss is exactly 1 + margin times the champion's in expectation), the
    non-inferiority test promotes at most about alpha of the time: its false-promotion rate is the nominal one."""
    frame, margin = market(), 0.25
    reference_error = np.random.default_rng(0).normal(0, 0.02, (250, len(frame)))
    boundary_error = np.sqrt(1 + margin) * np.random.default_rng(1).normal(0, 0.02, (250, len(frame)))
    promoted = 0
    for trial in range(250):
        truth = frame["next_close"] / frame["close"] - 1.0
        champion = predictions(frame, "v1 (ridge)", frame["close"] * (1 + truth + reference_error[trial]))
        refit = predictions(frame, "ridge", frame["close"] * (1 + truth + boundary_error[trial]))
        promoted += compare_refresh(refit, champion, margin)
    # 250 trials at alpha 0.05: Binomial(250, 0.05), mean 12.5, standard deviation 3.4.
    assert 3 <= promoted <= 24, promoted


def compare_refresh(refit: pd.DataFrame, champion: pd.DataFrame, margin: float) -> bool:
    from stockcast.train.gate import compare

    return compare(refit, champion, against="champion", alpha=0.05, min_days=20, margin=margin)["passed"]


def test_the_champion_as_served_is_judged_once_it_has_served_enough_days() -> None:
    frame = market()
    challenger = better_than_naive(frame, "catboost[depth=4]", error_share=0.5, seed=1)
    champion = better_than_naive(frame, "v3 (ridge[alpha=1.0])", error_share=0.8, seed=2)
    # As it served, the champion did far better than its re-scored spec: on every day it predicted the truth.
    published = challenger.assign(as_of=challenger["date"], predicted_return=challenger["next_return"])
    recent = published[published["date"] >= sorted(published["date"].unique())[-10]]

    few = decide(
        challenger, naive(frame), champion, alpha=0.05, served_predictions=served_reference(challenger, recent, "v3")
    )
    many = decide(
        challenger, naive(frame), champion, alpha=0.05, served_predictions=served_reference(challenger, published, "v3")
    )

    assert few.promote and few.comparisons[2]["judged"] is False
    assert "is not yet judged against the served champion v3 (10 paired days, fewer than 20)" in few.reason
    assert not many.promote and "does not beat the served champion v3 (" in many.reason


def test_the_served_reference_pairs_published_predictions_with_the_challengers_realised_rows() -> None:
    frame = market()
    challenger = better_than_naive(frame, "catboost[depth=4]", error_share=0.5, seed=1)
    published = challenger.head(5).assign(
        as_of=challenger["date"].head(5).dt.strftime("%Y-%m-%d"), predicted_return=0.01
    )

    served = served_reference(challenger, pd.concat([published, published]), "v3")

    assert len(served) == 5 and (served["candidate_id"] == "v3").all()
    assert served["next_return"].tolist() == challenger["next_return"].head(5).tolist()
    assert (served["predicted_return"] == 0.01).all()
