"""The decision rule and its backtest, against hand-worked examples."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from stockcast.operate.decisions import (
    BUY_AND_HOLD,
    DAILY_COLUMNS,
    MODEL_RULE,
    MOMENTUM_RULE,
    QUALITY_COLUMNS,
    DecisionRule,
    backtest_rule,
    compare_strategies,
    decide,
    momentum_signal,
    realised_decisions,
)

# 10 bp one-way cost, no threshold, two positions of at most half the capital each: the hand-worked example.
RULE = DecisionRule(cost_bps=10.0, threshold_bps=0.0, max_positions=2, max_weight=0.5)


def day(predicted: dict[str, float], **extra: object) -> pd.DataFrame:
    return pd.DataFrame({"ticker": list(predicted), "predicted_return": list(predicted.values()), **extra})


def weights(decided: pd.DataFrame) -> dict[str, float]:
    return dict(zip(decided["ticker"], decided["target_weight"], strict=True))


def actions(decided: pd.DataFrame) -> dict[str, str]:
    return dict(zip(decided["ticker"], decided["action"], strict=True))


# --- decide ----------------------------------------------------------------------------------------------------


def test_the_predicted_return_net_of_the_cost_must_clear_the_threshold() -> None:
    rule = DecisionRule(cost_bps=10.0, threshold_bps=5.0, max_positions=10, max_weight=0.1, allow_short=True)
    # 16 bp - 10 bp cost = 6 bp > 5 bp: trade; 14 bp - 10 bp = 4 bp: no.
    decided = decide(day({"UP": 0.0016, "UPISH": 0.0014, "DOWN": -0.0016, "DOWNISH": -0.0014}), rule)

    assert actions(decided) == {"DOWN": "sell", "DOWNISH": "hold", "UP": "buy", "UPISH": "hold"}
    assert weights(decided) == {"DOWN": -0.1, "DOWNISH": 0.0, "UP": 0.1, "UPISH": 0.0}
    assert decided["net_return"].to_numpy() == pytest.approx([-0.0006, -0.0004, 0.0006, 0.0004])


def test_a_cost_larger_than_the_predicted_move_stops_the_trade() -> None:
    predictions = day({"A": 0.0008})

    assert actions(decide(predictions, DecisionRule(cost_bps=0.0))) == {"A": "buy"}
    assert actions(decide(predictions, DecisionRule(cost_bps=10.0))) == {"A": "hold"}
    assert decide(predictions, DecisionRule(cost_bps=10.0))["net_return"].iloc[0] == 0.0


def test_only_the_best_max_positions_are_bought() -> None:
    rule = DecisionRule(cost_bps=0.0, max_positions=3, max_weight=1.0)
    decided = decide(day({"A": 0.01, "B": 0.05, "C": 0.02, "D": 0.04, "E": 0.03}), rule)

    assert actions(decided) == {"A": "hold", "B": "buy", "C": "hold", "D": "buy", "E": "buy"}
    assert weights(decided) == pytest.approx({"A": 0.0, "B": 1 / 3, "C": 0.0, "D": 1 / 3, "E": 1 / 3})


def test_equal_weights_are_capped_at_max_weight_and_the_rest_stays_in_cash() -> None:
    few = decide(day({"A": 0.01, "B": 0.02}), DecisionRule(cost_bps=0.0, max_positions=20, max_weight=0.1))
    many = decide(
        day({f"T{i:02d}": 0.01 + i / 1000 for i in range(20)}),
        DecisionRule(cost_bps=0.0, max_positions=20, max_weight=0.1),
    )

    assert weights(few) == {"A": 0.1, "B": 0.1}
    assert many["target_weight"].to_numpy() == pytest.approx(np.full(20, 0.05))


def test_hold_keeps_a_held_position_and_stays_out_of_the_rest() -> None:
    # Neither prediction clears the 10 bp cost: no signal, so what is held stays held.
    decided = decide(day({"HELD": 0.0005, "OUT": 0.0005}), DecisionRule(), held=["HELD"])

    assert actions(decided) == {"HELD": "hold", "OUT": "hold"}
    assert weights(decided) == {"HELD": 0.1, "OUT": 0.0}


def test_a_sell_signal_exits_a_held_long_and_opens_a_short_only_when_allowed() -> None:
    predictions = day({"HELD": -0.01, "OUT": -0.01})

    long_only = decide(predictions, DecisionRule(), held=["HELD"])
    with_shorts = decide(predictions, DecisionRule(allow_short=True), held=["HELD"])

    assert actions(long_only) == {"HELD": "sell", "OUT": "hold"}
    assert weights(long_only) == {"HELD": 0.0, "OUT": 0.0}
    assert actions(with_shorts) == {"HELD": "sell", "OUT": "sell"}
    assert weights(with_shorts) == {"HELD": -0.1, "OUT": -0.1}


def test_a_buy_signal_covers_a_held_short_and_no_signal_keeps_it() -> None:
    rule = DecisionRule(allow_short=True)
    decided = decide(day({"COVER": 0.01, "KEEP": 0.0}), rule, held={"COVER": -0.1, "KEEP": -0.1})

    assert actions(decided) == {"COVER": "buy", "KEEP": "hold"}
    assert weights(decided) == {"COVER": 0.1, "KEEP": -0.1}


def test_held_positions_keep_their_place_ahead_of_stronger_new_signals() -> None:
    decided = decide(day({"HELD": 0.0005, "NEW1": 0.03, "NEW2": 0.02}), RULE, held=["HELD"])

    assert actions(decided) == {"HELD": "hold", "NEW1": "buy", "NEW2": "hold"}
    assert weights(decided) == {"HELD": 0.5, "NEW1": 0.5, "NEW2": 0.0}


def test_more_held_positions_than_allowed_keep_the_best_ones() -> None:
    decided = decide(day({"A": 0.0001, "B": 0.03, "C": 0.02}), RULE, held=["A", "B", "C"])

    assert actions(decided) == {"A": "sell", "B": "hold", "C": "hold"}


def test_other_columns_pass_through_and_rows_are_sorted_by_ticker() -> None:
    predictions = day({"B": 0.01, "A": -0.01}, as_of=["2025-01-02"] * 2, model_version=["v3"] * 2)

    decided = decide(predictions, DecisionRule())

    assert list(decided.columns) == [
        "ticker",
        "predicted_return",
        "as_of",
        "model_version",
        "net_return",
        "action",
        "target_weight",
    ]
    assert decided["ticker"].tolist() == ["A", "B"]
    assert predictions["ticker"].tolist() == ["B", "A"], "the input is not modified"


@pytest.mark.parametrize(
    ("predictions", "held", "message"),
    [
        (pd.DataFrame({"ticker": ["A"]}), (), r"predictions: missing column\(s\) \['predicted_return'\]"),
        (day({"A": 0.01, "B": float("nan")}), (), r"column 'predicted_return' .* tickers \['B'\]"),
        (day({"A": 0.01, "B": float("inf")}), (), r"column 'predicted_return' .* tickers \['B'\]"),
        (pd.DataFrame({"ticker": ["A", "A"], "predicted_return": [0.0, 0.1]}), (), r"column 'ticker' repeats \['A'\]"),
        (day({"A": 0.01}), {"A": -0.1}, r"held: short positions in \['A'\], but the rule does not allow shorts"),
    ],
)
def test_bad_input_is_refused_naming_the_column(predictions: pd.DataFrame, held: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        decide(predictions, DecisionRule(), held=held)  # type: ignore[arg-type]


# --- The backtest: 3 tickers x 4 days, worked by hand ----------------------------------------------------------
#
# Rule: cost 10 bp, two positions of 0.5. Predicted (p) and realised (r) next-day returns:
#   day 1  A p .005 r .01    B p .003 r -.02   C p -.002 r .03   buy A, B             turnover 1  gross -.005
#   day 2  A p .0005 r .02   B p -.004 r 0     C p .006 r -.01   keep A, sell B, buy C turnover 1  gross  .005
#   day 3  A p .004 r -.01   B p .008 r .05    C p .0008 r .02   keep A, C; B no room  turnover 0  gross  .005
#   day 4  A p -.003 r 0     B p .002 r .01    C p -.0005 r .01  sell A, buy B, keep C turnover 1  gross  .01
# Net = gross - 0.001 x turnover: -.006, .004, .005, .009. Position-days with the right sign: 1+1+1+2 of 8.

PREDICTED = {
    "A": [0.005, 0.0005, 0.004, -0.003],
    "B": [0.003, -0.004, 0.008, 0.002],
    "C": [-0.002, 0.006, 0.0008, -0.0005],
}
REALISED = {"A": [0.01, 0.02, -0.01, 0.0], "B": [-0.02, 0.0, 0.05, 0.01], "C": [0.03, -0.01, 0.02, 0.01]}
DATES = pd.bdate_range("2025-03-03", periods=4)
NET = np.array([-0.006, 0.004, 0.005, 0.009])


def walk_forward(predicted: dict[str, list[float]]) -> pd.DataFrame:
    """Backtest rows like `stockcast.train.backtest.backtest`'s, two folds of two days, closes at 100 and 50."""
    rows = [
        {
            "candidate_id": "model",
            "fold": index // 2,
            "date": date,
            "ticker": ticker,
            "close": 100.0 if ticker != "C" else 50.0,
            "next_close": (100.0 if ticker != "C" else 50.0) * (1 + REALISED[ticker][index]),
            "predicted_return": predicted[ticker][index],
        }
        for index, date in enumerate(DATES)
        for ticker in sorted(predicted, reverse=True)  # any row order
    ]
    return pd.DataFrame(rows)


