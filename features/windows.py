"""Backward-looking window arithmetic over a panel of tickers stored back to back.

The panel's rows are sorted by (ticker, date), so each ticker is one contiguous block. Every helper runs over the
whole panel at once (one vectorised pass, no per-ticker loop) and then blanks the rows whose window would reach
into the previous ticker's block: ``position`` (the row's 0-based index within its ticker) says which. A value
is NaN until its own window is full; nothing is ever filled with zeros.

Finite look-back is the contract here: every output at row t is a function of a fixed number of rows ending at
t. That is what lets a request carrying ``min_history`` rows reproduce the training values exactly, and it is
why exponential averages are *truncated* (a fixed, normalised kernel) rather than recursive.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from numpy.lib.stride_tricks import sliding_window_view

_STD_BLOCK_ROWS = 1 << 12  # windows per block: a 63-day block's temporaries (2 MB) stay in cache
_FLAT_RELATIVE_STD = 1e-12  # far below any real move (prices carry 6 decimals), far above rounding (1e-16)


@dataclass(frozen=True, eq=False)
class PricePanel:
    """The price columns of a (ticker, date)-sorted table as float64 arrays, plus each row's ticker position."""

    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray
    dollar_volume: np.ndarray
    """The row's raw traded value (raw close × raw volume): unlike the adjusted columns, a level of row t itself."""
    position: np.ndarray


def ticker_positions(tickers: pd.Series) -> np.ndarray:
    """0-based row number of each row within its ticker, for a frame sorted by ticker (contiguous blocks)."""
    codes = pd.factorize(tickers)[0]
    row = np.arange(len(codes))
    if len(codes) == 0:
        return row
    starts = np.r_[True, codes[1:] != codes[:-1]]
    return row - np.maximum.accumulate(np.where(starts, row, 0))


def lag(values: np.ndarray, periods: int, position: np.ndarray) -> np.ndarray:
    """The value ``periods`` rows earlier in the same ticker (NaN where the ticker has no such row)."""
    lagged = np.full(len(values), np.nan)
    if periods < len(values):
        lagged[periods:] = values[: len(values) - periods]
    lagged[position < periods] = np.nan
    return lagged


def weighted_window(values: np.ndarray, weights: np.ndarray, position: np.ndarray) -> np.ndarray:
    """Sum of ``weights[k] * value(t - k)`` over k = 0..len(weights)-1 (k = 0 is the row itself).

    A convolution over the whole panel: each output is a fresh dot product over exactly its window, so it does
    not depend on anything before the window (unlike running sums, which would carry rounding from the whole
    history). NaN inside a window makes that output NaN.
    """
    if len(values) == 0:
        return np.zeros(0)
    summed = np.convolve(values, weights)[: len(values)]
    summed[position < len(weights) - 1] = np.nan
    return summed


def rolling_sum(values: np.ndarray, window: int, position: np.ndarray) -> np.ndarray:
    """Sum of the last ``window`` values of the ticker (NaN until the window is full of numbers)."""
    return weighted_window(values, np.ones(window), position)


def rolling_mean(values: np.ndarray, window: int, position: np.ndarray) -> np.ndarray:
    """Mean of the last ``window`` values of the ticker (NaN until the window is full of numbers)."""
    return weighted_window(values, np.full(window, 1.0 / window), position)


def rolling_std(values: np.ndarray, window: int, position: np.ndarray, *, ddof: int = 1) -> np.ndarray:
    """Standard deviation of the last ``window`` values of the ticker (NaN until the window is full of numbers).

    Two-pass (mean first, then squared deviations) over each window on its own, in blocks of rows to bound
    memory. Running-update methods (pandas' rolling) carry rounding from every row before the window: measured
    here, 1e-11 relative between a long and a short history of the same ticker, and far worse after a ticker
    whose prices are orders of magnitude apart. This way a window's result depends on its values only, and a
    flat window gives exactly 0.
    """
    std = np.full(len(values), np.nan)
    if len(values) >= window:
        windows = sliding_window_view(values, window)
        for start in range(0, len(windows), _STD_BLOCK_ROWS):
            block = windows[start : start + _STD_BLOCK_ROWS]
            mean = block.mean(axis=1)
            deviation = block - mean[:, None]
            block_std = np.sqrt(np.einsum("ij,ij->i", deviation, deviation) / (window - ddof))
            # A flat window can leave a rounding residue (~1e-16 of its values) instead of 0: call it flat.
            flat = block_std <= _FLAT_RELATIVE_STD * np.abs(mean)
            std[window - 1 + start : window - 1 + start + len(block)] = np.where(flat, 0.0, block_std)
    std[position < window - 1] = np.nan
    return std


def ema_weights(span: int, window: int) -> np.ndarray:
    """Normalised weights of an exponential moving average with ``span`` truncated to ``window`` rows.

    alpha = 2 / (span + 1) as usual; weights (1 - alpha)^k for ages k < window, rescaled to sum to one, so the
    average is a proper weighted mean of exactly ``window`` rows.
    """
    decay = 1.0 - 2.0 / (span + 1.0)
    weights = decay ** np.arange(window, dtype=float)
    return weights / weights.sum()


def slope_weights(window: int) -> np.ndarray:
    """Weights that turn the last ``window`` values into the slope of their least-squares line, per row.

    With times -k for ages k, the OLS slope is sum((t_k - mean t) * y_k) / sum((t_k - mean t)^2): a fixed linear
    filter, so it can run as a convolution.
    """
    centred_time = (window - 1) / 2.0 - np.arange(window, dtype=float)
    return centred_time / np.sum(centred_time**2)


def divide(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """numerator / denominator, NaN where the denominator is zero or missing (never inf)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = numerator / denominator
    return np.where(denominator == 0, np.nan, ratio)


def warm_up_mask(dates: np.ndarray, position: np.ndarray, min_history: int, max_gap_days: int) -> np.ndarray:
    """True where a row has ``min_history`` rows of its ticker (t included) with no gap between them.

    A gap is a step of more than ``max_gap_days`` calendar days between consecutive rows of the ticker (a
    trading halt, missing data): windows counted in rows would silently straddle it, so such rows are marked
    not warm rather than dropped or repaired. Only the steps inside the last ``min_history`` rows count.
    """
    day = dates.astype("datetime64[D]").astype(np.int64).astype(float)
    is_gap = (day - lag(day, 1, position)) > max_gap_days
    gaps_so_far = np.cumsum(is_gap).astype(float)
    gaps_in_window = gaps_so_far - lag(gaps_so_far, min_history - 1, position)
    return (position >= min_history - 1) & (gaps_in_window == 0)
