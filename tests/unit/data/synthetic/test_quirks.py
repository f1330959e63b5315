"""The synthetic market's exchange calendar and its quirks of real data: corporate actions (splits both ways, a
spin-off, a rename, delistings), late listings, missing days, ``adj_close`` and the actions table.

Every quirk market is compared with the same spec without quirks: the quirks must only hide rows, relabel a
renamed ticker's rows and rescale raw prices and shares, exactly as the actions table says.
"""

from __future__ import annotations

import io
from contextlib import redirect_stdout
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features.adjust import ACTION_KINDS
from stockcast.data.calendar import trading_days
from stockcast.data.contract import ACTIONS, FINANCIALS, ORACLE, PRICES
from stockcast.data.synthetic.generator import (
    ADJ_CLOSE,
    QUIRKS,
    MarketData,
    MarketSpec,
    generate_market,
    main,
    split_days,
    write_days,
    write_market,
)

QUIRKY = MarketSpec(n_tickers=50, start="2024-01-01", end="2024-12-31", seed=3, quirks=True)
PLAIN = replace(QUIRKY, quirks=False)
ACTION_COLUMNS = ["ticker", "ex_date", "kind", "ratio", "new_ticker"]
PRICE_ACTIONS = ("split", "reverse_split", "spinoff")
WARM_UP_DAYS, HELD_OUT_GUARD_DAYS = 130, 10


@pytest.fixture(scope="module")
def quirky() -> MarketData:
    return generate_market(QUIRKY)


@pytest.fixture(scope="module")
def plain() -> MarketData:
    return generate_market(PLAIN)


@pytest.fixture(scope="module")
def calendar() -> pd.DatetimeIndex:
    return trading_days("XNYS", QUIRKY.start, QUIRKY.end)


# ------------------------------------------------------------------------------------------------- helpers
def _companies(data: MarketData) -> dict[str, str]:
    """New symbol -> the symbol the company had first (the universe's)."""
    renames = data.actions[data.actions.kind == "rename"]
    return dict(zip(renames.new_ticker, renames.ticker, strict=True))


def _with_company(frame: pd.DataFrame, data: MarketData) -> pd.DataFrame:
    companies = _companies(data)
    return frame.assign(company=frame.ticker.map(lambda ticker: companies.get(ticker, ticker)).astype("str"))


def _factor(frame: pd.DataFrame, data: MarketData, date_column: str, *, shares: bool = False) -> np.ndarray:
    """Per row of ``frame`` (with a company column): the product of its company's actions effective by the row's
    date, as path units per raw unit (``shares``: shares per original share, which a spin-off leaves alone)."""
    companies = _companies(data)
    factor = np.ones(len(frame))
    for action in data.actions[data.actions.kind.isin(PRICE_ACTIONS)].itertuples():
        if shares and action.kind == "spinoff":
            continue
        effect = action.ratio if action.kind == "split" else 1 / action.ratio
        company = companies.get(action.ticker, action.ticker)
        factor[((frame.company == company) & (frame[date_column] >= action.ex_date)).to_numpy()] *= effect
    return factor


def _joined_prices(quirky: MarketData, plain: MarketData) -> pd.DataFrame:
    """Every quirky price row beside the same company's row on the same day without quirks (suffix _plain)."""
    rows = _with_company(quirky.prices, quirky)
    joined = rows.merge(plain.prices, left_on=["company", "date"], right_on=["ticker", "date"], suffixes=("", "_plain"))
    assert len(joined) == len(rows)  # a quirk never adds a row
    return joined.assign(
        price_factor=_factor(joined, quirky, "date"), share_factor=_factor(joined, quirky, "date", shares=True)
    )


def _previous_row(prices: pd.DataFrame, ticker: str, day: pd.Timestamp) -> pd.Series:
    rows = prices[(prices.ticker == ticker) & (prices.date < day)]
    return rows.iloc[-1]


def _row(prices: pd.DataFrame, ticker: str, day: pd.Timestamp) -> pd.Series:
    rows = prices[(prices.ticker == ticker) & (prices.date == day)]
    assert len(rows) == 1, (ticker, day)
    return rows.iloc[0]