def test_backtest_daily_returns_costs_and_equity_match_the_hand_computation() -> None:
    result = backtest_rule(walk_forward(PREDICTED), RULE)
    daily = result.daily

    assert list(daily.columns) == DAILY_COLUMNS
    assert daily["date"].tolist() == list(DATES)
    assert daily["turnover"].to_numpy() == pytest.approx([1.0, 1.0, 0.0, 1.0])
    assert daily["cost"].to_numpy() == pytest.approx([0.001, 0.001, 0.0, 0.001])
    assert daily["gross_return"].to_numpy() == pytest.approx([-0.005, 0.005, 0.005, 0.01])
    assert daily["net_return"].to_numpy() == pytest.approx(NET)
    assert daily["equity"].to_numpy() == pytest.approx(np.cumprod(1 + NET))
    assert daily["n_positions"].tolist() == [2, 2, 2, 2]


def test_backtest_metrics_match_the_hand_computation() -> None:
    metrics = backtest_rule(walk_forward(PREDICTED), RULE).metrics
    final = 0.994 * 1.004 * 1.005 * 1.009
    # mean .003; deviations -.009 .001 .002 .006 -> sample variance 122e-6 / 3
    daily_std = np.sqrt(122e-6 / 3)

    assert metrics["cumulative_return"] == pytest.approx(final - 1)
    assert metrics["annualised_return"] == pytest.approx(final**63 - 1)
    assert metrics["annualised_volatility"] == pytest.approx(daily_std * np.sqrt(252))
    assert metrics["sharpe"] == pytest.approx(0.003 / daily_std * np.sqrt(252))
    assert metrics["hit_rate"] == pytest.approx(5 / 8)
    assert metrics["mean_daily_turnover"] == pytest.approx(0.75)
    assert metrics["max_drawdown"] == pytest.approx(0.006)  # day 1 falls from the starting 1 to 0.994
    assert metrics["days"] == 4
    assert metrics["trades"] == 6  # buy A, B; sell B, buy C; sell A, buy B


