"""A deterministic synthetic stock market: daily prices, quarterly financials, corporate actions and the oracle
next-day close.

Why it exists: the demo, every test fixture and the benchmarks need data that behaves like a real market (fat
tails, volatility clustering, a factor structure, earnings seasons, an exchange calendar and, on request, the
quirks of real vendor data) yet is exactly reproducible from a seed and carries a *known*, weak predictable
component, so that a model's skill can be judged against the best forecast achievable (the oracle) as well as
against the naive "tomorrow = today".

The model, in words (i is a ticker, t a trading day; every quantity named below is per ticker unless it says)
-------------------------------------------------------------------------------------------------------------
Calendar. The market trades on the sessions of an exchange calendar (``MarketSpec.calendar``, NYSE by default,
from ``stockcast.data.calendar``): no rows on weekends or exchange holidays such as 25 December.

Shocks. A market factor, one factor per sector and one idiosyncratic shock per ticker each follow a GARCH(1,1)
process with unit-variance Student-t innovations: today's variance = omega + alpha × yesterday's squared shock
+ (persistence − alpha) × yesterday's variance. Sector and idiosyncratic variances are further multiplied by
(market variance / its long-run level)^0.7: turbulence is common to all stocks, as in real markets. The
unpredictable part of ticker i's simple return is
    u_t = beta_i × market shock_t + gamma_i × its sector's shock_t + idiosyncratic shock_t,
clipped symmetrically to ±50 % (a symmetric clip of a symmetric variable keeps its mean at zero).

Fundamentals, per calendar quarter q. Revenue = last quarter's revenue × exp(trend growth / 4 + change of the
ticker's seasonal pattern) × (1 + noise). The net margin reverts to the ticker's long-run margin (negative for
10 % of the firms): margin_q = long-run + 0.6 × (margin_{q−1} − long-run) + noise. net_income = margin × revenue,
eps = net_income / shares_outstanding. Before each report the generator tracks the expected net income
(expected margin × expected revenue; both noises are independent with mean zero, so this is the exact
conditional mean) and scores the report by its standardised surprise SUE = (net income − expectation) / its
standard deviation, which has mean zero. Figures are published on report_date = period_end + 15 to 70 days
(median about 30, annual reports later), moved forward to a trading day of the calendar. financial_info holds the
reports published from a year before a ticker's first price row (as a prospectus would) to its last one.

Daily return. On day t the close moves by the simple return
    R_t = mu_t + u_t + lambda_i × SUE           (the last term on report days only: the news is out before the open),
where the expected return mu_t is fixed at the close of t − 1 (clipped to ±5 %) and is the sum of
  1. beta_i × the market's drift (7 % a year);
  2. short-term reversal: a share psi (``overreaction_share``) of every idiosyncratic shock is an overreaction
     that fades at ``reversal_speed`` kappa a day; with overreaction_t = (1 − kappa) × overreaction_{t−1} + psi ×
     idiosyncratic shock_t, mu_t contains −kappa × overreaction_{t−1};
  3. post-earnings-announcement drift: after a report mu contains a drift in the direction of the surprise that
     decays with a 20-day time constant and adds up to ``earnings_drift_share`` × the report-day jump;
  4. a valuation anchor: −``valuation_pull`` × log(close / (the ticker's price-to-sales multiple × trailing
     twelve months' revenue per share, as last *reported*)).
Together these explain a few per cent of the variance of next-day returns (the tests measure it), in line with
the small predictability of real markets; the reversal is most of it. Prices stay positive by construction:
|mu| <= 5 %, |u| <= 50 % and a report-day jump is below 25 % (the surprise's noises are clipped to ±3).
The simulated close is a total-return path in the share units of the first day; the raw close written is that
path divided by the ticker's *price factor* (below), which only corporate actions change.

Oracle. expected_next_close_t = raw close_t × (1 + mu_{t+1}) × price factor_t / price factor_{t+1}: the exact
conditional expectation of the raw close of the calendar's next trading day under this model (u and SUE have mean
zero given everything known at t), on the basis that day trades on. Corporate actions are announced in advance,
so on the day before an ex-date the forecast is already divided by a split's ratio, multiplied by a reverse
split's, and multiplied by the share of the price a spin-off leaves. A row exists for every price row except a
ticker's last row before a delisting or a rename (nothing trades the next day); the day before a missing day
keeps its row (the close of the next trading day exists, the vendor just did not deliver it); on the calendar's
last day it is the forecast for the next trading day.

OHLC and volume. open = previous close × exp(gap), the gap being a share of the day's log return (most of it on
report days) plus noise; high and low are the maximum and minimum of a Brownian bridge from open to close with
the day's conditional volatility, sampled exactly. log volume = the ticker's base + an AR(1) term + a term in
the day's |standardised move| + a report-day boost.

Quirks of real data, each off by default; ``quirks=True`` turns them all on
---------------------------------------------------------------------------
Corporate actions fall strictly inside the history: not in the first 130 trading days (features have warmed up)
nor in the last 10 (held-out days never cut one); in a market too short for that, between a third of the way in
and a tenth before the end. A ticker has at most one split, reverse split, spin-off or rename, and a market of
50 tickers × 1 year with ``quirks=True`` has at least one of each, for any seed.
  * ``listings``: about 20 % of the tickers list late and 10 % delist early (a ``delisting`` action on the first
    trading day after the last row); financials only from a year before listing to delisting.
  * ``splits``: about 10 % of the tickers split 2-for-1 or 3-for-1 (``split``, ratio 2 or 3 new shares per old).
  * ``reverse_splits``: about 4 % (at least one) consolidate 1-for-10 or 1-for-5 (``reverse_split``, ratio 10 or
    5 old shares per new).
    For both, raw open/high/low/close are divided by the shares per original share in effect and volume is
    multiplied by it; eps and shares_outstanding are in the share units of their report day.
  * ``spinoff``: one ticker spins a business off: from the ex-date its raw prices are a fraction f in 0.60..0.75
    (``spinoff``, ratio f) of the path, a one-day drop that is not a return; volume and financials are unchanged.
  * ``rename``: one ticker OLD stops trading and 27 to 31 calendar days later the same company trades as NEW, a
    symbol no other ticker uses (``rename``, ticker OLD, new_ticker NEW, ex-date NEW's first day); the days in
    between have no rows, and the price path runs on through the gap. Reports published after OLD's last row
    are NEW's.
  * ``missing_days``: one market-wide missing day (a trading day on which the vendor delivered no row at all) and,
    for about 10 % of the tickers (at least one), a vendor gap of 1 to 3 consecutive trading days; never on an
    action's ex-date or the day before it, nor on a ticker's first or last row.
``adj_close``: when a price-changing action is enabled (splits, reverse splits, spin-off) and ``with_adj_close``
holds, stock_price.csv has an ``adj_close`` column: the raw close back-adjusted for every action later in the
ticker's history (the close divided by the price factor of the ticker's last listed day), so it has no jump at
an ex-date and equals the close from the last action on. ``with_adj_close=False`` keeps the actions in the raw
prices without it (a "prices only" vendor). ``MarketData.actions`` is the truth of the actions
(``corporate_actions.csv``, written on request). ``regime_shift_date``: from that day on the market, sector and
idiosyncratic shocks are multiplied by ``regime_vol_multiplier`` (earnings jumps are not), every market beta
is shifted by ``regime_beta_shift`` and the reversal term of mu is multiplied by ``regime_reversal_scale``: a change
of factor loadings (−1: overreactions go on instead of fading, as in a momentum spell; 0: no reversal).

Determinism. Each concern (universe, fundamentals, returns, open/high/low, volume, listings, splits, reverse
splits, spin-off, rename, missing days) draws from its own child of ``numpy.random.SeedSequence(seed)``, so a
quirk never changes the underlying paths: it only hides rows, relabels a renamed ticker's later rows, or rescales
raw prices and shares. With any quirks, ``adj_close`` × the ticker's final price factor is the ``close`` of the
same spec without quirks. Prices are rounded to 6 decimals, currency amounts to whole units, share counts and
volume to whole shares, eps to 4 decimals; the CSV files carry exactly the in-memory values.
"""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from stockcast.data.calendar import DATA_CALENDAR, DEFAULT_CALENDAR, CalendarError, trading_days
from stockcast.data.contract import ACTIONS, FINANCIALS, ORACLE, PRICES