def _missing_runs(data: MarketData, calendar: pd.DatetimeIndex) -> tuple[list[pd.Timestamp], pd.DataFrame]:
    """The market-wide missing days, and each ticker's runs of missing trading days inside its history (ticker,
    first day index, length), apart from those and a rename's gap."""
    present = pd.DatetimeIndex(data.prices.date.unique())
    market_wide = [day for day in calendar if day not in present]
    runs = []
    for ticker, dates in data.prices.groupby("ticker").date:
        index = calendar.get_indexer(dates)
        held = np.zeros(len(calendar), dtype=bool)
        held[index.min() : index.max() + 1] = True
        held[index] = False
        held[calendar.get_indexer(market_wide)] = False
        start = None
        for day in range(len(calendar) + 1):
            if day < len(calendar) and held[day]:
                start = day if start is None else start
            elif start is not None:
                runs.append((ticker, start, day - start))
                start = None
    return market_wide, pd.DataFrame(runs, columns=["ticker", "start", "length"])


# ------------------------------------------------------------------------------------------------ calendar
def test_the_market_trades_exactly_on_the_exchange_sessions(plain: MarketData, calendar: pd.DatetimeIndex) -> None:
    dates = pd.DatetimeIndex(sorted(plain.prices.date.unique()))
    pd.testing.assert_index_equal(dates, calendar, check_names=False, check_freq=False)
    holidays = ["2024-01-01", "2024-01-15", "2024-03-29", "2024-07-04", "2024-11-28", "2024-12-25"]
    assert not plain.prices.date.isin(pd.to_datetime(holidays)).any()
    assert (plain.prices.groupby("ticker").size() == len(calendar)).all()
    # Reports are published on trading days too.
    reports = plain.financials.report_date
    assert reports.isin(trading_days("XNYS", reports.min(), reports.max())).all()


def test_the_default_span_starts_and_ends_on_sessions() -> None:
    spec = MarketSpec()
    sessions = spec.trading_days()
    assert (sessions[0], sessions[-1]) == (pd.Timestamp(spec.start), pd.Timestamp(spec.end))


def test_another_exchange_calendar_is_followed() -> None:
    spec = MarketSpec(n_tickers=2, n_sectors=1, start="2024-12-16", end="2025-01-10", calendar="XLON")
    dates = generate_market(spec).prices.date.unique()
    pd.testing.assert_index_equal(
        pd.DatetimeIndex(sorted(dates)), trading_days("XLON", spec.start, spec.end), check_names=False, check_freq=False
    )
    assert pd.Timestamp("2024-12-26") not in dates  # Boxing Day: London closed, New York open


# ------------------------------------------------------------------------------------------ on and off
def test_no_quirk_by_default(plain: MarketData) -> None:
    assert PLAIN.active_quirks == ()
    assert list(plain.actions.columns) == ACTION_COLUMNS
    assert plain.actions.empty
    assert ADJ_CLOSE not in plain.prices.columns
    assert len(plain.prices) == PLAIN.n_tickers * len(PLAIN.trading_days())


def test_quirks_turns_every_quirk_on() -> None:
    assert QUIRKY.active_quirks == QUIRKS
    assert all(QUIRKY.quirk_enabled(name) for name in QUIRKS)
    with pytest.raises(ValueError, match="unknown quirk"):
        QUIRKY.quirk_enabled("typo")


@pytest.mark.parametrize(
    ("quirk", "kinds"),
    [
        ("listings", {"delisting"}),
        ("splits", {"split"}),
        ("reverse_splits", {"reverse_split"}),
        ("spinoff", {"spinoff"}),
        ("rename", {"rename"}),
        ("missing_days", set()),
    ],
)
def test_each_quirk_alone_makes_only_its_own_actions(
    quirk: str, kinds: set[str], plain: MarketData, calendar: pd.DatetimeIndex
) -> None:
    data = generate_market(replace(PLAIN, **{quirk: True}))
    assert set(data.actions.kind) == kinds
    assert (ADJ_CLOSE in data.prices.columns) == (quirk in ("splits", "reverse_splits", "spinoff"))
    fewer_rows = quirk in ("listings", "rename", "missing_days")
    assert (len(data.prices) < len(plain.prices)) == fewer_rows
    if quirk == "missing_days":
        market_wide, runs = _missing_runs(data, calendar)
        assert len(market_wide) == 1
        assert len(runs) >= 1


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_every_quirk_happens_inside_the_history_of_a_50_ticker_year(seed: int) -> None:
    """Actions and missing days after the features' warm-up and before the held-out days; listings anywhere."""
    spec = replace(QUIRKY, seed=seed)
    data, calendar = generate_market(spec), spec.trading_days()
    low, high = WARM_UP_DAYS, len(calendar) - 1 - HELD_OUT_GUARD_DAYS
    assert set(data.actions.kind) == set(ACTION_KINDS)
    inner = data.actions[data.actions.kind != "delisting"]
    assert calendar.get_indexer(inner.ex_date).min() >= low
    assert calendar.get_indexer(inner.ex_date).max() <= high
    first_rows = data.prices.groupby("ticker").date.min()
    late = set(first_rows[first_rows > calendar[0]].index) - set(_companies(data))
    assert late  # a listing mid-history, not counting the renamed company's new symbol
    market_wide, runs = _missing_runs(data, calendar)
    assert len(market_wide) == 1
    assert low <= calendar.get_loc(market_wide[0]) <= high
    assert len(runs) >= 1
    assert runs.length.between(1, 3).all()
    assert runs.start.min() >= low
    assert (runs.start + runs.length - 1).max() <= high


