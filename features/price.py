"""Feature families computed from one ticker's own daily prices: trend, moving averages, volatility and range,
oscillators, volume and transformations.

Each family is a ``compute`` function over a ``PricePanel`` (all tickers at once, vectorised) and a ``columns``
function that names its output and states each column's look-back in trading days (rows of the ticker, t
included). Every window is finite and looks only backwards. Price-level outputs are expressed relative to the
close (ratios, percentages), so they are comparable across tickers; the close itself travels beside the features.
"""

from __future__ import annotations

import numpy as np

from features.definitions import ColumnSpec, Family, Kind
from features.windows import (
    PricePanel,
    divide,
    ema_weights,
    lag,
    rolling_mean,
    rolling_std,
    rolling_sum,
    slope_weights,
    weighted_window,
)

Columns = dict[str, np.ndarray]


def _log_close(panel: PricePanel) -> np.ndarray:
    return np.log(panel.close)


def _log_return_1d(panel: PricePanel) -> np.ndarray:
    log_close = _log_close(panel)
    return log_close - lag(log_close, 1, panel.position)


def _ema(values: np.ndarray, span: int, window_per_span: int, position: np.ndarray) -> np.ndarray:
    return weighted_window(values, ema_weights(span, span * window_per_span), position)


# --- trend -----------------------------------------------------------------------------------------------------


def returns(panel: PricePanel, *, windows: tuple[int, ...]) -> Columns:
    """Simple returns over each window."""
    return {f"return_{n}d": panel.close / lag(panel.close, n, panel.position) - 1.0 for n in windows}


def returns_columns(*, windows: tuple[int, ...]) -> tuple[ColumnSpec, ...]:
    """Columns of ``returns``."""
    return tuple(
        ColumnSpec(f"return_{n}d", f"Simple return over {n} trading day(s): close(t) / close(t-{n}) - 1.", n + 1)
        for n in windows
    )


def log_returns(panel: PricePanel, *, windows: tuple[int, ...]) -> Columns:
    """Log returns over each window."""
    log_close = _log_close(panel)
    return {f"log_return_{n}d": log_close - lag(log_close, n, panel.position) for n in windows}


def log_returns_columns(*, windows: tuple[int, ...]) -> tuple[ColumnSpec, ...]:
    """Columns of ``log_returns``."""
    return tuple(
        ColumnSpec(f"log_return_{n}d", f"Log return over {n} trading day(s): ln(close(t) / close(t-{n})).", n + 1)
        for n in windows
    )


def trend_slope(panel: PricePanel, *, windows: tuple[int, ...]) -> Columns:
    """Slope of a least-squares line through the log close over each window."""
    log_close = _log_close(panel)
    return {f"trend_slope_{n}d": weighted_window(log_close, slope_weights(n), panel.position) for n in windows}


def trend_slope_columns(*, windows: tuple[int, ...]) -> tuple[ColumnSpec, ...]:
    """Columns of ``trend_slope``."""
    return tuple(
        ColumnSpec(
            f"trend_slope_{n}d",
            f"Slope of the least-squares line through ln(close) over the last {n} days: the fitted daily "
            "log growth rate.",
            n,
        )
        for n in windows
    )


def momentum(panel: PricePanel, *, lookback: int, skip: int) -> Columns:
    """Return from ``lookback`` days ago to ``skip`` days ago (the last ``skip`` days left out)."""
    start = lag(panel.close, lookback, panel.position)
    end = lag(panel.close, skip, panel.position)
    return {f"momentum_{lookback}_{skip}": end / start - 1.0}


def momentum_columns(*, lookback: int, skip: int) -> tuple[ColumnSpec, ...]:
    """Columns of ``momentum``."""
    return (
        ColumnSpec(
            f"momentum_{lookback}_{skip}",
            f"Momentum: close(t-{skip}) / close(t-{lookback}) - 1. The most recent {skip} days are skipped, "
            "as in the academic momentum factor, because short-term returns tend to reverse.",
            lookback + 1,
        ),
    )


# --- moving averages -------------------------------------------------------------------------------------------


