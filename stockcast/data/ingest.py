"""The library behind IngestFlow: read the sources, validate them, merge them into the snapshot, summarise.

Each public function is one step of the flow, so the flow stays orchestration and everything here is testable
without Metaflow.

Prices come as one ``stock_price.csv`` or as a folder of one CSV per ticker in the usual vendor layout (``Date,
Open, High, Low, Close, Adj Close, Volume``, the ticker in the file name: ``AAPL.csv``). Companion files are picked
up beside the prices (inside the folder): ``corporate_actions.csv`` (declared actions), ``sectors.csv`` (``ticker,
sector``: the sector feature without any fundamentals) and the generator's ``oracle.csv``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import pandas as pd

from stockcast.core.frames import json_ready
from stockcast.core.storage import ObjectStore
from stockcast.data.actions import (
    SOURCE_COLUMN,
    check_renames,
    derive_actions,
    describe_action,
    validate_actions,
)
from stockcast.data.calendar import missing_trading_days, trading_days_spanning
from stockcast.data.config import DataConfig
from stockcast.data.contract import ACTIONS, FINANCIALS, ORACLE, PRICES, SECTORS
from stockcast.data.partitions import TablePartitions, partition_table, snapshot_version, write_tables
from stockcast.data.snapshot import Snapshot, implausible_corrections, merge_table
from stockcast.data.sources import list_csv_files, read_optional_source, read_source, sibling
from stockcast.data.validation import (
    DEFAULT_MAX_QUARANTINED_FRACTION,
    ContractViolationError,
    ValidationReport,
    read_csv_text,
    validate_financials,
    validate_oracle,
    validate_prices,
    validate_sectors,
)

COMPANION_FILES = frozenset({ACTIONS.file_name, FINANCIALS.file_name, ORACLE.file_name, SECTORS.file_name})
"""File names in a folder of per-ticker price files that are not tickers."""


@dataclass(frozen=True)
class RawSources:
    """The bytes of one ingestion's input files, kept as artefacts so every snapshot can be traced to them.

    ``price_files`` holds (uri, bytes) of ``stock_price.csv``, or of each per-ticker file of a vendor folder.
    """

    prices_uri: str
    price_files: tuple[tuple[str, bytes], ...]
    financials_uri: str | None
    financials: bytes | None
    oracle_uri: str | None
    oracle: bytes | None
    actions_uri: str | None = None
    actions: bytes | None = None
    sectors_uri: str | None = None
    sectors: bytes | None = None
    per_ticker_files: bool = False
    """True when the prices came as a vendor folder of one file per ticker."""


@dataclass(frozen=True)
class ValidatedBatch:
    """The accepted rows of one ingestion and the reports that say what was left out and why."""

    prices: pd.DataFrame
    financials: pd.DataFrame
    oracle: pd.DataFrame | None
    reports: tuple[ValidationReport, ...]
    actions: pd.DataFrame | None = None
    """The declared corporate actions of this batch (None when no file came)."""


@dataclass(frozen=True)
class SnapshotContent:
    """What IngestFlow publishes: the merged tables, their version and a summary for people."""

    version: str
    prices: pd.DataFrame
    financials: pd.DataFrame
    oracle: pd.DataFrame | None
    actions: pd.DataFrame
    summary: dict
    partitions: dict[str, TablePartitions | None]
    """The tables cut into content-hashed partitions, ready to store (``publish_snapshot``)."""


def load_sources(prices_uri: str, financials_uri: str | None, actions_uri: str | None = None) -> RawSources:
    """Read the input files: the prices (a file, or a folder of per-ticker files when the URI ends with ``/`` or
    is a local folder), the financials when named, and the companion files found beside the prices; an explicit
    ``actions_uri`` replaces the ``corporate_actions.csv`` beside them."""
    folder = list_csv_files(prices_uri)
    if folder is not None:
        price_uris = [uri for uri in folder if uri.rpartition("/")[2] not in COMPANION_FILES]
        base = prices_uri.rstrip("/") + "/"
    else:
        price_uris, base = [prices_uri], prices_uri

    def companion(file_name: str) -> tuple[str | None, bytes | None]:
        uri = sibling(base, file_name)
        data = read_optional_source(uri)
        return (uri if data is not None else None), data

    oracle_uri, oracle = companion(ORACLE.file_name)
    sectors_uri, sectors = companion(SECTORS.file_name)
    found_actions_uri, actions = (
        (actions_uri, read_source(actions_uri)) if actions_uri else companion(ACTIONS.file_name)
    )
    return RawSources(
        prices_uri=prices_uri,
        price_files=tuple((uri, read_source(uri)) for uri in price_uris),
        financials_uri=financials_uri or None,
        financials=read_source(financials_uri) if financials_uri else None,
        oracle_uri=oracle_uri,
        oracle=oracle,
        actions_uri=found_actions_uri,
        actions=actions,
        sectors_uri=sectors_uri,
        sectors=sectors,
        per_ticker_files=folder is not None,
    )


VENDOR_HEADER = re.compile(r"[^a-z0-9]+")


def read_price_file(data: bytes, *, file: str, one_ticker_file: bool) -> pd.DataFrame:
    """A price file as raw strings in the contract's columns. A per-ticker vendor file (``Date, Open, ..., Adj
    Close, Volume``) gets its headers normalised (``Adj Close`` → ``adj_close``) and the ticker of its file name."""
    raw = read_csv_text(data, file=file)
    if not one_ticker_file:
        return raw
    raw.columns = [VENDOR_HEADER.sub("_", str(column).lower()).strip("_") for column in raw.columns]
    ticker = file.rpartition("/")[2].rsplit(".", 1)[0]
    return raw.assign(ticker=ticker) if "ticker" not in raw.columns else raw


def validate_batch(
    raw: RawSources,
    previous: Snapshot | None,
    *,
    today: pd.Timestamp | None = None,
    max_quarantined_fraction: float = DEFAULT_MAX_QUARANTINED_FRACTION,
    settings: DataConfig | None = None,
) -> ValidatedBatch:
    """Validate every input file against the contract and the data configuration (calendar, ticker pattern); raise
    ``ContractViolationError`` (listing every rejection) if any is rejected."""
    settings = settings or DataConfig()
    pattern = settings.ticker_pattern
    validated = [
        validate_prices(
            read_price_file(data, file=uri, one_ticker_file=raw.per_ticker_files),
            file=uri,
            today=today,
            max_quarantined_fraction=max_quarantined_fraction,
            calendar=settings.calendar,
            ticker_pattern=pattern,
        )
        for uri, data in raw.price_files
    ]
    prices = pd.concat([accepted for accepted, _ in validated], ignore_index=True)
    reports = [report for _, report in validated]
    known_tickers = set(prices["ticker"]) | set(previous.tickers if previous else [])
    financials = FINANCIALS.empty()
    if raw.financials is not None and raw.financials_uri is not None:
        financials, financials_report = validate_financials(
            read_csv_text(raw.financials, file=raw.financials_uri),
            known_tickers=known_tickers,
            file=raw.financials_uri,
            today=today,
            max_quarantined_fraction=max_quarantined_fraction,
            ticker_pattern=pattern,
        )
        reports.append(financials_report)
    if raw.sectors is not None and raw.sectors_uri is not None:
        sectors, sectors_report = validate_sectors(
            read_csv_text(raw.sectors, file=raw.sectors_uri),
            known_tickers=known_tickers,
            file=raw.sectors_uri,
            ticker_pattern=pattern,
        )
        reports.append(sectors_report)
        financials = pd.concat([financials, sector_rows(sectors, financials)], ignore_index=True)
    actions = None
    if raw.actions is not None and raw.actions_uri is not None:
        declared = read_csv_text(raw.actions, file=raw.actions_uri)
        actions, actions_report = validate_actions(
            declared,
            known_tickers=known_tickers | set(declared.get("new_ticker", [])),
            file=raw.actions_uri,
            max_quarantined_fraction=max_quarantined_fraction,
            ticker_pattern=pattern,
        )
        reports.append(actions_report)
    oracle = None
    if raw.oracle is not None and raw.oracle_uri is not None:
        oracle, oracle_report = validate_oracle(read_csv_text(raw.oracle, file=raw.oracle_uri), file=raw.oracle_uri)
        reports.append(oracle_report)
    if any(report.rejected for report in reports):
        raise ContractViolationError(reports)
    return ValidatedBatch(prices, financials, oracle, tuple(reports), actions)


def sector_rows(sectors: pd.DataFrame, financials: pd.DataFrame) -> pd.DataFrame:
    """The sector file as financial rows without dates or figures (the sector alone, known throughout), for the
    tickers whose financials do not already carry one: nothing but the sector is invented."""
    covered = set(financials["ticker"])
    rows = sectors[~sectors["ticker"].isin(covered)]
    blank = FINANCIALS.empty()
    return pd.concat([blank, rows[["ticker", "sector"]]], ignore_index=True)[list(blank.columns)]


CORRECTED_PRICES = ("open", "high", "low", "close")
"""The prices a correction is checked on (``adj_close`` moves with every dividend a vendor re-adjusts for)."""
HELD_SHOWN = 10


def build_snapshot(
    previous: Snapshot | None,
    batch: ValidatedBatch,
    settings: DataConfig | None = None,
    *,
    apply_corrections: bool = False,
) -> SnapshotContent:
    """Merge the batch into the previous snapshot, find its corporate actions and missing trading days, and
    describe the result; the version is the content hash.

    Corrections of published prices beyond the configured band are held back (left out and listed in the summary's
    ``held_corrections``) unless ``apply_corrections``.
    """
    settings = settings or DataConfig()
    previous_prices = previous.prices if previous else None
    held = implausible_corrections(
        previous_prices, batch.prices, PRICES.key, CORRECTED_PRICES, settings.corrections.max_price_change
    )
    if apply_corrections:
        held = held.iloc[0:0]
    prices, price_stats = merge_table(previous_prices, batch.prices.drop(index=held.index), PRICES.key)
    financials, financial_stats = merge_table(
        previous.financials if previous else None, batch.financials, FINANCIALS.key
    )
    previous_oracle = previous.oracle if previous else None
    oracle = previous_oracle
    if batch.oracle is not None:
        oracle, _ = merge_table(previous_oracle, batch.oracle, ORACLE.key)
    declared = ACTIONS.empty()
    if previous is not None:
        declared = previous.actions[previous.actions[SOURCE_COLUMN] == "declared"].drop(columns=SOURCE_COLUMN)
    if batch.actions is not None:
        declared, _ = merge_table(declared, batch.actions, ACTIONS.key)
    check_renames(prices, declared)
    actions = derive_actions(prices, declared, settings.actions)
    sessions = trading_days_spanning(settings.calendar, prices["date"])
    tables = {"prices": prices, "financials": financials, "actions": actions, "oracle": oracle}
    partitions = {name: None if table is None else partition_table(name, table) for name, table in tables.items()}
    # The oracle is a benchmark aid, not data a model may learn from: it does not enter the version.
    version = snapshot_version({name: partitions[name] for name in ("prices", "financials", "actions")})
    tickers = sorted(prices["ticker"].unique())
    with_financials = set(financials["ticker"].unique())
    summary = {
        "version": version,
        "previous_version": previous.version if previous else None,
        "rows": {"prices": len(prices), "financials": len(financials)},
        "date_range": [str(prices["date"].min().date()), str(prices["date"].max().date())],
        "tickers": tickers,
        "n_tickers": len(tickers),
        "prices_only_tickers": [t for t in tickers if t not in with_financials],
        "has_oracle": oracle is not None,
        "calendar": settings.calendar,
        "ticker_pattern": settings.ticker_pattern,
        "n_days": int(prices["date"].nunique()),
        "actions": json_ready(
            [
                {
                    **action,
                    "ex_date": str(pd.Timestamp(action["ex_date"]).date()),
                    "description": describe_action(action),
                }
                for action in actions.to_dict("records")
            ]
        ),
        "missing_days": missing_trading_days(prices, sessions),
        "merge": {"prices": price_stats.to_dict(), "financials": financial_stats.to_dict()},
        "held_corrections": {
            "count": len(held),
            "max_price_change": settings.corrections.max_price_change,
            "first": json_ready(
                held.head(HELD_SHOWN)
                .assign(date=held["date"].head(HELD_SHOWN).dt.strftime("%Y-%m-%d"))
                .to_dict("records")
            ),
        },
        "validation": [report.to_dict() for report in batch.reports],
    }
    return SnapshotContent(version, prices, financials, oracle, actions, summary, partitions)


def publish_snapshot(content: SnapshotContent, previous: Snapshot | None, store: ObjectStore) -> tuple[dict, dict]:
    """Store the partitions of ``content`` that the previous snapshot does not already have; return the manifest (the
    run's artefact that lists them) and the summary, with what was written (``storage``: objects and bytes)."""
    manifest, written = write_tables(store, content.partitions, previous.manifest if previous else None)
    return manifest, {**content.summary, "storage": written.to_dict()}


def quarantine_summary(reports: list[dict], *, shown: int = 10) -> list[str]:
    """What validation left out, one line per broken rule with its count and first CSV lines: for the console."""
    lines = [violation["message"] for report in reports for violation in report["violations"]]
    if len(lines) > shown:
        lines = [*lines[:shown], f"... and {len(lines) - shown} more rule(s) broken; see the snapshot card"]
    return lines


def held_corrections_summary(held: dict) -> list[str]:
    """What the correction band held back, for the console: a count, the first rows, and how to apply them."""
    if not held.get("count"):
        return []
    lines = [
        f"Held back {held['count']} correction(s) of published prices moving open, high, low or close by more than "
        f"{held['max_price_change']:.0%} (corrections.max_price_change); the published rows stay:"
    ]
    for row in held["first"]:
        changes = ", ".join(
            f"{column} {row[f'{column}_before']:g} -> {row[column]:g}"
            for column in CORRECTED_PRICES
            if row[column] != row[f"{column}_before"]
        )
        lines.append(f"  {row['ticker']} {row['date']}: {changes}")
    if held["count"] > len(held["first"]):
        lines.append(f"  ... and {held['count'] - len(held['first'])} more")
    lines.append("Check them; if they are right, ingest the same files again with --apply-corrections.")
    return lines


def new_actions(actions: list[dict], known: list[dict]) -> list[dict]:
    """The snapshot summary's actions that ``known`` (the previous snapshot's) did not list: what a day brought."""
    seen = {(action["ticker"], action["ex_date"], action["kind"]) for action in known}
    return [action for action in actions if (action["ticker"], action["ex_date"], action["kind"]) not in seen]
