"""Corporate actions found three ways (declared, read off adj_close, suspected from prices), each making a split
invisible to every feature and target; and the ways they are refused or reported."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from features import build_features, build_target
from stockcast.data.actions import (
    ActionConflictError,
    check_renames,
    derive_actions,
    describe_action,
    empty_actions,
    validate_actions,
)
from stockcast.data.config import ActionSettings
from stockcast.data.validation import read_csv_text
from tests.factories import with_split
from tests.unit.features.conftest import random_financials

SETTINGS = ActionSettings()
ROUTES = ("declared", "adj_close", "suspected")
DETECTABLE = (2.0, 3.0, 4.0, 5.0, 10.0, 0.5, 0.25, 0.2, 0.1)
"""New shares per old share, at least 2-for-1 either way: what prices alone can tell apart from a bad day."""


def quiet_market(n_tickers: int = 3, n_days: int = 160, seed: int = 3) -> pd.DataFrame:
    """Prices with ordinary daily moves (2 %) and volumes (10 % day-to-day): splits stand out as they do in reality."""
    rng = np.random.default_rng(seed)
    dates = pd.bdate_range("2024-01-02", periods=n_days).as_unit("ns")
    frames = []
    for i in range(n_tickers):
        close = (30.0 + 20 * i) * np.exp(np.cumsum(rng.normal(0.0, 0.02, n_days)))
        open_ = close * np.exp(rng.normal(0.0, 0.005, n_days))
        frames.append(
            pd.DataFrame(
                {
                    "date": dates,
                    "ticker": f"T{i}",
                    "open": open_,
                    "high": np.maximum(open_, close) * 1.01,
                    "low": np.minimum(open_, close) * 0.99,
                    "close": close,
                    "volume": np.round(1e6 * np.exp(rng.normal(0.0, 0.1, n_days))),
                }
            )
        )
    return pd.concat(frames, ignore_index=True).astype({"ticker": "str"})


MARKET = quiet_market()
REPORTS = random_financials(MARKET, seed=3)
DATES = np.sort(MARKET["date"].unique())


def split_market(
    ticker: str, ex_date: pd.Timestamp, shares: float, *, with_adj_close: bool
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The raw prices and reports of a ``shares``-for-1 split (earlier per-share figures in pre-split shares);
    adj_close, when asked, back-adjusted as vendors publish it."""
    prices = MARKET.assign(adj_close=MARKET["close"]) if with_adj_close else MARKET
    return with_split(prices, REPORTS, ticker, ex_date, shares)


def declared(ticker: str, ex_date: pd.Timestamp, shares: float) -> pd.DataFrame:
    kind, ratio = ("split", shares) if shares > 1 else ("reverse_split", 1 / shares)
    row = {"ticker": ticker, "ex_date": ex_date, "kind": kind, "ratio": ratio, "new_ticker": np.nan}
    return pd.DataFrame([row]).astype({"ticker": "str", "kind": "str"})


@settings(max_examples=10, deadline=None)
@given(
    route=st.sampled_from(ROUTES),
    ticker=st.sampled_from(["T0", "T1", "T2"]),
    day=st.integers(min_value=25, max_value=len(DATES) - 1),
    shares=st.sampled_from(DETECTABLE),
)
def test_a_split_known_through_any_route_leaves_features_and_targets_unchanged(route, ticker, day, shares):
    ex_date = pd.Timestamp(DATES[day])
    prices, reports = split_market(ticker, ex_date, shares, with_adj_close=route == "adj_close")
    user_file = declared(ticker, ex_date, shares) if route == "declared" else empty_actions().drop(columns="source")
    actions = derive_actions(prices, user_file, SETTINGS)

    assert actions[["ticker", "ex_date", "source"]].values.tolist() == [[ticker, ex_date, route]]
    expected_features, expected_target = build_features(MARKET, REPORTS), build_target(MARKET)
    pd.testing.assert_frame_equal(build_features(prices, reports, actions=actions), expected_features, rtol=1e-9)
    pd.testing.assert_frame_equal(build_target(prices, actions=actions), expected_target, rtol=1e-9)