# ---------------------------------------------------------------------------------------- actions table
def test_actions_table_has_the_contract_columns_and_meanings(quirky: MarketData) -> None:
    actions = quirky.actions
    assert list(actions.columns) == ACTION_COLUMNS == ACTIONS.required_names
    assert actions.ex_date.dtype == "datetime64[ns]"
    assert actions.ratio.dtype == "float64"
    assert pd.api.types.is_string_dtype(actions.ticker)
    assert set(actions.kind) <= set(ACTION_KINDS)
    assert not actions.duplicated(["ticker", "ex_date", "kind"]).any()
    by_kind = actions.groupby("kind")
    assert set(by_kind.get_group("split").ratio) <= {2.0, 3.0}
    assert set(by_kind.get_group("reverse_split").ratio) <= {5.0, 10.0}
    assert by_kind.get_group("spinoff").ratio.between(0.6, 0.75).all()
    for kind in ("split", "reverse_split", "spinoff", "delisting"):
        assert by_kind.get_group(kind).new_ticker.isna().all()
    for kind in ("rename", "delisting"):
        assert by_kind.get_group(kind).ratio.isna().all()
    assert by_kind.get_group("rename").new_ticker.notna().all()
    pd.testing.assert_frame_equal(actions, actions.sort_values(["ticker", "ex_date", "kind"], ignore_index=True))


def test_splits_and_the_spinoff_show_in_raw_prices_on_their_ex_dates(
    quirky: MarketData, calendar: pd.DatetimeIndex
) -> None:
    prices = quirky.prices
    for action in quirky.actions[quirky.actions.kind.isin(PRICE_ACTIONS)].itertuples():
        today, before = (
            _row(prices, action.ticker, action.ex_date),
            _previous_row(prices, action.ticker, action.ex_date),
        )
        assert calendar.get_loc(before.date) == calendar.get_loc(action.ex_date) - 1  # no gap hides the jump
        expected = {"split": 1 / action.ratio, "reverse_split": action.ratio, "spinoff": action.ratio}[action.kind]
        assert abs(today.close / before.close / expected - 1) < 0.25, action
        if action.kind == "spinoff":
            assert abs(today.close / before.close / expected - 1) < 0.1  # a drop by about f, not a return


def test_a_renamed_ticker_stops_and_its_new_symbol_trades_a_month_later(quirky: MarketData, plain: MarketData) -> None:
    (rename,) = quirky.actions[quirky.actions.kind == "rename"].itertuples()
    prices = quirky.prices
    old, new = prices[prices.ticker == rename.ticker], prices[prices.ticker == rename.new_ticker]
    assert old.date.max() < rename.ex_date
    assert new.date.min() == rename.ex_date
    assert (rename.ex_date - old.date.max()).days >= 20
    assert rename.new_ticker not in set(plain.prices.ticker)
    # The same path on both sides of the gap: the prices are the company's prices without the quirk.
    company = plain.prices[plain.prices.ticker == rename.ticker].set_index("date").close
    np.testing.assert_allclose(old.set_index("date").close, company[old.date], rtol=1e-9)
    np.testing.assert_allclose(new.set_index("date").close, company[new.date], rtol=1e-9)
    # No forecast from OLD's last day: nothing trades the next day.
    assert old.date.max() not in set(quirky.oracle[quirky.oracle.ticker == rename.ticker].date)
    # Reports after OLD's last row are NEW's.
    reports = quirky.financials
    assert (reports[reports.ticker == rename.ticker].report_date <= old.date.max()).all()
    assert (reports[reports.ticker == rename.new_ticker].report_date > old.date.max()).all()


