"""Each price feature family against values computed by hand or by a transparent reference (numpy, pandas)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from features import FeatureSet, build_features
from features.definitions import Family, define
from features.price import (
    AVERAGE_TRUE_RANGE,
    BOLLINGER,
    EMA,
    INTRADAY_RANGE,
    LOG_DOLLAR_VOLUME,
    LOG_RETURNS,
    MACD,
    MOMENTUM,
    OBV_TREND,
    RETURNS,
    RSI,
    SMA,
    SMA_CROSSOVER,
    TREND_SLOPE,
    VOLATILITY,
    VOLUME_RATIO,
    ZSCORES,
)


def single(family: Family, **params) -> FeatureSet:
    return FeatureSet(name=f"only_{family.name}", definitions=(define(family, **params),))


def column(prices: pd.DataFrame, family: Family, name: str, **params) -> np.ndarray:
    return build_features(prices, feature_set=single(family, **params))[name].to_numpy()


def truncated_ema(values: np.ndarray, span: int, window: int) -> np.ndarray:
    """Reference: pandas' adjusted EWM over exactly the last ``window`` values (its weights are (1 - alpha)^k
    normalised over the rows it sees, which is the truncated EMA's definition)."""
    out = np.full(len(values), np.nan)
    for t in range(window - 1, len(values)):
        out[t] = pd.Series(values[t - window + 1 : t + 1]).ewm(span=span, adjust=True).mean().iloc[-1]
    return out


def test_returns_and_log_returns_by_hand(make_bars):
    prices = make_bars([100.0, 110.0, 99.0, 108.9])
    np.testing.assert_allclose(
        column(prices, RETURNS, "return_1d", windows=(1, 2)), [np.nan, 0.1, -0.1, 0.1], equal_nan=True
    )
    np.testing.assert_allclose(
        column(prices, RETURNS, "return_2d", windows=(1, 2)), [np.nan, np.nan, -0.01, -0.01], equal_nan=True
    )
    np.testing.assert_allclose(
        column(prices, LOG_RETURNS, "log_return_1d", windows=(1,)),
        [np.nan, math.log(1.1), math.log(0.9), math.log(1.1)],
        equal_nan=True,
    )


def test_trend_slope_is_the_least_squares_slope_of_log_close(make_prices):
    prices = make_prices(n_tickers=1, n_days=30, seed=3)
    got = column(prices, TREND_SLOPE, "trend_slope_10d", windows=(10,))
    log_close = np.log(prices["close"].to_numpy())
    expected = [np.polyfit(np.arange(10), log_close[t - 9 : t + 1], 1)[0] for t in range(9, 30)]
    assert np.isnan(got[:9]).all()
    np.testing.assert_allclose(got[9:], expected, rtol=1e-10)


def test_momentum_skips_the_most_recent_days(make_bars):
    prices = make_bars(np.arange(1.0, 11.0))
    got = column(prices, MOMENTUM, "momentum_5_2", lookback=5, skip=2)
    assert np.isnan(got[:5]).all()
    assert got[9] == pytest.approx(8.0 / 5.0 - 1.0)  # close(t-2) = 8, close(t-5) = 5


def test_close_relative_to_simple_average_and_crossover(make_bars):
    prices = make_bars([1.0, 2.0, 3.0, 4.0])
    np.testing.assert_allclose(
        column(prices, SMA, "close_to_sma_2", windows=(2,)), [np.nan, 2 / 1.5 - 1, 3 / 2.5 - 1, 4 / 3.5 - 1]
    )
    np.testing.assert_allclose(
        column(prices, SMA_CROSSOVER, "sma_cross_2_3", pairs=((2, 3),)), [np.nan, np.nan, 2.5 / 2 - 1, 3.5 / 3 - 1]
    )


def test_truncated_ema_is_an_exponential_average_over_a_fixed_window(make_prices):
    prices = make_prices(n_tickers=1, n_days=40, seed=4)
    close = prices["close"].to_numpy()
    got = column(prices, EMA, "close_to_ema_4", spans=(4,), window_per_span=3)
    np.testing.assert_allclose(got, close / truncated_ema(close, 4, 12) - 1, rtol=1e-10, equal_nan=True)
    assert np.isnan(got[:11]).all() and not np.isnan(got[11:]).any()


def test_volatility_is_the_sample_std_of_daily_log_returns(make_prices):
    prices = make_prices(n_tickers=1, n_days=25, seed=5)
    log_return = np.diff(np.log(prices["close"].to_numpy()))
    got = column(prices, VOLATILITY, "volatility_5d", windows=(5,))
    assert np.isnan(got[:5]).all()  # 5 returns need 6 closes
    expected = [np.std(log_return[t - 5 : t], ddof=1) for t in range(5, 25)]
    np.testing.assert_allclose(got[5:], expected, rtol=1e-10)