FloatArray = np.ndarray
IntArray = np.ndarray

SECTORS: tuple[str, ...] = (
    "Technology",
    "Health Care",
    "Financials",
    "Consumer Discretionary",
    "Industrials",
    "Communication Services",
    "Consumer Staples",
    "Energy",
    "Utilities",
    "Materials",
    "Real Estate",
)
"""GICS-like sector names; a spec with ``n_sectors = k`` uses the first k."""

MAX_TICKERS = 100_000  # far below the 475,254 possible symbols, so drawing unique ones stays quick
_MISSING_VALUE_SYMBOLS = ("NAN", "NONE", "NULL")  # read as missing by pandas or by our validation

TRADING_DAYS_PER_YEAR = 252
PRICE_DECIMALS = 6
EPS_DECIMALS = 4
ADJ_CLOSE = "adj_close"

_MARKET_VOLATILITY = 0.16  # annualised, about the S&P 500's long-run figure
_MARKET_DRIFT = 0.07 / TRADING_DAYS_PER_YEAR
_SECTOR_VOLATILITY = 0.10
_COMMON_VOLATILITY = 0.7  # elasticity of sector and idiosyncratic variance to the market's
_MEDIAN_TOTAL_VOLATILITY = 0.30  # annualised, median S&P 500 constituent
_SHOCK_CLIP = 0.5  # symmetric bound on u: keeps prices positive, keeps E[u] = 0
_EXPECTED_RETURN_CLIP = 0.05
_DRIFT_DECAY_DAYS = 20.0
_LOSS_MAKING_SHARE = 0.10
_PREHISTORY_QUARTERS = 8  # fundamentals start this early so trailing figures exist on the first day
_LISTING_HISTORY = pd.Timedelta(days=365)  # financials published from this long before listing (a prospectus)
_NOISE_CLIP = 3.0  # fundamental noises are standard normals clipped to ±3 (symmetric: the mean stays zero)
_CLIPPED_VARIANCE = 0.995007  # variance of a standard normal clipped to ±3
_REPORT_ROLL_MARGIN = pd.Timedelta(days=100)  # report dates fall up to ~75 days after the last quarter end

QUIRKS: tuple[str, ...] = ("listings", "splits", "reverse_splits", "spinoff", "rename", "missing_days")
"""The quirk flags of ``MarketSpec``; ``quirks=True`` turns every one on."""
_PRICE_ACTION_QUIRKS = ("splits", "reverse_splits", "spinoff")  # the quirks that rescale raw prices
_WARM_UP_DAYS = 130  # no action in the first 130 trading days: the features (min_history 127) have warmed up
_HELD_OUT_GUARD_DAYS = 10  # nor in the last 10: held-out days never cut one
_SPLIT_SHARE = 0.1  # of the tickers split forward
_REVERSE_SPLIT_SHARE = 0.04  # of the tickers consolidate
_VENDOR_GAP_SHARE = 0.1  # of the tickers miss 1 to 3 days
_RENAME_GAP_DAYS = 27  # calendar days from OLD's last row to NEW's first, plus 0 to 4


@dataclass(frozen=True)
class MarketSpec:
    """What to generate: the universe, the calendar, the seed, the quirks and the predictable component."""

    n_tickers: int = 50
    start: str = "2021-01-04"  # inclusive: the market opens on the calendar's first session from this day
    end: str = "2025-12-31"  # a fixed past date: the output never changes and is never "in the future"
    seed: int = 42
    n_sectors: int = 10  # at most len(SECTORS)
    calendar: str = DEFAULT_CALENDAR  # exchange calendar (``stockcast.data.calendar``): rows on its sessions only
    # Quirks of real data (module docstring), each off by default; ``quirks`` turns every one on.
    quirks: bool = False
    listings: bool = False  # ragged histories: late listings, early delistings
    splits: bool = False  # 2-for-1 / 3-for-1 splits in raw prices
    reverse_splits: bool = False  # 1-for-10 / 1-for-5 consolidations in raw prices
    spinoff: bool = False  # one spin-off: a one-day drop of the raw price that is not a return
    rename: bool = False  # one ticker renamed after a gap of about 29 calendar days
    missing_days: bool = False  # vendor gaps of 1-3 days for some tickers, and one market-wide missing day
    with_adj_close: bool = True  # write adj_close when the raw prices carry splits, reverse splits or a spin-off
    regime_shift_date: str | None = None  # from this day on, shocks are scaled and betas shifted:
    regime_vol_multiplier: float = 2.0  # by this factor
    regime_beta_shift: float = 0.0  # by this amount
    regime_reversal_scale: float = 1.0  # and the reversal term of the expected return multiplied by this
    # The predictable component (module docstring); all four at zero leave only the market drift predictable.
    reversal_speed: float = 0.1  # kappa: share of the outstanding overreaction that fades each day
    overreaction_share: float = 0.8  # psi: share of each idiosyncratic shock that is overreaction
    earnings_drift_share: float = 0.25  # drift after a report, as a share of its jump
    valuation_pull: float = 0.002  # daily pull of log price towards the price-to-sales anchor

    def __post_init__(self) -> None:
        problems: list[str] = []
        if not _is_integer(self.n_tickers) or not 1 <= self.n_tickers <= MAX_TICKERS:
            problems.append(f"n_tickers must be an integer in 1..{MAX_TICKERS}, got {self.n_tickers!r}")
        if not _is_integer(self.seed) or self.seed < 0:
            problems.append(f"seed must be an integer >= 0, got {self.seed!r}")
        if not _is_integer(self.n_sectors) or not 1 <= self.n_sectors <= len(SECTORS):
            problems.append(f"n_sectors must be an integer in 1..{len(SECTORS)}, got {self.n_sectors!r}")
        start, end = _parse_date("start", self.start, problems), _parse_date("end", self.end, problems)
        if not isinstance(self.calendar, str) or self.calendar == DATA_CALENDAR:
            problems.append(f"calendar must be an exchange code such as {DEFAULT_CALENDAR!r}, got {self.calendar!r}")
        elif start is not None and end is not None:
            if start >= end:
                problems.append(f"start ({self.start}) must be before end ({self.end})")
            else:
                try:
                    sessions = trading_days(self.calendar, start, end)
                except CalendarError as exc:
                    problems.append(f"calendar: {exc}")
                else:
                    if len(sessions) < 2:
                        problems.append(
                            f"start..end ({self.start}..{self.end}) must span at least 2 trading days of "
                            f"calendar {self.calendar}"
                        )
        if end is not None and end > pd.Timestamp.today().normalize():
            problems.append(f"end ({self.end}) must not be in the future")
        if self.regime_shift_date is not None:
            shift = _parse_date("regime_shift_date", self.regime_shift_date, problems)
            if shift is not None and start is not None and end is not None and not start < shift <= end:
                problems.append(f"regime_shift_date ({self.regime_shift_date}) must be after start and <= end")
        if not (math.isfinite(self.regime_vol_multiplier) and self.regime_vol_multiplier > 0):
            problems.append(f"regime_vol_multiplier must be a finite number > 0, got {self.regime_vol_multiplier!r}")
        if not math.isfinite(self.regime_beta_shift):
            problems.append(f"regime_beta_shift must be finite, got {self.regime_beta_shift!r}")
        if not math.isfinite(self.regime_reversal_scale):
            problems.append(f"regime_reversal_scale must be finite, got {self.regime_reversal_scale!r}")
        if not 0 <= self.reversal_speed < 1:
            problems.append(f"reversal_speed must be in [0, 1), got {self.reversal_speed!r}")
        if not 0 <= self.overreaction_share <= 1:
            problems.append(f"overreaction_share must be in [0, 1], got {self.overreaction_share!r}")
        if not 0 <= self.earnings_drift_share <= 1:
            problems.append(f"earnings_drift_share must be in [0, 1], got {self.earnings_drift_share!r}")
        if not 0 <= self.valuation_pull < 1:
            problems.append(f"valuation_pull must be in [0, 1), got {self.valuation_pull!r}")
        if problems:
            raise ValueError("Invalid MarketSpec: " + "; ".join(problems))

    def trading_days(self) -> pd.DatetimeIndex:
        """The sessions of the exchange calendar from start to end inclusive (naive midnights, ns resolution)."""
        return trading_days(self.calendar, self.start, self.end)

    def quirk_enabled(self, name: str) -> bool:
        """Whether the quirk ``name`` (one of ``QUIRKS``) is on, by its own flag or by ``quirks``."""
        if name not in QUIRKS:
            raise ValueError(f"unknown quirk {name!r}; known: {', '.join(QUIRKS)}")
        return bool(self.quirks or getattr(self, name))

    @property
    def active_quirks(self) -> tuple[str, ...]:
        """The quirks that are on, in ``QUIRKS`` order."""
        return tuple(name for name in QUIRKS if self.quirk_enabled(name))

    @property
    def writes_adj_close(self) -> bool:
        """Whether stock_price.csv gets adj_close: raw prices carry actions, and ``with_adj_close`` holds."""
        return self.with_adj_close and any(self.quirk_enabled(name) for name in _PRICE_ACTION_QUIRKS)