def test_delistings_are_on_the_first_trading_day_after_the_last_row(
    quirky: MarketData, calendar: pd.DatetimeIndex
) -> None:
    last_rows = quirky.prices.groupby("ticker").date.max()
    renamed_away = set(quirky.actions[quirky.actions.kind == "rename"].ticker)
    ended = last_rows[(last_rows < calendar[-1]) & ~last_rows.index.isin(renamed_away)]
    delistings = quirky.actions[quirky.actions.kind == "delisting"].set_index("ticker").ex_date
    assert set(delistings.index) == set(ended.index)
    for ticker, ex_date in delistings.items():
        assert ex_date == calendar[calendar.get_loc(ended[ticker]) + 1]
    oracle_keys = pd.MultiIndex.from_frame(quirky.oracle[["ticker", "date"]])
    assert not oracle_keys.isin(list(ended.items())).any()


# ------------------------------------------------------------------------ only hide, relabel and rescale
def test_quirks_only_hide_relabel_and_rescale(quirky: MarketData, plain: MarketData) -> None:
    rows = _joined_prices(quirky, plain)
    for column in ("open", "high", "low", "close"):
        np.testing.assert_allclose(rows[column] * rows.price_factor, rows[f"{column}_plain"], rtol=1e-5)
    assert ((rows.volume - rows.volume_plain * rows.share_factor).abs() <= 0.5).all()
    assert (rows.price_factor != 1).any()
    p = quirky.prices
    assert (p[["open", "high", "low", "close", ADJ_CLOSE]] > 0).all().all()
    assert (p.low <= p[["open", "close"]].min(axis=1)).all()
    assert (p[["open", "close"]].max(axis=1) <= p.high).all()
    for frame, date_column in ((p, "date"), (quirky.oracle, "date"), (quirky.financials, "report_date")):
        assert not frame.duplicated(["ticker", date_column]).any()
        pd.testing.assert_frame_equal(frame, frame.sort_values(["ticker", date_column], ignore_index=True))


def test_adj_close_back_adjusts_every_later_action(quirky: MarketData, plain: MarketData) -> None:
    rows = _joined_prices(quirky, plain)
    final_factor = rows.groupby("company").price_factor.transform("last")
    np.testing.assert_allclose(rows.adj_close * final_factor, rows.close_plain, rtol=1e-5)
    # After a ticker's last action adj_close is the close; before, it differs.
    np.testing.assert_allclose(
        rows.adj_close[rows.price_factor == final_factor], rows.close[rows.price_factor == final_factor]
    )
    # No jump at an ex-date: the adjusted move is the move without the action, the raw one is not.
    for action in quirky.actions[quirky.actions.kind.isin(PRICE_ACTIONS)].itertuples():
        today = _row(quirky.prices, action.ticker, action.ex_date)
        before = _previous_row(quirky.prices, action.ticker, action.ex_date)
        plain_move = (
            _row(plain.prices, action.ticker, action.ex_date).close
            / _row(plain.prices, action.ticker, before.date).close
        )
        assert today.adj_close / before.adj_close == pytest.approx(plain_move, rel=1e-5)
        assert abs(np.log(today.adj_close / before.adj_close)) < abs(np.log(today.close / before.close))


def test_prices_only_market_has_the_actions_but_no_adj_close(quirky: MarketData) -> None:
    prices_only = generate_market(replace(QUIRKY, with_adj_close=False))
    assert list(prices_only.prices.columns) == PRICES.required_names
    pd.testing.assert_frame_equal(prices_only.prices, quirky.prices.drop(columns=ADJ_CLOSE))
    pd.testing.assert_frame_equal(prices_only.actions, quirky.actions)


def test_per_share_figures_are_in_the_share_units_of_their_report_day(quirky: MarketData, plain: MarketData) -> None:
    reports = _with_company(quirky.financials, quirky)
    joined = reports.merge(
        plain.financials, left_on=["company", "period_end"], right_on=["ticker", "period_end"], suffixes=("", "_plain")
    )
    assert len(joined) == len(reports)
    pd.testing.assert_series_equal(joined.net_income, joined.net_income_plain, check_names=False)
    share_factor = _factor(joined, quirky, "report_date", shares=True)
    np.testing.assert_allclose(joined.shares_outstanding, (joined.shares_outstanding_plain * share_factor).round())
    assert set(np.round(share_factor, 6)) <= {1.0, 2.0, 3.0, 0.1, 0.2}
    assert (share_factor != 1).any()
    np.testing.assert_allclose(joined.eps, joined.net_income / joined.shares_outstanding, atol=1e-4)


