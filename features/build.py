"""The one code path from price (and financial) tables to feature rows.

Features come in two stages. The per-ticker stage (``build_ticker_features``) computes the kinds that read only a
ticker's own rows (price and fundamental features, and ``is_warm``); it can run on any shard of the tickers that
keeps tickers linked by a rename together (see ``features.adjust``), one task per shard. The join
(``join_ticker_features``) puts the shards back in (ticker, date) order and computes the cross-sectional kinds,
which rank every ticker on date t. ``build_features`` is that composition on one shard, so a sharded build equals
it exactly.

``build_features`` computes the training matrix over a whole history. ``latest_feature_rows`` (batch prediction)
and ``features_from_history`` (a history sent in an HTTP request) select the rows they need and call the very
same computation, so the three cannot disagree: every feature at t depends only on the last ``min_history``
rows of its ticker (and, for cross-sectional ranks, on the other tickers' rows on date t).

Every entry point takes the corporate actions known (``actions``, see ``features.adjust``): prices, targets and
per-share figures are adjusted for them before anything is computed, so a split is never read as a crash.

Output layout: one row per (ticker, date), sorted by (ticker, date) like every table of the project, with a fresh
RangeIndex; columns ``date``, ``ticker``, ``close`` (adjusted: on each ticker's last row it is the raw close),
then ``feature_set.feature_columns``, then ``is_warm``. The per-ticker stage's rows are laid out alike, without the
cross-sectional columns.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from features.adjust import SPINOFF_FACTOR, adjust_financials, adjust_prices
from features.definitions import FeatureDefinition, Kind
from features.errors import InsufficientHistory
from features.inputs import ACTION_INPUT, FINANCIAL_INPUT, PRICE_INPUT, InputTable
from features.sets import DEFAULT_FEATURE_SET, KEY_COLUMNS, WARM_COLUMN, FeatureSet
from features.windows import PricePanel, ticker_positions, warm_up_mask

AsOf = pd.Timestamp | str | None


def build_features(
    prices: pd.DataFrame,
    financials: pd.DataFrame | None = None,
    *,
    actions: pd.DataFrame | None = None,
    feature_set: FeatureSet = DEFAULT_FEATURE_SET,
    as_of: AsOf = None,
) -> pd.DataFrame:
    """Feature rows for every (ticker, date) of ``prices`` up to ``as_of``, using only data known at each date.

    ``financials`` may be None or empty: fundamental features are then NaN (never invented). Rows whose windows
    are not yet full, or whose look-back straddles a gap, have ``is_warm`` False; their unknown features are NaN.
    The inputs are not modified. The whole market as one shard: ``build_ticker_features`` joined.
    """
    ticker_features = build_ticker_features(prices, financials, actions=actions, feature_set=feature_set, as_of=as_of)
    return join_ticker_features([ticker_features], feature_set)


def build_ticker_features(
    prices: pd.DataFrame,
    financials: pd.DataFrame | None = None,
    *,
    actions: pd.DataFrame | None = None,
    feature_set: FeatureSet = DEFAULT_FEATURE_SET,
    as_of: AsOf = None,
) -> pd.DataFrame:
    """The per-ticker stage of ``build_features`` for the tickers of ``prices``: every feature but the
    cross-sectional ones, and ``is_warm``, which depend only on each ticker's own rows, reports and actions.

    A shard of the market gives exactly its tickers' rows of the whole market's result, provided it holds every
    ticker a rename links to its own, with their reports and actions (a rename joins two tickers' histories).
    ``join_ticker_features`` joins the shards.
    """
    cutoff = _as_timestamp(as_of)
    known = _prepare_actions(actions, cutoff)
    reports = _prepare_financials(financials, cutoff, known)
    return _ticker_features(_prepare_prices(prices, cutoff, known), reports, feature_set)


def join_ticker_features(shards: Sequence[pd.DataFrame], feature_set: FeatureSet = DEFAULT_FEATURE_SET) -> pd.DataFrame:
    """``build_ticker_features`` of disjoint shards of the tickers, joined into ``build_features``' result: the
    rows in (ticker, date) order, and the cross-sectional features, which rank every ticker on each date. The shards
    may cover any dates, the same for all (one month of the market, say): ranks compare tickers on one date only.
    Other columns of the shards follow the features, unchanged.

    Raises ``ValueError`` when a ticker is in more than one shard (the shards would not be a partition of the
    market, and its rows would count twice in every rank).
    """
    if not shards:
        raise ValueError("no shards of ticker features to join")
    tickers = pd.Series(np.concatenate([shard["ticker"].unique() for shard in shards]), dtype="str")
    repeated = tickers[tickers.duplicated()]
    if len(repeated):
        raise ValueError(
            f"ticker {repeated.iloc[0]} is in more than one shard of ticker features; shards must not share tickers"
        )
    return _cross_sectional(_in_ticker_order(shards), feature_set)


def build_target(
    prices: pd.DataFrame,
    *,
    actions: pd.DataFrame | None = None,
    trading_days: pd.DatetimeIndex | None = None,
    max_missing_days: int | None = None,
) -> pd.DataFrame:
    """What the model learns to predict: each ticker's next close and the return to it, on the adjusted series.

    Kept apart from the features so the target can never leak into them. Columns ``date``, ``ticker``,
    ``next_close``, ``next_return`` (next_close / close - 1), ``spans_gap`` and ``next_date`` (the date of the
    ticker's next row: when the target is realised), rows in the same (ticker, date) order
    as ``build_features``; NaN on each ticker's last row, whose next close is not known yet. "Next" means the next
    trading day: a target whose next row lies more than ``max_missing_days`` trading days (of ``trading_days``, by
    default the dates the data has) after the one that should follow is not a next-day return; it is NaN and
    ``spans_gap`` is True (None: no limit).
    """
    table = _prepare_prices(prices, None, _prepare_actions(actions, None))
    return next_day_target(table, trading_days=trading_days, max_missing_days=max_missing_days)


def next_day_target(
    rows: pd.DataFrame, *, trading_days: pd.DatetimeIndex | None = None, max_missing_days: int | None = None
) -> pd.DataFrame:
    """``build_target`` of rows already adjusted and in (ticker, date) order, such as ``build_features``' result,
    whose ``close`` is the adjusted close: the target of a joined training matrix, from its own rows.

    ``trading_days`` default to the dates of ``rows``, so they must hold the whole market when they are the calendar.
    """
    position = ticker_positions(rows["ticker"])
    close = rows["close"].to_numpy(dtype=float)
    next_close = np.r_[close[1:], np.nan]
    # The next row belongs to the same ticker unless it starts a new block (position 0).
    last_of_ticker = np.r_[position[1:] == 0, True]
    next_close[last_of_ticker] = np.nan
    next_date = np.r_[rows["date"].to_numpy(dtype="datetime64[ns]")[1:], np.datetime64("NaT", "ns")]
    next_date[last_of_ticker] = np.datetime64("NaT", "ns")
    spans_gap = np.zeros(len(rows), dtype=bool)
    if max_missing_days is not None and len(rows):
        dates = rows["date"].to_numpy()
        calendar = pd.DatetimeIndex(trading_days if trading_days is not None else np.unique(dates)).unique()
        day_number = calendar.sort_values().searchsorted(dates)
        # Trading days skipped between a row and its ticker's next row; NaN on the ticker's last row.
        skipped = np.r_[day_number[1:] - day_number[:-1] - 1, 0].astype(float)
        spans_gap = np.isfinite(next_close) & (skipped > max_missing_days)
        next_close[spans_gap] = np.nan
    return pd.DataFrame(
        {
            "date": rows["date"],
            "ticker": rows["ticker"],
            "next_close": next_close,
            "next_return": next_close / close - 1.0,
            "spans_gap": spans_gap,
            "next_date": next_date,
        }
    )


def latest_feature_rows(
    prices: pd.DataFrame,
    financials: pd.DataFrame | None = None,
    *,
    actions: pd.DataFrame | None = None,
    feature_set: FeatureSet = DEFAULT_FEATURE_SET,
    as_of: AsOf = None,
) -> pd.DataFrame:
    """The latest feature row of each ticker at or before ``as_of``, for batch prediction.

    Only the rows those features can depend on are computed (see ``_rows_needed``), with ``build_features``'
    own code, so the values equal the training matrix's for the same ticker and date.
    """
    cutoff = _as_timestamp(as_of)
    known = _prepare_actions(actions, cutoff)
    table = _prepare_prices(prices, cutoff, known)
    reports = _prepare_financials(financials, cutoff, known)
    if table.empty:
        return _compute(table, reports, feature_set)
    earliest_latest_date = table.groupby("ticker", sort=False)["date"].max().min()
    needed = _rows_needed(table, earliest_latest_date, feature_set.min_history)
    features = _compute(needed, reports, feature_set)
    return features.groupby("ticker", sort=False).tail(1).reset_index(drop=True)


def features_from_history(
    history: pd.DataFrame,
    financials: pd.DataFrame | None = None,
    *,
    context_prices: pd.DataFrame | None = None,
    context_financials: pd.DataFrame | None = None,
    actions: pd.DataFrame | None = None,
    feature_set: FeatureSet = DEFAULT_FEATURE_SET,
) -> pd.DataFrame:
    """Feature rows for one ticker's supplied price history (an HTTP request), one per date that has
    ``min_history`` days of history behind it, oldest first.

    Cross-sectional features need the other tickers: ``context_prices`` (the panel the service packaged) is
    combined with the history, which replaces that ticker's rows in it, and ranks are computed on the same dates
    from the combined rows; where the context has no other ticker on a date they are NaN. ``financials`` (that
    ticker's reports) likewise replace its reports in ``context_financials``; when None, the context's reports
    of the ticker are used. ``actions`` (the corporate actions the caller knows) adjust the history and the context
    alike. Raises ``InsufficientHistory`` with fewer than ``feature_set.min_history`` rows.
    """
    known = _prepare_actions(actions, None)
    own = _prepare_prices(history, None, known)
    tickers = own["ticker"].unique()
    if len(tickers) != 1:
        raise ValueError(f"a history must hold exactly one ticker, got {len(tickers)}: {sorted(tickers)[:5]}")
    ticker = str(tickers[0])
    if len(own) < feature_set.min_history:
        raise InsufficientHistory(
            ticker=ticker, required=feature_set.min_history, supplied=len(own), feature_set_name=feature_set.name
        )
    prices = _replace_ticker(_prepare_prices(context_prices, None, known), own, ticker)
    reports = _prepare_financials(context_financials, None, known)
    if financials is not None:
        own_reports = _prepare_financials(financials, None, known)
        if not own_reports["ticker"].eq(ticker).all():
            raise ValueError(f"financials sent with the history of {ticker} hold other tickers' reports")
        reports = _replace_ticker(reports, own_reports, ticker)
    first_wanted = own["date"].iloc[feature_set.min_history - 1]
    # Context rows after the history's last day cannot affect its features.
    prices = prices[prices["date"] <= own["date"].iloc[-1]]
    features = _compute(_rows_needed(prices, first_wanted, feature_set.min_history), reports, feature_set)
    own_rows = features[features["ticker"] == ticker]
    return own_rows.iloc[feature_set.min_history - 1 :].reset_index(drop=True)


def _compute(prices: pd.DataFrame, financials: pd.DataFrame, feature_set: FeatureSet) -> pd.DataFrame:
    """The feature computation proper, on prepared tables (prices sorted by (ticker, date)), as one shard."""
    return _cross_sectional(_ticker_features(prices, financials, feature_set), feature_set)


def _ticker_features(prices: pd.DataFrame, financials: pd.DataFrame, feature_set: FeatureSet) -> pd.DataFrame:
    """The per-ticker stage on prepared tables: key columns, price and fundamental features, ``is_warm``."""
    position = ticker_positions(prices["ticker"])
    # Without spin-offs (the usual case) the factor is 1 everywhere and the arrays need no dividing.
    spinoff_factor = prices[SPINOFF_FACTOR].to_numpy(dtype=float) if SPINOFF_FACTOR in prices else None
    close = prices["close"].to_numpy(dtype=float)
    dollar_volume = close * prices["volume"].to_numpy(dtype=float)
    panel = PricePanel(
        **{name: prices[name].to_numpy(dtype=float) for name in ("open", "high", "low", "close", "volume")},
        # The row's own traded value, raw: a level known at t (see features.adjust on point in time).
        dollar_volume=dollar_volume if spinoff_factor is None else dollar_volume / spinoff_factor,
        position=position,
    )
    computed: dict[str, np.ndarray] = {}
    for definition in feature_set.definitions_of(Kind.PRICE):
        computed |= _checked(definition, definition.family.compute(panel, **definition.kwargs))
    keys = prices[list(KEY_COLUMNS)]
    if spinoff_factor is not None:
        # Per-share report figures are in split-adjusted units, so the close they are compared with is too.
        keys = keys.assign(close=close / spinoff_factor)
    for definition in feature_set.definitions_of(Kind.FUNDAMENTAL):
        computed |= _checked(definition, definition.family.compute(keys, financials, **definition.kwargs))
    columns: dict[str, object] = {name: prices[name] for name in KEY_COLUMNS}
    for name in _ticker_feature_columns(feature_set):
        columns[name] = _typed(computed[name], name, feature_set)
    columns[WARM_COLUMN] = warm_up_mask(
        prices["date"].to_numpy(), position, feature_set.min_history, feature_set.max_gap_days
    )
    # The arrays were made here and are referenced nowhere else: adopting them as they are saves a copy of the
    # whole matrix (the frame then holds one block per column, which pandas handles transparently).
    return pd.DataFrame(columns, copy=False)


def _cross_sectional(rows: pd.DataFrame, feature_set: FeatureSet) -> pd.DataFrame:
    """The join stage on per-ticker rows of the whole market in (ticker, date) order: the cross-sectional features
    computed from the other features of every ticker on each date, and the columns in output order; columns the
    per-ticker stage did not make (a target built per ticker) follow, unchanged."""
    computed: dict[str, object] = {name: rows[name] for name in _ticker_feature_columns(feature_set)}
    for definition in feature_set.definitions_of(Kind.CROSS_SECTIONAL):
        inputs = sorted({name for spec in definition.column_specs() for name in spec.inputs})
        frame = pd.DataFrame({"date": rows["date"], **{name: computed[name] for name in inputs}})
        ranks = _checked(definition, definition.family.compute(frame, **definition.kwargs))
        computed |= {name: _typed(values, name, feature_set) for name, values in ranks.items()}
    columns = {name: rows[name] for name in KEY_COLUMNS}
    columns |= {name: computed[name] for name in feature_set.feature_columns}
    columns[WARM_COLUMN] = rows[WARM_COLUMN]
    columns |= {name: rows[name] for name in rows.columns if name not in columns}
    return pd.DataFrame(columns, copy=False)


def _ticker_feature_columns(feature_set: FeatureSet) -> list[str]:
    """The feature columns of the per-ticker stage (every kind but the cross-sectional), in output order."""
    cross_sectional = {
        spec.name
        for definition in feature_set.definitions_of(Kind.CROSS_SECTIONAL)
        for spec in definition.column_specs()
    }
    return [name for name in feature_set.feature_columns if name not in cross_sectional]


def _typed(values: object, name: str, feature_set: FeatureSet) -> object:
    """A computed feature column in its output type: strings for categories, float64 otherwise."""
    if name in feature_set.categorical_columns:
        return pd.Series(values, dtype="str")
    return np.asarray(values, dtype=float)


def _in_ticker_order(shards: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """Shards of per-ticker rows (each in (ticker, date) order, no ticker in two) as one table in (ticker, date)
    order with a fresh RangeIndex; shards whose ticker ranges interleave (renamed tickers kept together) are
    sorted, the others only concatenated."""
    filled = [shard for shard in shards if len(shard)] or list(shards[:1])
    rows = filled[0] if len(filled) == 1 else pd.concat(filled, ignore_index=True)
    same_ticker, _ = _steps(rows)
    if not _tickers_ascend(rows, same_ticker):
        # Stable: each ticker's rows are in one shard, already in date order.
        rows = rows.sort_values("ticker", kind="stable")
    return rows.reset_index(drop=True)


def _checked(definition: FeatureDefinition, values: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Fail loudly if a family returned other columns than it documents (a bug in the family)."""
    declared = sorted(spec.name for spec in definition.column_specs())
    if sorted(values) != declared:
        raise RuntimeError(f"feature family '{definition.name}' returned {sorted(values)}, documents {declared}")
    return values


def _rows_needed(prices: pd.DataFrame, first_wanted: pd.Timestamp, min_history: int) -> pd.DataFrame:
    """The rows that features on dates >= ``first_wanted`` depend on: per ticker, the rows on those dates and
    the ``min_history - 1`` rows before the first of them. Correct because every look-back is finite."""
    position = ticker_positions(prices["ticker"])
    wanted_position = np.where((prices["date"] >= first_wanted).to_numpy(), position, np.inf)
    # A ticker without a wanted row gets infinity here, so none of its rows is kept.
    first_wanted_position = (
        pd.Series(wanted_position).groupby(pd.factorize(prices["ticker"])[0]).transform("min").to_numpy()
    )
    return prices[position >= first_wanted_position - (min_history - 1)].reset_index(drop=True)


def _replace_ticker(table: pd.DataFrame, rows: pd.DataFrame, ticker: str) -> pd.DataFrame:
    """``table`` with ``ticker``'s rows replaced by ``rows``, back in (ticker, date) order."""
    combined = pd.concat([table[table["ticker"] != ticker], rows], ignore_index=True)
    order = ["ticker", "date"] if "date" in combined.columns else ["ticker", "report_date", "period_end"]
    return combined.sort_values(order, kind="stable").reset_index(drop=True)


def _as_timestamp(as_of: AsOf) -> pd.Timestamp | None:
    return None if as_of is None else pd.Timestamp(as_of).as_unit("ns")


def _prepare_actions(actions: pd.DataFrame | None, as_of: pd.Timestamp | None) -> pd.DataFrame:
    """A typed copy of the corporate actions effective by ``as_of`` (all when None)."""
    table = _typed_copy(actions, ACTION_INPUT)
    if as_of is not None:
        table = table[table["ex_date"] <= as_of]
    return table.reset_index(drop=True)


def _prepare_prices(prices: pd.DataFrame | None, as_of: pd.Timestamp | None, actions: pd.DataFrame) -> pd.DataFrame:
    """A typed copy of the contract columns up to ``as_of``, sorted by (ticker, date), duplicates refused,
    adjusted for ``actions`` (then with ``SPINOFF_FACTOR``)."""
    table = _typed_copy(prices, PRICE_INPUT)
    if as_of is not None:
        table = table[table["date"] <= as_of].reset_index(drop=True)
    same_ticker, date_step = _steps(table)
    if not ((date_step[same_ticker] > 0).all() and _tickers_ascend(table, same_ticker)):
        table = table.sort_values(["ticker", "date"], kind="stable").reset_index(drop=True)
        same_ticker, date_step = _steps(table)
    duplicated = same_ticker & (date_step == 0)
    if duplicated.any():
        first = table.iloc[int(np.argmax(duplicated)) + 1]
        raise ValueError(
            f"prices hold {int(duplicated.sum())} duplicate (ticker, date) rows, e.g. {first['ticker']} "
            f"{first['date'].date()}; features need one row per ticker and trading day"
        )
    return table if actions.empty else adjust_prices(table, actions)


def _steps(table: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Whether each row has the previous row's ticker, and the date step from it (row i+1 against row i)."""
    tickers = table["ticker"].to_numpy(dtype=object)
    dates = table["date"].to_numpy()
    return tickers[1:] == tickers[:-1], dates[1:] - dates[:-1]


def _tickers_ascend(table: pd.DataFrame, same_ticker: np.ndarray) -> bool:
    tickers = table["ticker"].to_numpy(dtype=object)
    return bool((tickers[1:][~same_ticker] > tickers[:-1][~same_ticker]).all())


def _prepare_financials(
    financials: pd.DataFrame | None, as_of: pd.Timestamp | None, actions: pd.DataFrame
) -> pd.DataFrame:
    """A typed copy of the contract columns with reports published up to ``as_of``, adjusted for ``actions``."""
    table = _typed_copy(financials, FINANCIAL_INPUT)
    if as_of is not None:
        # Rows without a report date carry the sector alone, known throughout.
        table = table[(table["report_date"] <= as_of) | table["report_date"].isna()]
    return adjust_financials(table.reset_index(drop=True), actions)


def _typed_copy(table: pd.DataFrame | None, inputs: InputTable) -> pd.DataFrame:
    """The input's columns in memory types: naive datetime64[ns] dates, strings, float64 numbers."""
    names = inputs.names
    if table is None:
        table = pd.DataFrame({name: [] for name in names})
    missing = [name for name in names if name not in table.columns]
    if missing:
        raise ValueError(f"{inputs.name} lack column(s) {missing}; the features need {names}")
    columns = {}
    for spec in inputs.columns:
        column = table[spec.name]
        if spec.kind == "date":
            column = pd.to_datetime(column)
            if column.dt.tz is not None:
                raise ValueError(f"{inputs.name}: {spec.name} must hold naive dates (no time zone)")
            column = column.astype("datetime64[ns]")
        elif spec.kind == "text":
            column = column.astype("str")
        else:
            column = column.astype(float)
        columns[spec.name] = column.reset_index(drop=True)
    return pd.DataFrame(columns)