def test_shorts_earn_the_negative_of_the_return() -> None:
    rule = DecisionRule(cost_bps=0.0, max_positions=1, max_weight=1.0, allow_short=True)
    predicted = {ticker: [-0.01] * 4 if ticker == "B" else [0.0] * 4 for ticker in PREDICTED}

    result = backtest_rule(walk_forward(predicted), rule)

    assert result.daily["gross_return"].to_numpy() == pytest.approx([0.02, 0.0, -0.05, -0.01])
    assert result.metrics["hit_rate"] == pytest.approx(1 / 4)  # the flat day is no hit
    assert result.metrics["trades"] == 1


def test_comparison_buy_and_hold_earns_the_mean_next_day_return_minus_costs() -> None:
    comparison = compare_strategies(walk_forward(PREDICTED), RULE)

    mean_return = np.mean([REALISED[ticker] for ticker in "ABC"], axis=0)
    expected = mean_return - 0.001 * np.array([1.0, 0.0, 0.0, 0.0])  # entering costs once; equal weights stay
    assert comparison.metrics["strategy"].tolist() == [MODEL_RULE, MOMENTUM_RULE, BUY_AND_HOLD]
    assert list(comparison.equity.columns) == ["date", MODEL_RULE, MOMENTUM_RULE, BUY_AND_HOLD]
    assert comparison.equity[BUY_AND_HOLD].to_numpy() == pytest.approx(np.cumprod(1 + expected))
    assert comparison.equity[MODEL_RULE].to_numpy() == pytest.approx(np.cumprod(1 + NET))