@dataclass(frozen=True)
class MarketData:
    """The generated market: the two contract tables, the oracle (kept apart from the user-facing data) and the
    truth of the corporate actions (``ACTIONS`` columns; empty when no quirk makes any)."""

    prices: pd.DataFrame
    financials: pd.DataFrame
    oracle: pd.DataFrame
    actions: pd.DataFrame = field(default_factory=ACTIONS.empty)


def _is_integer(value: object) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool)


def _parse_date(field: str, value: object, problems: list[str]) -> pd.Timestamp | None:
    """The date as a midnight Timestamp, or None after recording why it is not one."""
    try:
        parsed = pd.Timestamp(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        parsed = pd.NaT
    if pd.isna(parsed):
        problems.append(f"{field} must be an ISO date (YYYY-MM-DD), got {value!r}")
        return None
    return parsed.normalize()


# --------------------------------------------------------------------------------------------- the universe
@dataclass(frozen=True)
class _Universe:
    """Static per-ticker parameters (arrays of length n_tickers, tickers in alphabetical order)."""

    tickers: np.ndarray
    sector: IntArray
    beta: FloatArray
    sector_loading: FloatArray
    idio_variance: FloatArray  # unconditional daily variance of the idiosyncratic shock
    garch_alpha: FloatArray
    garch_persistence: FloatArray
    tail_df: FloatArray
    jump_per_sue: FloatArray  # lambda: report-day return per unit of standardised surprise
    price_to_sales: FloatArray
    initial_price: FloatArray
    initial_shares: FloatArray
    revenue_growth: FloatArray  # annual trend
    seasonal: FloatArray  # (4, n): log-revenue pattern by calendar quarter, zero mean
    long_run_margin: FloatArray
    margin_noise: FloatArray
    revenue_noise: FloatArray
    buyback_rate: FloatArray  # quarterly log change of shares outstanding
    report_lag_days: FloatArray  # the ticker's usual lag after a quarter end
    assets_to_sales: FloatArray
    leverage: FloatArray
    base_turnover: FloatArray  # daily volume as a share of shares outstanding


def _ticker_symbols(rng: np.random.Generator, n: int) -> np.ndarray:
    """n unique 3- or 4-letter upper-case symbols, alphabetically sorted, none that CSV readers take for missing."""
    letters = np.array(list("ABCDEFGHIJKLMNOPQRSTUVWXYZ"))
    symbols = np.empty(0, dtype="<U4")
    while len(symbols) < n:
        draws = letters[rng.integers(0, 26, size=(2 * n + 8, 4))]
        draws[rng.random(len(draws)) < 0.5, 3] = ""  # half are 3-letter symbols
        candidates = draws.view("<U4").ravel()
        candidates = candidates[~np.isin(candidates, _MISSING_VALUE_SYMBOLS)]
        symbols = pd.unique(np.concatenate([symbols, candidates]))
    return np.sort(symbols[:n]).astype(object)


def _draw_universe(rng: np.random.Generator, spec: MarketSpec) -> _Universe:
    n = spec.n_tickers
    tickers = _ticker_symbols(rng, n)
    sector = rng.permutation(np.arange(n) % spec.n_sectors)  # every sector used when n >= n_sectors
    # Total volatility: lognormal around 30 % a year with p10..p90 about 19 %..47 % (S&P 500 constituents).
    total_volatility = np.clip(_MEDIAN_TOTAL_VOLATILITY * np.exp(0.35 * rng.standard_normal(n)), 0.10, 1.2)
    # Riskier stocks carry more market risk: beta rises with volatility, p10..p90 about 0.5..1.5.
    beta = np.clip(
        1.0 + 0.9 * np.log(total_volatility / _MEDIAN_TOTAL_VOLATILITY) + 0.2 * rng.standard_normal(n), 0.2, 2.2
    )
    sector_loading = rng.uniform(0.5, 1.5, n)
    jump_per_sue = rng.uniform(0.02, 0.05, n)
    daily_total = total_volatility**2 / TRADING_DAYS_PER_YEAR
    systematic = (beta**2 * _MARKET_VOLATILITY**2 + sector_loading**2 * _SECTOR_VOLATILITY**2) / TRADING_DAYS_PER_YEAR
    earnings = jump_per_sue**2 * 4 / TRADING_DAYS_PER_YEAR  # four reports a year, SUE of unit variance
    idio_variance = np.maximum(daily_total - systematic - earnings, 0.25 * daily_total)

    loss_making = np.zeros(n, dtype=bool)
    loss_making[rng.permutation(n)[: round(_LOSS_MAKING_SHARE * n)]] = True
    long_run_margin = np.where(
        loss_making, rng.uniform(-0.15, -0.03, n), np.clip(rng.normal(0.12, 0.06, n), 0.03, 0.35)
    )
    pattern = rng.standard_normal((4, n))
    seasonal = (pattern - pattern.mean(axis=0)) * rng.uniform(0.0, 0.08, n)
    initial_price = np.clip(60.0 * np.exp(0.6 * rng.standard_normal(n)), 5.0, 1000.0)
    market_cap = 20e9 * np.exp(1.0 * rng.standard_normal(n))
    return _Universe(
        tickers=tickers,
        sector=sector,
        beta=beta,
        sector_loading=sector_loading,
        idio_variance=idio_variance,
        garch_alpha=rng.uniform(0.08, 0.14, n),
        garch_persistence=rng.uniform(0.95, 0.98, n),
        tail_df=rng.uniform(4.5, 8.0, n),
        jump_per_sue=jump_per_sue,
        price_to_sales=2.5 * np.exp(0.5 * rng.standard_normal(n)),
        initial_price=initial_price,
        initial_shares=np.round(market_cap / initial_price),
        revenue_growth=rng.normal(0.06, 0.05, n),
        seasonal=seasonal,
        long_run_margin=long_run_margin,
        margin_noise=rng.uniform(0.01, 0.03, n),
        revenue_noise=rng.uniform(0.01, 0.04, n),
        buyback_rate=rng.normal(-0.003, 0.004, n),
        report_lag_days=rng.uniform(22.0, 36.0, n),
        assets_to_sales=1.5 * np.exp(0.6 * rng.standard_normal(n)),
        leverage=rng.uniform(0.3, 0.85, n),
        base_turnover=0.006 * np.exp(0.5 * rng.standard_normal(n)),
    )


# ------------------------------------------------------------------------------------------- fundamentals
@dataclass(frozen=True)
class _Fundamentals:
    """Quarterly figures, arrays of shape (quarters, tickers); per-share figures in original (unsplit) shares."""

    period_end: pd.DatetimeIndex
    report_date: np.ndarray  # datetime64[ns], (q, n)
    revenue: FloatArray
    net_income: FloatArray
    shares: FloatArray
    total_assets: FloatArray
    total_liabilities: FloatArray
    sue: FloatArray  # standardised earnings surprise of each report
    log_anchor: FloatArray  # log(price-to-sales × trailing-twelve-month revenue per share), NaN before 4 quarters


def _clipped_normal(rng: np.random.Generator, shape: tuple[int, ...]) -> FloatArray:
    return np.clip(rng.standard_normal(shape), -_NOISE_CLIP, _NOISE_CLIP)


def _simulate_fundamentals(rng: np.random.Generator, spec: MarketSpec, universe: _Universe) -> _Fundamentals:
    start, end = pd.Timestamp(spec.start), pd.Timestamp(spec.end)
    first = start - pd.offsets.QuarterEnd(_PREHISTORY_QUARTERS)
    period_end = pd.date_range(first, end, freq="QE").as_unit("ns")
    q_count, n = len(period_end), len(universe.tickers)
    u = universe
    revenue_shock = _clipped_normal(rng, (q_count, n))
    margin_shock = _clipped_normal(rng, (q_count, n))
    share_shock = rng.standard_normal((q_count, n))
    asset_shock = rng.standard_normal((q_count, n))
    leverage_shock = rng.standard_normal((q_count, n))
    lag_shock = rng.standard_normal((q_count, n))

    quarter_of_year = period_end.quarter.to_numpy() - 1
    years_before_start = _PREHISTORY_QUARTERS / 4
    revenue_prev = (
        u.initial_shares * u.initial_price / u.price_to_sales / 4 * np.exp(-u.revenue_growth * years_before_start)
    )
    margin_prev = u.long_run_margin.copy()
    shares_prev, assets_prev = u.initial_shares.copy(), 4 * revenue_prev * u.assets_to_sales
    shape = (q_count, n)
    revenue, net_income, shares, assets, sue = (np.empty(shape) for _ in range(5))
    for q in range(q_count):
        season_change = u.seasonal[quarter_of_year[q]] - u.seasonal[quarter_of_year[q] - 1]
        expected_revenue = revenue_prev * np.exp(u.revenue_growth / 4 + season_change)
        expected_margin = u.long_run_margin + 0.6 * (margin_prev - u.long_run_margin)
        revenue[q] = expected_revenue * (1 + u.revenue_noise * revenue_shock[q])
        margin = expected_margin + u.margin_noise * margin_shock[q]
        net_income[q] = margin * revenue[q]
        # (m_e + s_m x)(R_e (1 + s_r y)) - m_e R_e with independent zero-mean x, y: exact mean zero.
        surprise_sd = expected_revenue * np.sqrt(
            _CLIPPED_VARIANCE * (expected_margin**2 * u.revenue_noise**2 + u.margin_noise**2)
            + _CLIPPED_VARIANCE**2 * u.margin_noise**2 * u.revenue_noise**2
        )
        sue[q] = (net_income[q] - expected_margin * expected_revenue) / surprise_sd
        shares[q] = np.round(shares_prev * np.exp(u.buyback_rate + 0.004 * share_shock[q]))
        assets[q] = assets_prev * np.exp(u.revenue_growth / 4 + 0.02 * asset_shock[q])
        revenue_prev, margin_prev, shares_prev, assets_prev = revenue[q], margin, shares[q], assets[q]

    liabilities = assets * np.clip(u.leverage + 0.02 * leverage_shock, 0.05, 0.95)
    # Annual (Q4) reports take longer; lags stay within 15..68 days before rolling to a business day.
    lag = np.clip(u.report_lag_days + 12.0 * (quarter_of_year == 3)[:, None] + 4.0 * lag_shock, 15, 68)
    due = period_end.to_numpy().astype("datetime64[D]")[:, None] + np.round(lag).astype("timedelta64[D]")
    holidays = _exchange_holidays(spec.calendar, period_end[0], period_end[-1] + _REPORT_ROLL_MARGIN)
    report_date = np.busday_offset(due, 0, roll="forward", holidays=holidays).astype("datetime64[ns]")
    ttm_revenue = pd.DataFrame(revenue).rolling(4).sum().to_numpy()
    return _Fundamentals(
        period_end=period_end,
        report_date=report_date,
        revenue=np.round(revenue),
        net_income=np.round(net_income),
        shares=shares,
        total_assets=np.round(assets),
        total_liabilities=np.round(liabilities),
        sue=sue,
        log_anchor=np.log(u.price_to_sales * ttm_revenue / shares),
    )


def _exchange_holidays(calendar: str, first: pd.Timestamp, last: pd.Timestamp) -> np.ndarray:
    """The weekdays from first to last on which the exchange does not trade (datetime64[D]), so that reports are
    published on trading days. Empty when the range reaches beyond what the calendar covers: reports then only
    skip weekends."""
    try:
        sessions = trading_days(calendar, first, last)
    except CalendarError:
        return np.array([], dtype="datetime64[D]")
    return pd.bdate_range(first, last).difference(sessions).to_numpy().astype("datetime64[D]")


def _report_days(calendar: pd.DatetimeIndex, fundamentals: _Fundamentals) -> tuple[IntArray, np.ndarray]:
    """For each (quarter, ticker): the calendar index of its report day, and whether that day is in the calendar."""
    index = calendar.searchsorted(fundamentals.report_date.ravel()).reshape(fundamentals.report_date.shape)
    in_calendar = (fundamentals.report_date >= calendar[0].to_datetime64()) & (
        fundamentals.report_date <= calendar[-1].to_datetime64()
    )
    return index, in_calendar


def _as_reported(calendar: pd.DatetimeIndex, fundamentals: _Fundamentals, quarterly: FloatArray) -> FloatArray:
    """A quarterly figure as known at each close (days × tickers): the latest report on or before that day.

    Leakage guard: a quarter's figures count from its report_date, never from its period_end.
    """
    index, in_calendar = _report_days(calendar, fundamentals)
    published = fundamentals.report_date <= calendar[-1].to_datetime64()
    daily = np.full((len(calendar), quarterly.shape[1]), np.nan)
    columns = np.arange(daily.shape[1])
    for q in range(len(fundamentals.period_end)):  # in report order, so a later report overwrites an earlier one
        rows = np.where(in_calendar[q], index[q], 0)  # reports before the first day land on it
        known = published[q]
        daily[rows[known], columns[known]] = quarterly[q, known]
    return pd.DataFrame(daily).ffill().to_numpy()


# ----------------------------------------------------------------------------------------------- returns
def _student_t(rng: np.random.Generator, df: FloatArray | float, shape: tuple[int, ...]) -> FloatArray:
    """Student-t draws scaled to unit variance."""
    return rng.standard_t(df, size=shape) * np.sqrt((np.asarray(df) - 2) / np.asarray(df))


def _garch_variance(
    innovations: FloatArray, unconditional: FloatArray, alpha: FloatArray, persistence: FloatArray
) -> FloatArray:
    """Conditional variances of GARCH(1,1) processes driven by unit-variance innovations (days × series).

    Started at the unconditional variance; one vectorised step per day across all series.
    """
    omega = unconditional * (1 - persistence)
    garch_beta = persistence - alpha
    variance = np.empty_like(innovations)
    variance[0] = unconditional
    for t in range(1, len(innovations)):
        variance[t] = omega + alpha * variance[t - 1] * innovations[t - 1] ** 2 + garch_beta * variance[t - 1]
    return variance


@dataclass(frozen=True)
class _Paths:
    """Daily latent paths, arrays of shape (days, tickers) in original (unsplit) share units."""

    close: FloatArray
    log_return: FloatArray
    volatility: FloatArray  # conditional standard deviation of u on the day
    expected_next_return: FloatArray  # mu_{t+1}, fixed at the close of t
    report_day: np.ndarray  # bool


def _simulate_returns(
    rng: np.random.Generator,
    spec: MarketSpec,
    universe: _Universe,
    fundamentals: _Fundamentals,
    calendar: pd.DatetimeIndex,
) -> _Paths:
    """Closes and expected returns from the factor model, earnings jumps and the predictable component."""
    u = universe
    days, n, n_sectors = len(calendar), len(u.tickers), spec.n_sectors
    market_z = _student_t(rng, 6.0, (days, 1))
    sector_z = _student_t(rng, 6.0, (days, n_sectors))
    idio_z = _student_t(rng, u.tail_df, (days, n))
    initial_mispricing = 0.1 * rng.standard_normal(n)

    innovations = np.hstack([market_z, sector_z, idio_z])
    unconditional = np.concatenate(
        [
            [_MARKET_VOLATILITY**2 / TRADING_DAYS_PER_YEAR],
            np.full(n_sectors, _SECTOR_VOLATILITY**2 / TRADING_DAYS_PER_YEAR),
            u.idio_variance,
        ]
    )
    alpha = np.concatenate([[0.07], np.full(n_sectors, 0.06), u.garch_alpha])
    persistence = np.concatenate([[0.975], np.full(n_sectors, 0.97), u.garch_persistence])
    variance = _garch_variance(innovations, unconditional, alpha, persistence)
    market_var = variance[:, :1].copy()
    # Volatility is partly common: sector and idiosyncratic variances rise and fall with the market's, as in
    # real markets (a "common idiosyncratic volatility" factor), so turbulent days are turbulent for everyone.
    market_stress = (market_var / unconditional[0]) ** _COMMON_VOLATILITY
    sector_var = variance[:, 1 : 1 + n_sectors] * market_stress
    idio_var = variance[:, 1 + n_sectors :] * market_stress
    del innovations, variance  # (days × tickers) arrays are released as soon as possible throughout

    regime = np.ones(days)
    beta_shift = np.zeros((days, 1))
    reversal_loading = np.full(days, spec.reversal_speed)
    if spec.regime_shift_date is not None:
        after = calendar >= pd.Timestamp(spec.regime_shift_date)
        regime[after] = spec.regime_vol_multiplier
        beta_shift[after] = spec.regime_beta_shift
        reversal_loading[after] *= spec.regime_reversal_scale
    beta = u.beta + beta_shift  # (days, n)
    idio_shock = np.sqrt(idio_var) * idio_z * regime[:, None]
    shock = (
        beta * np.sqrt(market_var) * market_z * regime[:, None]
        + u.sector_loading * (np.sqrt(sector_var) * sector_z * regime[:, None])[:, u.sector]
        + idio_shock
    )
    volatility = (
        np.sqrt(beta**2 * market_var + u.sector_loading**2 * sector_var[:, u.sector] + idio_var) * regime[:, None]
    )
    del idio_z, sector_z
    # Symmetric clip: the unpredictable part keeps mean zero, and 1 + return stays positive.
    np.clip(shock, -_SHOCK_CLIP, _SHOCK_CLIP, out=shock)

    report_index, in_calendar = _report_days(calendar, fundamentals)
    report_day = np.zeros((days, n), dtype=bool)
    sue = np.zeros((days, n))
    quarter_rows, ticker_cols = np.nonzero(in_calendar)
    report_day[report_index[quarter_rows, ticker_cols], ticker_cols] = True
    sue[report_index[quarter_rows, ticker_cols], ticker_cols] = fundamentals.sue[quarter_rows, ticker_cols]
    shock += u.jump_per_sue * sue

    drift_decay = math.exp(-1 / _DRIFT_DECAY_DAYS)
    # The drift adds up to earnings_drift_share × the jump: impulse / (1 - decay) = share × lambda × SUE.
    drift_impulse = spec.earnings_drift_share * u.jump_per_sue * (1 - drift_decay) * sue
    log_anchor = _as_reported(calendar, fundamentals, fundamentals.log_anchor)
    kappa, psi, pull = spec.reversal_speed, spec.overreaction_share, spec.valuation_pull
    market_drift = beta * _MARKET_DRIFT

    close = np.empty((days, n))
    expected = np.empty((days, n))  # expected[t] = mu_{t+1}
    close[0] = np.exp(log_anchor[0] + initial_mispricing)
    overreaction = psi * idio_shock[0]
    earnings_drift = drift_impulse[0]

    def expected_return(t: int, overreaction: FloatArray, earnings_drift: FloatArray) -> FloatArray:
        # Everything here is known at the close of t (the anchor only from reported figures; a regime's beta
        # shift and loadings are scheduled): it is exactly what the oracle uses.
        mu = (
            market_drift[min(t + 1, days - 1)]
            - reversal_loading[min(t + 1, days - 1)] * overreaction
            + earnings_drift
            - pull * (np.log(close[t]) - log_anchor[t])
        )
        return np.clip(mu, -_EXPECTED_RETURN_CLIP, _EXPECTED_RETURN_CLIP)

    for t in range(1, days):
        expected[t - 1] = expected_return(t - 1, overreaction, earnings_drift)
        close[t] = close[t - 1] * (1 + expected[t - 1] + shock[t])
        overreaction = (1 - kappa) * overreaction + psi * idio_shock[t]
        earnings_drift = drift_decay * earnings_drift + drift_impulse[t]
    expected[days - 1] = expected_return(days - 1, overreaction, earnings_drift)

    log_return = np.empty((days, n))
    log_return[0] = 0.0
    log_return[1:] = np.diff(np.log(close), axis=0)
    return _Paths(close, log_return, volatility, expected, report_day)


# ----------------------------------------------------------------------------------------- microstructure
def _open_high_low(rng: np.random.Generator, paths: _Paths) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Open, high and low (original share units) consistent with the closes."""
    # News comes out overnight: most of a report day's move is in the opening gap.
    gap = np.where(paths.report_day, 0.85, 0.3) * paths.log_return
    gap += 0.25 * paths.volatility * rng.standard_normal(gap.shape)
    open_ = np.exp(gap, out=gap)
    open_[1:] *= paths.close[:-1]
    open_[0] *= paths.close[0]
    intraday = np.log(paths.close / open_)
    bridge_variance = (0.8 * paths.volatility) ** 2

    def extreme(sign: float) -> FloatArray:
        # The exact law of the maximum (sign +1) or minimum (sign -1) of a Brownian bridge from 0 to `intraday`
        # with variance `bridge_variance` over the day, by inversion of P(max > m) = exp(-2 m (m - x) / var).
        uniform = 1 - rng.random(intraday.shape)  # in (0, 1]: the log stays finite
        spread = np.sqrt(intraday**2 - 2 * bridge_variance * np.log(uniform))
        return open_ * np.exp((intraday + sign * spread) / 2)

    # The outer max/min only guard the order against floating-point ties.
    high = np.maximum(extreme(1.0), np.maximum(open_, paths.close))
    low = np.minimum(extreme(-1.0), np.minimum(open_, paths.close))
    return open_, high, low


def _volume(
    rng: np.random.Generator,
    universe: _Universe,
    fundamentals: _Fundamentals,
    calendar: pd.DatetimeIndex,
    paths: _Paths,
) -> FloatArray:
    """Daily volume in original share units: persistent, higher on large moves and on report days."""
    noise = rng.standard_normal(paths.close.shape)
    persistent = np.empty_like(noise)
    persistent[0] = noise[0] * 0.25 / math.sqrt(1 - 0.8**2)  # started in its stationary distribution
    for t in range(1, len(noise)):
        persistent[t] = 0.8 * persistent[t - 1] + 0.25 * noise[t]
    shares = _as_reported(calendar, fundamentals, fundamentals.shares)
    log_volume = (
        np.log(universe.base_turnover * shares)
        + persistent
        + 0.25 * (np.abs(paths.log_return) / paths.volatility - 0.8)
        + 0.8 * paths.report_day
    )
    return np.round(np.exp(log_volume))


# ----------------------------------------------------------------------------------------------- quirks
def _listing_windows(rng: np.random.Generator, spec: MarketSpec, days: int) -> tuple[IntArray, IntArray]:
    """First and last listed day index per ticker: about 20 % list late and 10 % delist early when enabled."""
    n = spec.n_tickers
    first, last = np.zeros(n, dtype=int), np.full(n, days - 1)
    if not spec.quirk_enabled("listings"):
        return first, last
    late_pick, early_pick = rng.permutation(n), rng.permutation(n)
    late_at, early_at = rng.random(n), rng.random(n)
    min_length = max(2, min(126, days // 4))
    late = late_pick[: max(1, round(0.2 * n))]
    early = early_pick[: max(1, round(0.1 * n))]
    first[late] = 1 + np.floor(late_at[late] * 0.6 * (days - min_length)).astype(int)
    last[early] = days - 2 - np.floor(early_at[early] * 0.6 * (days - min_length)).astype(int)
    too_short = last - first + 1 < min_length
    last[too_short] = np.minimum(days - 1, first[too_short] + min_length - 1)
    first[too_short] = last[too_short] - min_length + 1
    return first, last


def _action_window(days: int) -> tuple[int, int]:
    """The first and last day index (inclusive) on which an action or a missing day may fall: after the first
    130 trading days and before the last 10; in a market too short for that, from a third of the way in to a
    tenth before the end."""
    low, high = _WARM_UP_DAYS, days - 1 - _HELD_OUT_GUARD_DAYS
    if low > high:
        low, high = max(1, days // 3), days - 1 - days // 10
    return low, high


def _pick_events(
    rng: np.random.Generator, count: int, low: IntArray, high: IntArray, taken: np.ndarray
) -> tuple[IntArray, IntArray, FloatArray]:
    """Up to ``count`` random tickers not yet ``taken`` whose allowed day range low..high is not empty, a uniform
    day in that range for each, and a uniform number in [0, 1) for each (to draw a ratio). Marks them taken."""
    n = len(low)
    order, position, extra = rng.permutation(n), rng.random(n), rng.random(n)
    chosen = order[(low[order] <= high[order]) & ~taken[order]][:count]
    day = low[chosen] + np.floor(position[chosen] * (high[chosen] - low[chosen] + 1)).astype(int)
    taken[chosen] = True
    return chosen, day, extra[chosen]


def _fresh_symbol(rng: np.random.Generator, used: set[str]) -> str:
    """A ticker symbol nobody in ``used`` has (the new name of a renamed company)."""
    while True:
        for symbol in _ticker_symbols(rng, 8):
            if symbol not in used:
                return str(symbol)


@dataclass(frozen=True)
class _Rename:
    """A renamed company: OLD (its universe symbol) trades up to ``old_last``, NEW from ``new_first`` on."""

    column: int  # the company's column in the (days × tickers) arrays
    old_last: int  # day index of OLD's last row
    new_first: int  # day index of NEW's first row: the rename's ex-date
    new_symbol: str


@dataclass(frozen=True)
class _Event:
    """One split, reverse split or spin-off: the ticker's column, its ex-date's day index, its kind and ratio."""

    column: int
    day: int
    kind: str
    ratio: float


@dataclass(frozen=True)
class _Quirks:
    """Which rows exist, under which symbol and in which units: everything the quirks decide."""

    first: IntArray  # first listed day index per ticker
    last: IntArray  # last listed day index per ticker
    share_factor: FloatArray  # (days, tickers): shares per original share in effect on each day
    price_factor: FloatArray  # (days, tickers): path price / raw price (the share factor over spin-offs' f)
    hidden: np.ndarray  # (days, tickers) bool: listed days without a row (rename gap, missing days)
    events: tuple[_Event, ...]
    rename: _Rename | None

    @property
    def rows(self) -> np.ndarray:
        """(days, tickers) bool: the (day, ticker) pairs with a price row."""
        day = np.arange(len(self.hidden))[:, None]
        return (day >= self.first) & (day <= self.last) & ~self.hidden

    def last_rows(self) -> IntArray:
        """Day index of each ticker's last row (its company's last row, for a renamed one)."""
        rows = self.rows
        return len(rows) - 1 - np.argmax(rows[::-1], axis=0)


@dataclass(frozen=True)
class _QuirkStreams:
    """One random stream per quirk that moves or hides rows (listings have their own, drawn before)."""

    splits: np.random.Generator
    reverse_splits: np.random.Generator
    spinoff: np.random.Generator
    rename: np.random.Generator
    missing_days: np.random.Generator


def _events(kind: str, columns: IntArray, days: IntArray, ratios: FloatArray) -> list[_Event]:
    return [_Event(int(c), int(d), kind, float(r)) for c, d, r in zip(columns, days, ratios, strict=True)]


def _draw_quirks(
    *,
    streams: _QuirkStreams,
    spec: MarketSpec,
    calendar: pd.DatetimeIndex,
    tickers: np.ndarray,
    first: IntArray,
    last: IntArray,
) -> _Quirks:
    """Corporate actions, the rename and the missing days, on top of the listing windows ``first``..``last``.

    Each kind draws from its own stream and takes tickers no earlier kind took (order: splits, reverse splits,
    spin-off, rename), so a ticker has at most one of them; ex-dates fall inside the action window and on a day
    the ticker is listed after its first.
    """
    days, n = len(calendar), len(tickers)
    window_low, window_high = _action_window(days)
    low, high = np.maximum(window_low, first + 1), np.minimum(window_high, last)
    taken = np.zeros(n, dtype=bool)
    share_factor = np.ones((days, n))
    events: list[_Event] = []

    if spec.quirk_enabled("splits"):
        chosen, day, extra = _pick_events(streams.splits, max(1, round(_SPLIT_SHARE * n)), low, high, taken)
        events += _events("split", chosen, day, np.where(extra < 0.7, 2.0, 3.0))
    if spec.quirk_enabled("reverse_splits"):
        count = max(1, round(_REVERSE_SPLIT_SHARE * n))
        chosen, day, extra = _pick_events(streams.reverse_splits, count, low, high, taken)
        events += _events("reverse_split", chosen, day, np.where(extra < 0.5, 10.0, 5.0))
    for event in events:
        share_factor[event.day :, event.column] *= event.ratio if event.kind == "split" else 1 / event.ratio
    price_factor = share_factor
    if spec.quirk_enabled("spinoff"):
        chosen, day, extra = _pick_events(streams.spinoff, 1, low, high, taken)
        spinoffs = _events("spinoff", chosen, day, np.round(0.6 + 0.15 * extra, 4))
        price_factor = share_factor.copy()
        for event in spinoffs:
            price_factor[event.day :, event.column] /= event.ratio
        events += spinoffs

    hidden = np.zeros((days, n), dtype=bool)
    rename = None
    if spec.quirk_enabled("rename"):
        rng = streams.rename
        gap = pd.to_timedelta(_RENAME_GAP_DAYS + rng.integers(0, 5, n), unit="D")
        # OLD's last row is early enough that NEW's first day (gap later) is still within the window.
        old_high = calendar.searchsorted(calendar[high] - gap, side="right") - 1
        chosen, day, _ = _pick_events(rng, 1, low, old_high, taken)
        if len(chosen):
            column, old_last = int(chosen[0]), int(day[0])
            new_first = int(calendar.searchsorted(calendar[old_last] + gap[column]))
            rename = _Rename(column, old_last, new_first, _fresh_symbol(rng, set(tickers)))
            hidden[old_last + 1 : new_first, column] = True

    if spec.quirk_enabled("missing_days"):
        _hide_missing_days(
            rng=streams.missing_days,
            hidden=hidden,
            first=first,
            last=last,
            events=events,
            rename=rename,
            window=(window_low, window_high),
        )
    return _Quirks(first, last, share_factor, price_factor, hidden, tuple(events), rename)


def _hide_missing_days(
    *,
    rng: np.random.Generator,
    hidden: np.ndarray,
    first: IntArray,
    last: IntArray,
    events: list[_Event],
    rename: _Rename | None,
    window: tuple[int, int],
) -> None:
    """Mark one market-wide missing day and a vendor gap of 1-3 days for some tickers in ``hidden`` (in place).

    Neither falls on an action's ex-date or the day before it (so every action shows between two consecutive
    rows), nor on a rename's boundary rows; vendor gaps also spare a ticker's first and last rows and the days
    next to the market-wide one. The market-wide day avoids listing boundaries too when it can.
    """
    days, n = hidden.shape
    window_low, window_high = window
    action_days = np.zeros((days, n), dtype=bool)
    for event in events:
        action_days[event.day - 1 : event.day + 1, event.column] = True
    if rename is not None:
        action_days[rename.old_last : rename.new_first + 1, rename.column] = True
    loose = action_days.any(axis=1)
    strict = loose.copy()
    strict[first] = strict[last] = strict[np.minimum(last + 1, days - 1)] = True
    draw = rng.random()
    market_day = None
    for busy in (strict, loose):
        candidates = window_low + np.flatnonzero(~busy[window_low : window_high + 1])
        if len(candidates):
            market_day = int(candidates[int(draw * len(candidates))])
            hidden[market_day] = True
            break

    order, length, position = rng.permutation(n), 1 + rng.integers(0, 3, n), rng.random(n)
    remaining = max(1, round(_VENDOR_GAP_SHARE * n))
    for column in order:
        if remaining == 0:
            break
        free = np.zeros(days + 1, dtype=bool)  # a trailing False ends every run
        free[max(window_low, first[column] + 1) : min(window_high, last[column] - 1) + 1] = True
        free[:days] &= ~hidden[:, column] & ~action_days[:, column]
        if market_day is not None:
            free[max(0, market_day - 1) : market_day + 2] = False
        size = int(length[column])
        # A gap may start at s when free[s : s + size] holds: a sliding sum over the window equals its size.
        ok = np.convolve(free[:days].astype(int), np.ones(size, dtype=int), mode="valid") == size
        starts = np.flatnonzero(ok)
        if len(starts):
            start = int(starts[int(position[column] * len(starts))])
            hidden[start : start + size, column] = True
            remaining -= 1


def _actions_frame(calendar: pd.DatetimeIndex, tickers: np.ndarray, quirks: _Quirks) -> pd.DataFrame:
    """The truth of the actions, one row each (``ACTIONS`` columns), sorted by ticker, ex_date and kind.

    Delistings are every ticker whose rows end before the calendar's last day, on the first trading day after
    its last row; a renamed company's later actions are under its new symbol.
    """
    rename = quirks.rename

    def symbol(column: int, day: int) -> str:
        renamed = rename is not None and column == rename.column and day >= rename.new_first
        return rename.new_symbol if renamed else str(tickers[column])  # type: ignore[union-attr]

    records: list[tuple[str, pd.Timestamp, str, float, str | None]] = [
        (symbol(e.column, e.day), calendar[e.day], e.kind, e.ratio, None) for e in quirks.events
    ]
    if rename is not None:
        records.append((str(tickers[rename.column]), calendar[rename.new_first], "rename", np.nan, rename.new_symbol))
    last_rows = quirks.last_rows()
    for column in np.flatnonzero(last_rows < len(calendar) - 1):
        day = int(last_rows[column]) + 1
        records.append((symbol(int(column), day), calendar[day], "delisting", np.nan, None))
    if not records:
        return ACTIONS.empty()
    ticker, ex_date, kind, ratio, new_ticker = zip(*records, strict=True)
    frame = pd.DataFrame(
        {
            "ticker": pd.array(ticker, dtype="str"),
            "ex_date": pd.DatetimeIndex(ex_date).as_unit("ns"),
            "kind": pd.array(kind, dtype="str"),
            "ratio": np.array(ratio, dtype="float64"),
            "new_ticker": pd.array(new_ticker, dtype="str"),
        }
    )
    return frame.sort_values(["ticker", "ex_date", "kind"], ignore_index=True)


# ---------------------------------------------------------------------------------------------- assembly
def _long(values: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """A (days × tickers) array as one ticker-major column of the selected rows."""
    return values.T[rows.T]


def _keys(universe: _Universe, calendar: pd.DatetimeIndex, rows: np.ndarray) -> dict[str, object]:
    """The date and ticker columns of the selected (day, ticker) rows, sorted by ticker then date."""
    shape = (len(calendar), len(universe.tickers))
    return {
        "date": _long(np.broadcast_to(calendar.to_numpy()[:, None], shape), rows),
        "ticker": pd.array(_long(np.broadcast_to(universe.tickers, shape), rows), dtype="str"),
    }


def _renamed(
    frame: pd.DataFrame, date_column: str, calendar: pd.DatetimeIndex, tickers: np.ndarray, quirks: _Quirks
) -> pd.DataFrame:
    """The frame with a renamed company's rows dated after OLD's last row under NEW, re-sorted by ticker and date."""
    rename = quirks.rename
    if rename is None:
        return frame
    later = (frame["ticker"].eq(tickers[rename.column]) & (frame[date_column] > calendar[rename.old_last])).to_numpy()
    moved, rest = frame[later].assign(ticker=rename.new_symbol), frame[~later]
    # The rest stays sorted by ticker and date; NEW, a symbol of its own, goes where it sorts.
    at = int(rest["ticker"].searchsorted(rename.new_symbol))
    return pd.concat([rest.iloc[:at], moved, rest.iloc[at:]], ignore_index=True)


def _round_price(values: FloatArray) -> FloatArray:
    # Rounding is monotone, so OHLC order survives it; the floor keeps prices strictly positive.
    return np.maximum(np.round(values, PRICE_DECIMALS), 10.0**-PRICE_DECIMALS)


def _prices_frame(
    *,
    micro_rng: np.random.Generator,
    volume_rng: np.random.Generator,
    universe: _Universe,
    fundamentals: _Fundamentals,
    calendar: pd.DatetimeIndex,
    paths: _Paths,
    quirks: _Quirks,
    with_adj_close: bool,
) -> pd.DataFrame:
    """stock_price.csv rows: raw (action-affected) prices and volume on the days with a row."""
    rows, factor = quirks.rows, quirks.price_factor
    open_, high, low = _open_high_low(micro_rng, paths)
    volume = _volume(volume_rng, universe, fundamentals, calendar, paths)
    columns = {
        **_keys(universe, calendar, rows),
        "open": _long(_round_price(open_ / factor), rows),
        "high": _long(_round_price(high / factor), rows),
        "low": _long(_round_price(low / factor), rows),
        "close": _long(_round_price(paths.close / factor), rows),
        # Whole shares: a reverse split divides volume, which may leave a fraction.
        "volume": _long(np.round(volume * quirks.share_factor), rows),
    }
    if with_adj_close:
        # Back-adjusted for every later action: in the units of the last listed day, equal to close after the
        # ticker's last action and continuous across every ex-date.
        final_factor = factor[quirks.last, np.arange(factor.shape[1])]
        columns[ADJ_CLOSE] = _long(_round_price(paths.close / final_factor), rows)
    return _renamed(pd.DataFrame(columns), "date", calendar, universe.tickers, quirks)


def _oracle_frame(universe: _Universe, calendar: pd.DatetimeIndex, paths: _Paths, quirks: _Quirks) -> pd.DataFrame:
    """E[raw close of the next trading day | the close of t], from the close as written, on the basis the next
    day trades on (actions are announced in advance). No row where nothing trades the next day: a delisted
    ticker's last row and a renamed ticker's last row under its old symbol."""
    factor = quirks.price_factor
    next_factor = np.vstack([factor[1:], factor[-1:]])
    close = _round_price(paths.close / factor)
    expected = np.round(close * (1 + paths.expected_next_return) * factor / next_factor, PRICE_DECIMALS)
    day = np.arange(len(calendar))[:, None]
    rows = quirks.rows & ((day < quirks.last) | (quirks.last == len(calendar) - 1))
    if quirks.rename is not None:
        rows[quirks.rename.old_last, quirks.rename.column] = False
    frame = pd.DataFrame({**_keys(universe, calendar, rows), "expected_next_close": _long(expected, rows)})
    return _renamed(frame, "date", calendar, universe.tickers, quirks)


def _financials_frame(
    universe: _Universe, fundamentals: _Fundamentals, calendar: pd.DatetimeIndex, quirks: _Quirks
) -> pd.DataFrame:
    """financial_info.csv rows: reports published from a year before listing until delisting (and by the end)."""
    f = fundamentals
    q_count, n = f.revenue.shape
    first_day = calendar.to_numpy()[quirks.first] - _LISTING_HISTORY.to_timedelta64()
    last_day = calendar.to_numpy()[quirks.last]
    published = (f.report_date >= first_day) & (f.report_date <= last_day)
    report_index, in_calendar = _report_days(calendar, f)
    # Per-share figures are in the share units of the report day (actions before it are applied).
    on_report_day = quirks.share_factor[np.minimum(report_index, len(calendar) - 1), np.arange(n)]
    share_factor = np.where(in_calendar, on_report_day, 1.0)
    shares = np.round(f.shares * share_factor)
    eps = np.round(f.net_income / shares, EPS_DECIMALS)
    period_end = np.broadcast_to(f.period_end.to_numpy()[:, None], (q_count, n))
    tickers = np.broadcast_to(universe.tickers, (q_count, n))
    sectors = np.broadcast_to(np.array(SECTORS, dtype=object)[universe.sector], (q_count, n))
    frame = pd.DataFrame(
        {
            "ticker": pd.array(_long(tickers, published), dtype="str"),
            "period_end": _long(period_end, published),
            "report_date": _long(f.report_date, published),
            "revenue": _long(f.revenue, published),
            "net_income": _long(f.net_income, published),
            "eps": _long(eps, published),
            "total_assets": _long(f.total_assets, published),
            "total_liabilities": _long(f.total_liabilities, published),
            "shares_outstanding": _long(shares, published),
            "sector": pd.array(_long(sectors, published), dtype="str"),
        }
    )
    return _renamed(frame[FINANCIALS.required_names], "report_date", calendar, universe.tickers, quirks)


def generate_market(spec: MarketSpec = MarketSpec()) -> MarketData:
    """Generate the market described by ``spec``: the same spec always yields identical frames."""
    streams = [np.random.default_rng(s) for s in np.random.SeedSequence(spec.seed).spawn(11)]
    universe_rng, fundamentals_rng, returns_rng, micro_rng, volume_rng, listing_rng = streams[:6]
    calendar = spec.trading_days()

    universe = _draw_universe(universe_rng, spec)
    fundamentals = _simulate_fundamentals(fundamentals_rng, spec, universe)
    paths = _simulate_returns(returns_rng, spec, universe, fundamentals, calendar)
    first, last = _listing_windows(listing_rng, spec, len(calendar))
    quirks = _draw_quirks(
        streams=_QuirkStreams(*streams[6:]),
        spec=spec,
        calendar=calendar,
        tickers=universe.tickers,
        first=first,
        last=last,
    )
    return MarketData(
        prices=_prices_frame(
            micro_rng=micro_rng,
            volume_rng=volume_rng,
            universe=universe,
            fundamentals=fundamentals,
            calendar=calendar,
            paths=paths,
            quirks=quirks,
            with_adj_close=spec.writes_adj_close,
        ),
        financials=_financials_frame(universe, fundamentals, calendar, quirks),
        oracle=_oracle_frame(universe, calendar, paths, quirks),
        actions=_actions_frame(calendar, universe.tickers, quirks),
    )


# ------------------------------------------------------------------------------------------------ output
def write_market(data: MarketData, out_dir: str | Path, *, with_actions: bool = False) -> dict[str, Path]:
    """Write stock_price.csv, financial_info.csv and, beside them, oracle.csv; with ``with_actions`` also
    corporate_actions.csv (header only when there are none). Return their paths by name (``"actions"`` for the
    last).

    Values are written with Python's shortest round-trip float format, so reading a file back gives exactly
    the in-memory numbers (they were rounded when generated); dates are ISO (YYYY-MM-DD).
    """
    directory = Path(out_dir)
    directory.mkdir(parents=True, exist_ok=True)
    targets = {
        "prices": (data.prices, directory / PRICES.file_name),
        "financials": (data.financials, directory / FINANCIALS.file_name),
        "oracle": (data.oracle, directory / ORACLE.file_name),
    }
    if with_actions:
        targets["actions"] = (data.actions, directory / ACTIONS.file_name)
    for frame, path in targets.values():
        frame.to_csv(path, index=False, date_format="%Y-%m-%d")
    return {name: path for name, (_, path) in targets.items()}


def split_days(data: MarketData, n_days: int) -> tuple[MarketData, list[tuple[pd.Timestamp, MarketData]]]:
    """The market as history plus its last ``n_days`` trading days, each as what arrives on that day: the day's
    price and oracle rows, the reports published (``report_date``) and the actions effective (``ex_date``) since
    the previous day with prices. What the daily loop ingests; the pieces add up to the market."""
    dates = pd.Index(sorted(data.prices["date"].unique()))
    if not 0 < n_days < len(dates):
        raise ValueError(f"n_days must be between 1 and {len(dates) - 1} (the market has {len(dates)} days)")
    cut = dates[-n_days - 1]

    def between(frame: pd.DataFrame, column: str, low: pd.Timestamp | None, high: pd.Timestamp) -> pd.DataFrame:
        mask = frame[column] <= high if low is None else frame[column].gt(low) & frame[column].le(high)
        return frame[mask].reset_index(drop=True)

    def window(low: pd.Timestamp | None, high: pd.Timestamp) -> MarketData:
        return MarketData(
            prices=between(data.prices, "date", low, high),
            financials=between(data.financials, "report_date", low, high),
            oracle=between(data.oracle, "date", low, high),
            actions=between(data.actions, "ex_date", low, high),
        )

    days = [
        (day, window(previous, day)) for previous, day in zip(dates[-n_days - 1 : -1], dates[-n_days:], strict=True)
    ]
    return window(None, cut), days


def write_days(
    days: list[tuple[pd.Timestamp, MarketData]], out_dir: str | Path, *, with_actions: bool = False
) -> list[Path]:
    """Write each day into ``out_dir/<YYYY-MM-DD>/``: stock_price.csv, oracle.csv, financial_info.csv only when
    reports were published that day and, with ``with_actions``, corporate_actions.csv only when actions took
    effect. Returns the day folders in date order."""
    folders = []
    for day, data in days:
        folder = Path(out_dir) / f"{day:%Y-%m-%d}"
        paths = write_market(data, folder, with_actions=with_actions and not data.actions.empty)
        if data.financials.empty:
            paths["financials"].unlink()
        folders.append(folder)
    return folders


def main(argv: list[str] | None = None) -> int:
    """Command line: generate a market and write its CSV files (``stockcast-generate --help``)."""
    defaults = MarketSpec()
    parser = argparse.ArgumentParser(
        prog="stockcast-generate",
        description="Write a deterministic synthetic market: stock_price.csv, financial_info.csv and oracle.csv "
        "(and corporate_actions.csv with --actions-file).",
    )
    parser.add_argument("--out", required=True, type=Path, help="directory to write the files into")
    parser.add_argument("--tickers", type=int, default=defaults.n_tickers, help="number of tickers")
    parser.add_argument("--start", default=defaults.start, help="first day (YYYY-MM-DD)")
    parser.add_argument("--end", default=defaults.end, help="last day (YYYY-MM-DD), not in the future")
    parser.add_argument("--seed", type=int, default=defaults.seed, help="random seed: same seed, same files")
    parser.add_argument("--calendar", default=defaults.calendar, help="exchange calendar to trade on (e.g. XNYS, XLON)")
    parser.add_argument("--quirks", action="store_true", help="every quirk below at once")
    parser.add_argument("--listings", action="store_true", help="ragged histories: late listings, early delistings")
    parser.add_argument("--splits", action="store_true", help="2-for-1 / 3-for-1 stock splits in raw prices")
    parser.add_argument("--reverse-splits", action="store_true", help="1-for-10 / 1-for-5 reverse splits")
    parser.add_argument("--spinoff", action="store_true", help="one spin-off: a one-day drop in the raw price")
    parser.add_argument("--rename", action="store_true", help="one ticker renamed after a month without rows")
    parser.add_argument(
        "--missing-days", action="store_true", help="vendor gaps of 1-3 days and one market-wide missing day"
    )
    parser.add_argument(
        "--no-adj-close", action="store_true", help="no adj_close column even when raw prices carry actions"
    )
    parser.add_argument(
        "--actions-file", action="store_true", help="also write corporate_actions.csv (the truth of the actions)"
    )
    parser.add_argument("--regime-shift-date", default=None, help="from this day on, shocks are scaled (YYYY-MM-DD)")
    parser.add_argument(
        "--regime-vol-multiplier", type=float, default=defaults.regime_vol_multiplier, help="by this factor"
    )
    parser.add_argument(
        "--regime-reversal-scale",
        type=float,
        default=defaults.regime_reversal_scale,
        help="and the reversal term of the expected return multiplied by this (-1: momentum instead of reversal)",
    )
    parser.add_argument(
        "--daily",
        type=int,
        default=0,
        metavar="N",
        help="hold the last N trading days out of the files: write each as OUT/days/<date>/ for stockcast-day",
    )
    args = parser.parse_args(argv)
    try:
        spec = MarketSpec(
            n_tickers=args.tickers,
            start=args.start,
            end=args.end,
            seed=args.seed,
            calendar=args.calendar,
            quirks=args.quirks,
            listings=args.listings,
            splits=args.splits,
            reverse_splits=args.reverse_splits,
            spinoff=args.spinoff,
            rename=args.rename,
            missing_days=args.missing_days,
            with_adj_close=not args.no_adj_close,
            regime_shift_date=args.regime_shift_date,
            regime_vol_multiplier=args.regime_vol_multiplier,
            regime_reversal_scale=args.regime_reversal_scale,
        )
        data, days = split_days(generate_market(spec), args.daily) if args.daily else (generate_market(spec), [])
    except ValueError as exc:
        parser.error(str(exc))
    paths = write_market(data, args.out, with_actions=args.actions_file)
    for name, path in paths.items():
        print(f"{path}: {len(getattr(data, name))} rows")
    for folder in write_days(days, Path(args.out) / "days", with_actions=args.actions_file):
        print(f"{folder}/: one day's files")
    return 0


if __name__ == "__main__":
    sys.exit(main())