def test_an_ordinary_market_has_no_suspected_actions():
    assert derive_actions(MARKET, empty_actions().drop(columns="source"), SETTINGS).empty


@pytest.mark.parametrize("volume", [15.0, 0.5], ids=["panic-volume", "thin-volume"])
def test_a_crash_is_not_a_split(volume):
    prices = MARKET.copy()
    crash = (prices["ticker"] == "T1") & (prices["date"] >= DATES[90])
    prices.loc[crash, ["open", "high", "low", "close"]] *= 0.5  # -50 % on the open...
    prices.loc[(prices["ticker"] == "T1") & (prices["date"] == DATES[90]), "volume"] *= volume  # ...and its volume
    assert derive_actions(prices, empty_actions().drop(columns="source"), SETTINGS).empty


def test_a_spinoff_read_off_adj_close():
    prices = MARKET.copy()
    prices["adj_close"] = prices["close"]
    before = (prices["ticker"] == "T2") & (prices["date"] < DATES[100])
    prices.loc[before, ["open", "high", "low", "close"]] /= 0.7  # the parent keeps 70 % of its value
    actions = derive_actions(prices, empty_actions().drop(columns="source"), SETTINGS)
    assert actions[["ticker", "kind", "source"]].values.tolist() == [["T2", "spinoff", "adj_close"]]
    assert actions["ratio"].item() == pytest.approx(0.7)
    assert (
        describe_action(actions.iloc[0].to_dict())
        == f"T2 {pd.Timestamp(DATES[100]).date()}: spin-off, 70% of the price kept (adj_close)"
    )


def test_dividends_in_adj_close_are_not_actions():
    prices = MARKET.copy()
    prices["adj_close"] = prices["close"]
    for day in (40, 100):  # quarterly dividends of 1.5 % of the price
        earlier = prices["date"] < DATES[day]
        prices.loc[earlier, "adj_close"] *= 0.985
    assert derive_actions(prices, empty_actions().drop(columns="source"), SETTINGS).empty


def test_a_declared_action_wins_over_what_prices_suggest():
    ex_date = pd.Timestamp(DATES[80])
    prices, _ = split_market("T0", ex_date, 2.0, with_adj_close=False)
    actions = derive_actions(prices, declared("T0", ex_date, 2.0), SETTINGS)
    assert actions["source"].tolist() == ["declared"]


@pytest.mark.parametrize(
    ("row", "rule"),
    [
        ("T0,2024-03-01,merger,2,", "known_kind"),
        ("ZZZ,2024-03-01,split,2,", "known_ticker"),
        ("T0,2024-03-01,split,1,", "split_ratio"),
        ("T0,2024-03-01,reverse_split,-10,", "split_ratio"),
        ("T0,2024-03-01,spinoff,1.4,", "spinoff_ratio"),
        ("T0,2024-03-01,rename,,", "rename_target"),
        ("T0,2024-03-01,rename,,T0", "rename_target"),
        ("T0,01/03/2024,split,2,", "date_format"),
    ],
)
def test_each_broken_action_is_quarantined_naming_line_column_and_rule(row, rule):
    text = f"ticker,ex_date,kind,ratio,new_ticker\nT1,2024-03-01,split,2,\n{row}\n".encode()
    accepted, report = validate_actions(
        read_csv_text(text, file="corporate_actions.csv"),
        known_tickers={"T0", "T1"},
        file="corporate_actions.csv",
        max_quarantined_fraction=0.9,
    )
    assert len(accepted) == 1 and [v.rule for v in report.violations] == [rule]
    assert f"corporate_actions.csv: rule '{rule}'" in report.messages()[0] and "at line 3" in report.messages()[0]


def test_a_rename_onto_a_ticker_that_already_trades_is_refused_at_ingest():
    rename = pd.DataFrame(
        [{"ticker": "T0", "ex_date": pd.Timestamp(DATES[50]), "kind": "rename", "ratio": np.nan, "new_ticker": "T1"}]
    )
    with pytest.raises(ActionConflictError, match=r"rename of T0 to T1 from .*: T1 already has prices on"):
        check_renames(MARKET, rename)
    check_renames(MARKET.replace({"ticker": {"T1": "T9"}}), rename)  # a fresh symbol is fine