def test_average_true_range_and_intraday_range_by_hand(make_bars):
    prices = make_bars([10.0, 11.0, 10.5], high=[10.2, 11.5, 10.8], low=[9.8, 10.4, 9.9])
    # True ranges: day 1 max(11.5, 10) - min(10.4, 10) = 1.5; day 2 max(10.8, 11) - min(9.9, 11) = 1.1.
    np.testing.assert_allclose(
        column(prices, AVERAGE_TRUE_RANGE, "atr_2_pct", window=2), [np.nan, np.nan, 1.3 / 10.5], equal_nan=True
    )
    np.testing.assert_allclose(column(prices, INTRADAY_RANGE, "range_pct"), [0.4 / 10, 1.1 / 11, 0.9 / 10.5])


def test_bollinger_position_by_hand_and_nan_when_flat(make_bars):
    prices = make_bars([1.0, 2.0, 3.0, 4.0, 5.0, 5.0, 5.0, 5.0, 5.0])
    got = column(prices, BOLLINGER, "bollinger_pos_5", window=5, num_std=2.0)
    std = math.sqrt(2.0)  # population std of 1..5
    assert got[4] == pytest.approx((5 - (3 - 2 * std)) / (4 * std))
    assert np.isnan(got[8])  # five equal closes: no band


def test_rsi_by_hand(make_bars):
    prices = make_bars([10.0, 11.0, 10.0, 12.0, 13.0, 14.0, 15.0, 15.0, 15.0, 15.0])
    got = column(prices, RSI, "rsi_3", window=3)
    assert np.isnan(got[:3]).all()
    assert got[3] == pytest.approx(75.0)  # gains 1 + 2, loss 1
    assert got[6] == pytest.approx(100.0)  # only gains
    assert np.isnan(got[9])  # no move at all


def test_macd_lines_follow_their_truncated_emas(make_prices):
    prices = make_prices(n_tickers=1, n_days=60, seed=6)
    close = prices["close"].to_numpy()
    params = {"fast": 2, "slow": 4, "signal": 3, "window_per_span": 2}
    features = build_features(prices, feature_set=single(MACD, **params))
    line = truncated_ema(close, 2, 4) / truncated_ema(close, 4, 8) - 1
    signal = np.full(60, np.nan)
    signal[7:] = truncated_ema(line[7:], 3, 6)
    np.testing.assert_allclose(features["macd"], line, rtol=1e-10, equal_nan=True)
    np.testing.assert_allclose(features["macd_signal"], signal, rtol=1e-10, equal_nan=True)
    np.testing.assert_allclose(features["macd_hist"], line - signal, rtol=1e-9, atol=1e-15, equal_nan=True)
    assert np.isnan(features["macd_signal"][:12]).all() and not np.isnan(features["macd_signal"][12:]).any()


def test_volume_ratio_and_obv_trend_by_hand(make_bars):
    prices = make_bars([10.0, 11.0, 10.0, 10.0, 12.0], volume=[100.0, 200.0, 300.0, 400.0, 500.0])
    np.testing.assert_allclose(
        column(prices, VOLUME_RATIO, "volume_ratio_3", windows=(3,)), [np.nan, np.nan, 1.5, 400 / 300, 500 / 400]
    )
    # Directions of days 1..4: up (200), down (300), flat (400), up (500).
    got = column(prices, OBV_TREND, "obv_trend_4", window=4)
    assert np.isnan(got[:4]).all()
    assert got[4] == pytest.approx((200 - 300 + 500) / (200 + 300 + 400 + 500))


def test_volume_ratio_is_missing_not_infinite_when_nothing_traded(make_bars):
    prices = make_bars([10.0, 11.0, 12.0], volume=[0.0, 0.0, 0.0])
    assert np.isnan(column(prices, VOLUME_RATIO, "volume_ratio_2", windows=(2,))).all()


def test_log_dollar_volume_and_zscores_against_numpy(make_prices):
    prices = make_prices(n_tickers=1, n_days=20, seed=7)
    close, volume = prices["close"].to_numpy(), prices["volume"].to_numpy()
    np.testing.assert_allclose(column(prices, LOG_DOLLAR_VOLUME, "log_dollar_volume"), np.log1p(close * volume))
    features = build_features(prices, feature_set=single(ZSCORES, windows=(5,)))
    for name, values in (("zscore_close_5", close), ("zscore_volume_5", np.log(volume))):
        expected = [
            (values[t] - values[t - 4 : t + 1].mean()) / values[t - 4 : t + 1].std(ddof=1) for t in range(4, 20)
        ]
        assert np.isnan(features[name][:4]).all()
        np.testing.assert_allclose(features[name][4:], expected, rtol=1e-9)


def test_windows_never_reach_into_the_previous_ticker(make_prices):
    prices = make_prices(n_tickers=3, n_days=15, seed=8)
    features = build_features(prices, feature_set=single(RETURNS, windows=(3,)))
    for _, rows in features.groupby("ticker"):
        assert rows["return_3d"].iloc[:3].isna().all() and rows["return_3d"].iloc[3:].notna().all()