def test_the_momentum_rule_bets_on_each_tickers_last_move() -> None:
    dates = pd.bdate_range("2025-03-03", periods=3)
    closes = {"UP": [100.0, 102.0, 104.04], "DOWN": [50.0, 49.0, 48.02]}
    rows = pd.DataFrame(
        [
            {"date": date, "ticker": ticker, "close": closes[ticker][index], "next_close": closes[ticker][index] * 1.01}
            for index, date in enumerate(dates)
            for ticker in ("DOWN", "UP")
        ]
    )

    signal = momentum_signal(rows)
    comparison = compare_strategies(rows.assign(predicted_return=0.0), RULE)
    momentum = comparison.metrics.set_index("strategy").loc[MOMENTUM_RULE]

    assert signal["predicted_return"].to_numpy() == pytest.approx([0.0, 0.0, -0.02, 0.02, -0.02, 0.02])
    assert momentum["trades"] == 1  # buys UP on the second day and keeps it; a sell signal on DOWN holds nothing
    assert comparison.equity[MOMENTUM_RULE].to_numpy() == pytest.approx(
        [1.0, 1.0 + 0.5 * 0.01 - 0.0005, (1.0 + 0.5 * 0.01 - 0.0005) * 1.005]
    )
    assert comparison.metrics.set_index("strategy").loc[MODEL_RULE, "trades"] == 0  # a zero prediction never trades