def sma(panel: PricePanel, *, windows: tuple[int, ...]) -> Columns:
    """Close relative to its simple moving averages."""
    return {f"close_to_sma_{n}": panel.close / rolling_mean(panel.close, n, panel.position) - 1.0 for n in windows}


def sma_columns(*, windows: tuple[int, ...]) -> tuple[ColumnSpec, ...]:
    """Columns of ``sma``."""
    return tuple(
        ColumnSpec(f"close_to_sma_{n}", f"close(t) / SMA{n}(close) - 1: distance above the {n}-day mean.", n)
        for n in windows
    )


def ema(panel: PricePanel, *, spans: tuple[int, ...], window_per_span: int) -> Columns:
    """Close relative to its (truncated) exponential moving averages."""
    return {
        f"close_to_ema_{s}": panel.close / _ema(panel.close, s, window_per_span, panel.position) - 1.0 for s in spans
    }


def ema_columns(*, spans: tuple[int, ...], window_per_span: int) -> tuple[ColumnSpec, ...]:
    """Columns of ``ema``."""
    return tuple(
        ColumnSpec(
            f"close_to_ema_{s}",
            f"close(t) / EMA{s}(close) - 1, the EMA (alpha = 2/({s}+1)) truncated to its last "
            f"{s * window_per_span} days and renormalised, so its look-back is finite.",
            s * window_per_span,
        )
        for s in spans
    )


def sma_crossover(panel: PricePanel, *, pairs: tuple[tuple[int, int], ...]) -> Columns:
    """Fast simple moving average relative to the slow one."""
    return {
        f"sma_cross_{fast}_{slow}": rolling_mean(panel.close, fast, panel.position)
        / rolling_mean(panel.close, slow, panel.position)
        - 1.0
        for fast, slow in pairs
    }


def sma_crossover_columns(*, pairs: tuple[tuple[int, int], ...]) -> tuple[ColumnSpec, ...]:
    """Columns of ``sma_crossover``."""
    return tuple(
        ColumnSpec(
            f"sma_cross_{fast}_{slow}",
            f"SMA{fast} / SMA{slow} - 1: positive when the fast average is above the slow one; its sign "
            "change is the crossover.",
            max(fast, slow),
        )
        for fast, slow in pairs
    )


# --- volatility and range --------------------------------------------------------------------------------------


def volatility(panel: PricePanel, *, windows: tuple[int, ...]) -> Columns:
    """Rolling standard deviation of daily log returns."""
    daily = _log_return_1d(panel)
    return {f"volatility_{n}d": rolling_std(daily, n, panel.position) for n in windows}


def volatility_columns(*, windows: tuple[int, ...]) -> tuple[ColumnSpec, ...]:
    """Columns of ``volatility``."""
    return tuple(
        ColumnSpec(
            f"volatility_{n}d",
            f"Standard deviation (ddof=1) of the daily log returns of the last {n} days (not annualised).",
            n + 1,
        )
        for n in windows
    )


def average_true_range(panel: PricePanel, *, window: int) -> Columns:
    """Average true range relative to the close."""
    previous_close = lag(panel.close, 1, panel.position)
    # np.maximum/np.minimum propagate the missing previous close, so the first row has no true range.
    true_range = np.maximum(panel.high, previous_close) - np.minimum(panel.low, previous_close)
    return {f"atr_{window}_pct": rolling_mean(true_range, window, panel.position) / panel.close}


def average_true_range_columns(*, window: int) -> tuple[ColumnSpec, ...]:
    """Columns of ``average_true_range``."""
    return (
        ColumnSpec(
            f"atr_{window}_pct",
            f"Average true range over {window} days divided by close(t). True range = max(high, previous "
            "close) - min(low, previous close); a simple mean rather than Wilder's infinite smoothing.",
            window + 1,
        ),
    )


def intraday_range(panel: PricePanel) -> Columns:
    """The day's high-low range relative to the close."""
    return {"range_pct": (panel.high - panel.low) / panel.close}


def intraday_range_columns() -> tuple[ColumnSpec, ...]:
    """Columns of ``intraday_range``."""
    return (ColumnSpec("range_pct", "(high(t) - low(t)) / close(t): the day's range.", 1),)