def test_the_oracle_forecasts_the_next_raw_close_on_its_new_basis(
    quirky: MarketData, plain: MarketData, calendar: pd.DatetimeIndex
) -> None:
    """The day before an ex-date, the forecast is already on the new basis (actions are announced)."""
    oracle = _with_company(quirky.oracle, quirky)
    next_day = calendar[np.minimum(calendar.get_indexer(oracle.date) + 1, len(calendar) - 1)]
    oracle = oracle.assign(next_day=next_day)
    joined = oracle.merge(plain.oracle, left_on=["company", "date"], right_on=["ticker", "date"], suffixes=("", "_p"))
    assert len(joined) == len(oracle)
    factor = _factor(joined, quirky, "next_day")
    np.testing.assert_allclose(joined.expected_next_close * factor, joined.expected_next_close_p, rtol=1e-5)
    assert (factor != _factor(joined, quirky, "date")).any()  # some forecasts cross an ex-date
    keys = pd.MultiIndex.from_frame(quirky.prices[["ticker", "date"]])
    assert pd.MultiIndex.from_frame(quirky.oracle[["ticker", "date"]]).isin(keys).all()


# -------------------------------------------------------------------------------- determinism and files
def test_the_same_quirky_spec_gives_identical_frames(quirky: MarketData) -> None:
    again = generate_market(QUIRKY)
    for name in ("prices", "financials", "oracle", "actions"):
        pd.testing.assert_frame_equal(getattr(quirky, name), getattr(again, name))
    other = generate_market(replace(QUIRKY, seed=QUIRKY.seed + 1))
    assert not other.actions[["ticker", "ex_date"]].equals(quirky.actions[["ticker", "ex_date"]])


def test_actions_are_written_on_request_and_read_back(tmp_path: Path, quirky: MarketData) -> None:
    assert "actions" not in write_market(quirky, tmp_path / "plain")
    assert not (tmp_path / "plain" / ACTIONS.file_name).exists()
    paths = write_market(quirky, tmp_path / "full", with_actions=True)
    assert paths["actions"] == tmp_path / "full" / ACTIONS.file_name
    read = pd.read_csv(paths["actions"], parse_dates=["ex_date"], dtype={"ticker": "str", "new_ticker": "str"})
    read["ex_date"] = read["ex_date"].astype("datetime64[ns]")
    pd.testing.assert_frame_equal(read, quirky.actions, check_dtype=False, check_exact=True)
    empty = write_market(generate_market(PLAIN), tmp_path / "none", with_actions=True)["actions"]
    assert pd.read_csv(empty).columns.tolist() == ACTION_COLUMNS


def test_held_out_days_carry_the_actions(tmp_path: Path, quirky: MarketData) -> None:
    history, days = split_days(quirky, 130)
    cut = history.prices.date.max()
    assert (history.actions.ex_date <= cut).all()
    previous = cut
    for day, arriving in days:
        assert arriving.actions.ex_date.gt(previous).all() and arriving.actions.ex_date.le(day).all()
        previous = day
    rebuilt = pd.concat([history.actions, *(arriving.actions for _, arriving in days)])
    pd.testing.assert_frame_equal(rebuilt.sort_values(ACTION_COLUMNS[:3], ignore_index=True), quirky.actions)
    assert sum(not arriving.actions.empty for _, arriving in days) >= 3
    folders = write_days(days, tmp_path, with_actions=True)
    for folder, (_, arriving) in zip(folders, days, strict=True):
        assert (folder / ACTIONS.file_name).is_file() == (not arriving.actions.empty)


def test_cli_writes_the_actions_file_for_a_quirky_market(tmp_path: Path) -> None:
    output = io.StringIO()
    arguments = ["--out", str(tmp_path), "--tickers", "50", "--start", "2024-01-01", "--end", "2024-12-31"]
    with redirect_stdout(output):
        code = main([*arguments, "--seed", "3", "--quirks", "--actions-file", "--no-adj-close", "--calendar", "XNYS"])
    assert code == 0
    names = [PRICES.file_name, FINANCIALS.file_name, ORACLE.file_name, ACTIONS.file_name]
    lines = output.getvalue().splitlines()
    assert [Path(line.split(":")[0]).name for line in lines] == names
    actions = pd.read_csv(tmp_path / ACTIONS.file_name)
    assert set(actions.kind) == set(ACTION_KINDS)
    assert ADJ_CLOSE not in pd.read_csv(tmp_path / PRICES.file_name, nrows=1).columns