def test_perfect_foresight_beats_buy_and_hold() -> None:
    rng = np.random.default_rng(3)
    dates = pd.bdate_range("2025-01-01", periods=60)
    rows = pd.DataFrame({"date": np.repeat(dates, 8), "ticker": np.tile([f"T{i}" for i in range(8)], 60)})
    realised = rng.normal(0.0, 0.02, len(rows))
    rows = rows.assign(close=100.0, next_close=100.0 * (1 + realised))

    comparison = compare_strategies(rows.assign(predicted_return=realised), RULE)
    metrics = comparison.metrics.set_index("strategy")

    assert metrics.loc[MODEL_RULE, "cumulative_return"] > metrics.loc[BUY_AND_HOLD, "cumulative_return"] + 0.5
    assert metrics.loc[MODEL_RULE, "hit_rate"] > 0.8


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda rows: rows.drop(columns="next_close"), r"missing column\(s\) \['next_close'\]"),
        (lambda rows: pd.concat([rows, rows.iloc[[0]]]), r"repeat a \(date, ticker\), e.g. \(2025-03-03, C\)"),
        (lambda rows: rows.assign(next_close=rows["next_close"].where(rows["ticker"] != "B")), "column 'next_close'"),
    ],
)
def test_backtest_refuses_bad_rows(change, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        backtest_rule(change(walk_forward(PREDICTED)), RULE)


def test_rule_settings_are_validated() -> None:
    with pytest.raises(ValueError, match="max_weight"):
        DecisionRule(max_weight=1.5)
    with pytest.raises(ValueError, match="max_positions"):
        DecisionRule(max_positions=0)
    with pytest.raises(ValueError, match="cost_bps"):
        DecisionRule(cost_bps=-1.0)


def test_a_held_ticker_without_a_prediction_today_is_closed() -> None:
    predictions = pd.DataFrame({"ticker": ["A", "B"], "predicted_return": [0.01, 0.0]})
    decided = decide(predictions, DecisionRule(cost_bps=10.0), held={"A": 0.1, "GONE": 0.1})

    assert decided["ticker"].tolist() == ["A", "B", "GONE"]
    gone = decided.set_index("ticker").loc["GONE"]
    assert gone["action"] == "sell" and gone["target_weight"] == 0.0 and np.isnan(gone["predicted_return"])
    assert decided.set_index("ticker").loc["A", "action"] == "hold"


def test_a_held_ticker_that_stops_trading_is_closed_in_the_backtest() -> None:
    dates = pd.to_datetime(["2025-01-02", "2025-01-02", "2025-01-03"])
    rows = pd.DataFrame(
        {
            "date": dates,
            "ticker": ["A", "GONE", "A"],
            "close": [10.0, 20.0, 11.0],
            "next_close": [11.0, 22.0, 11.0],
            "predicted_return": [0.05, 0.05, 0.05],
        }
    )
    daily = backtest_rule(rows, DecisionRule(cost_bps=0.0, max_weight=0.5)).daily

    assert np.isfinite(daily["net_return"]).all()
    assert daily["gross_return"].tolist() == pytest.approx([0.5 * 0.1 + 0.5 * 0.1, 0.5 * 0.0])
    assert daily["turnover"].tolist() == pytest.approx([1.0, 0.5])  # day 2: GONE closed (0.5), A unchanged


# --- What the published decisions earned ------------------------------------------------------------------------


def test_realised_decisions_are_worked_out_by_hand() -> None:
    dates = pd.to_datetime(["2024-12-02", "2024-12-03", "2024-12-04"])
    prices = pd.DataFrame(
        {
            "date": list(dates) * 2,
            "ticker": ["A"] * 3 + ["B"] * 3,
            "close": [100.0, 110.0, 99.0, 50.0, 50.0, 55.0],
        }
    )
    decisions = pd.DataFrame(
        {
            "ticker": ["A", "B", "A", "B", "A", "B"],
            "as_of": [dates[0], dates[0], dates[1], dates[1], dates[2], dates[2]],
            "last_close": [100.0, 50.0, 110.0, 50.0, 99.0, 55.0],
            "predicted_return": [0.02, -0.01, 0.01, 0.02, 0.0, 0.0],
            "predicted_close": [102.0, 49.5, 111.1, 51.0, 99.0, 55.0],
            "model_version": "v1",
            "target_weight": [0.5, 0.0, 0.5, 0.5, 0.0, 0.0],
        }
    )
    other_model = decisions.assign(model_version="v2", target_weight=1.0)

    quality = realised_decisions(pd.concat([decisions, other_model]), prices, None, model_version="v1", cost=0.001)

    assert list(quality.columns) == QUALITY_COLUMNS and quality["date"].tolist() == list(dates[:2])  # day 3: unknown
    # Day 1: half in A, which rose 10 %; entering costs 0.5 x 0.001. Buy-and-hold: (10 % + 0 %) / 2.
    # Day 2: half in A (-10 %) and half in B (+10 %); adding B costs 0.5 x 0.001. Buy-and-hold: 0.
    assert quality["n_positions"].tolist() == [1, 2] and quality["hit_rate"].tolist() == [1.0, 0.5]
    assert quality["turnover"].tolist() == pytest.approx([0.5, 0.5])
    assert quality["net_return"].tolist() == pytest.approx([0.0495, -0.0005])
    assert quality["benchmark_return"].tolist() == pytest.approx([0.05, 0.0])
    assert quality["equity"].tolist() == pytest.approx([1.0495, 1.0495 * 0.9995])
    assert quality["drawdown"].tolist() == pytest.approx([0.0, -0.0005])
    assert realised_decisions(decisions, prices, None, model_version="v9", cost=0.001).empty
    not_yet = decisions[decisions["as_of"] == dates[2]]  # no close has followed the last day yet
    assert realised_decisions(not_yet, prices, None, model_version="v1", cost=0.001).empty