def bollinger(panel: PricePanel, *, window: int, num_std: float) -> Columns:
    """Position of the close within its Bollinger band."""
    mean = rolling_mean(panel.close, window, panel.position)
    std = rolling_std(panel.close, window, panel.position, ddof=0)
    return {f"bollinger_pos_{window}": 0.5 + divide(panel.close - mean, 2.0 * num_std * std)}


def bollinger_columns(*, window: int, num_std: float) -> tuple[ColumnSpec, ...]:
    """Columns of ``bollinger``."""
    return (
        ColumnSpec(
            f"bollinger_pos_{window}",
            f"Bollinger %B: (close - lower) / (upper - lower) for bands SMA{window} ± {num_std:g} population "
            "standard deviations; 0 at the lower band, 1 at the upper, NaN when the window is flat.",
            window,
        ),
    )


# --- oscillators -----------------------------------------------------------------------------------------------


def rsi(panel: PricePanel, *, window: int) -> Columns:
    """Relative strength index (Cutler's: simple averages of gains and losses)."""
    change = panel.close - lag(panel.close, 1, panel.position)
    gains = rolling_sum(np.maximum(change, 0.0), window, panel.position)
    losses = rolling_sum(np.maximum(-change, 0.0), window, panel.position)
    return {f"rsi_{window}": 100.0 * divide(gains, gains + losses)}


def rsi_columns(*, window: int) -> tuple[ColumnSpec, ...]:
    """Columns of ``rsi``."""
    return (
        ColumnSpec(
            f"rsi_{window}",
            f"Relative strength index over {window} days, 0-100: 100 * gains / (gains + losses) of the daily "
            "close changes. Cutler's simple-average form: Wilder's smoothing never forgets, so a request "
            "could not reproduce it from a finite history. NaN when the close did not move.",
            window + 1,
        ),
    )


def macd(panel: PricePanel, *, fast: int, slow: int, signal: int, window_per_span: int) -> Columns:
    """MACD in percentage form (fast EMA / slow EMA - 1), its signal line and histogram."""
    line = (
        _ema(panel.close, fast, window_per_span, panel.position)
        / _ema(panel.close, slow, window_per_span, panel.position)
        - 1.0
    )
    signal_line = _ema(line, signal, window_per_span, panel.position)
    return {"macd": line, "macd_signal": signal_line, "macd_hist": line - signal_line}


def macd_columns(*, fast: int, slow: int, signal: int, window_per_span: int) -> tuple[ColumnSpec, ...]:
    """Columns of ``macd``."""
    line_lookback = max(fast, slow) * window_per_span
    signal_lookback = line_lookback + signal * window_per_span - 1
    emas = f"EMAs truncated to {window_per_span} × span days"
    return (
        ColumnSpec(
            "macd",
            f"MACD as a percentage of price: EMA{fast}(close) / EMA{slow}(close) - 1 ({emas}).",
            line_lookback,
        ),
        ColumnSpec("macd_signal", f"Signal line: EMA{signal} of macd ({emas}).", signal_lookback),
        ColumnSpec("macd_hist", "MACD histogram: macd - macd_signal.", signal_lookback),
    )


# --- volume ----------------------------------------------------------------------------------------------------


def volume_ratio(panel: PricePanel, *, windows: tuple[int, ...]) -> Columns:
    """Volume relative to its rolling mean."""
    return {f"volume_ratio_{n}": divide(panel.volume, rolling_mean(panel.volume, n, panel.position)) for n in windows}


def volume_ratio_columns(*, windows: tuple[int, ...]) -> tuple[ColumnSpec, ...]:
    """Columns of ``volume_ratio``."""
    return tuple(
        ColumnSpec(
            f"volume_ratio_{n}",
            f"volume(t) / mean volume of the last {n} days (t included); NaN when nothing traded.",
            n,
        )
        for n in windows
    )


def obv_trend(panel: PricePanel, *, window: int) -> Columns:
    """Net on-balance volume over a window, as a share of the window's volume."""
    direction = np.sign(panel.close - lag(panel.close, 1, panel.position))
    signed = rolling_sum(direction * panel.volume, window, panel.position)
    return {f"obv_trend_{window}": divide(signed, rolling_sum(panel.volume, window, panel.position))}


def obv_trend_columns(*, window: int) -> tuple[ColumnSpec, ...]:
    """Columns of ``obv_trend``."""
    return (
        ColumnSpec(
            f"obv_trend_{window}",
            f"On-balance-volume trend over {window} days, -1..1: sum(sign(close change) × volume) / "
            "sum(volume). The change of OBV over the window, scaled, so it needs no history before it.",
            window + 1,
        ),
    )


# --- transformations -------------------------------------------------------------------------------------------


def log_dollar_volume(panel: PricePanel) -> Columns:
    """Log of the day's traded value."""
    return {"log_dollar_volume": np.log1p(panel.dollar_volume)}


def log_dollar_volume_columns() -> tuple[ColumnSpec, ...]:
    """Columns of ``log_dollar_volume``."""
    return (
        ColumnSpec(
            "log_dollar_volume",
            "ln(1 + close(t) × volume(t)), raw: the day's traded value, a liquidity level that splits do not change. "
            "(The log close and log volume are not features: their levels change at every split.)",
            1,
        ),
    )


def zscores(panel: PricePanel, *, windows: tuple[int, ...]) -> Columns:
    """Time-series z-scores of the close and of log volume."""
    # ln(volume), not ln(1 + volume): a z-score of it does not change when a split rescales every volume.
    log_volume = np.log(np.where(panel.volume > 0, panel.volume, np.nan))
    columns: Columns = {}
    for n in windows:
        for label, values in (("close", panel.close), ("volume", log_volume)):
            mean = rolling_mean(values, n, panel.position)
            std = rolling_std(values, n, panel.position)
            columns[f"zscore_{label}_{n}"] = divide(values - mean, std)
    return columns


def zscores_columns(*, windows: tuple[int, ...]) -> tuple[ColumnSpec, ...]:
    """Columns of ``zscores``."""
    return tuple(
        ColumnSpec(
            f"zscore_{label}_{n}",
            f"({what}(t) - mean) / std (ddof=1) of {what} over the last {n} days, t included; NaN when flat.",
            n,
        )
        for n in windows
        for label, what in (("close", "close"), ("volume", "ln(volume)"))
    )


RETURNS = Family("returns", "trend", Kind.PRICE, returns, returns_columns)
LOG_RETURNS = Family("log_returns", "trend", Kind.PRICE, log_returns, log_returns_columns)
TREND_SLOPE = Family("trend_slope", "trend", Kind.PRICE, trend_slope, trend_slope_columns)
MOMENTUM = Family("momentum", "trend", Kind.PRICE, momentum, momentum_columns)
SMA = Family("sma", "moving average", Kind.PRICE, sma, sma_columns)
EMA = Family("ema", "moving average", Kind.PRICE, ema, ema_columns)
SMA_CROSSOVER = Family("sma_crossover", "moving average", Kind.PRICE, sma_crossover, sma_crossover_columns)
VOLATILITY = Family("volatility", "volatility and range", Kind.PRICE, volatility, volatility_columns)
AVERAGE_TRUE_RANGE = Family(
    "average_true_range", "volatility and range", Kind.PRICE, average_true_range, average_true_range_columns
)
INTRADAY_RANGE = Family("intraday_range", "volatility and range", Kind.PRICE, intraday_range, intraday_range_columns)
BOLLINGER = Family("bollinger", "volatility and range", Kind.PRICE, bollinger, bollinger_columns)
RSI = Family("rsi", "oscillator", Kind.PRICE, rsi, rsi_columns)
MACD = Family("macd", "oscillator", Kind.PRICE, macd, macd_columns)
VOLUME_RATIO = Family("volume_ratio", "volume", Kind.PRICE, volume_ratio, volume_ratio_columns)
OBV_TREND = Family("obv_trend", "volume", Kind.PRICE, obv_trend, obv_trend_columns)
LOG_DOLLAR_VOLUME = Family(
    "log_dollar_volume", "transformation", Kind.PRICE, log_dollar_volume, log_dollar_volume_columns
)
ZSCORES = Family("zscores", "transformation", Kind.PRICE, zscores, zscores_columns)
