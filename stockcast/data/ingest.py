"""The library behind IngestFlow: read the sources, validate them, merge them into the snapshot, summarise.

Each public function is one step of the flow, so the flow stays orchestration and everything here is testable
without Metaflow.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from stockcast.data.contract import FINANCIALS, ORACLE, PRICES
from stockcast.data.snapshot import Snapshot, content_version, empty_financials, merge_table
from stockcast.data.sources import read_optional_source, read_source, sibling
from stockcast.data.validation import (
    DEFAULT_MAX_QUARANTINED_FRACTION,
    ContractViolationError,
    ValidationReport,
    read_csv_text,
    validate_financials,
    validate_oracle,
    validate_prices,
)


@dataclass(frozen=True)
class RawSources:
    """The bytes of one ingestion's input files, kept as artefacts so every snapshot can be traced to them."""

    prices_uri: str
    prices: bytes
    financials_uri: str | None
    financials: bytes | None
    oracle_uri: str | None
    oracle: bytes | None


@dataclass(frozen=True)
class ValidatedBatch:
    """The accepted rows of one ingestion and the reports that say what was left out and why."""

    prices: pd.DataFrame
    financials: pd.DataFrame
    oracle: pd.DataFrame | None
    reports: tuple[ValidationReport, ...]


@dataclass(frozen=True)
class SnapshotContent:
    """What IngestFlow publishes: the merged tables, their version and a summary for people."""

    version: str
    prices: pd.DataFrame
    financials: pd.DataFrame
    oracle: pd.DataFrame | None
    summary: dict


def load_sources(prices_uri: str, financials_uri: str | None) -> RawSources:
    """Read the input files. The generator's ``oracle.csv`` is picked up when it lies beside the prices file."""
    oracle_uri = sibling(prices_uri, ORACLE.file_name)
    oracle = read_optional_source(oracle_uri)
    return RawSources(
        prices_uri=prices_uri,
        prices=read_source(prices_uri),
        financials_uri=financials_uri or None,
        financials=read_source(financials_uri) if financials_uri else None,
        oracle_uri=oracle_uri if oracle is not None else None,
        oracle=oracle,
    )


def validate_batch(
    raw: RawSources,
    previous: Snapshot | None,
    *,
    today: pd.Timestamp | None = None,
    max_quarantined_fraction: float = DEFAULT_MAX_QUARANTINED_FRACTION,
) -> ValidatedBatch:
    """Validate every input file; raise ``ContractViolationError`` (listing every rejection) if any is rejected."""
    prices, prices_report = validate_prices(
        read_csv_text(raw.prices, file=raw.prices_uri),
        file=raw.prices_uri,
        today=today,
        max_quarantined_fraction=max_quarantined_fraction,
    )
    reports = [prices_report]
    known_tickers = set(prices["ticker"]) | set(previous.tickers if previous else [])
    financials = empty_financials()
    if raw.financials is not None and raw.financials_uri is not None:
        financials, financials_report = validate_financials(
            read_csv_text(raw.financials, file=raw.financials_uri),
            known_tickers=known_tickers,
            file=raw.financials_uri,
            today=today,
            max_quarantined_fraction=max_quarantined_fraction,
        )
        reports.append(financials_report)
    oracle = None
    if raw.oracle is not None and raw.oracle_uri is not None:
        oracle, oracle_report = validate_oracle(read_csv_text(raw.oracle, file=raw.oracle_uri), file=raw.oracle_uri)
        reports.append(oracle_report)
    if any(report.rejected for report in reports):
        raise ContractViolationError(reports)
    return ValidatedBatch(prices, financials, oracle, tuple(reports))


def build_snapshot(previous: Snapshot | None, batch: ValidatedBatch) -> SnapshotContent:
    """Merge the batch into the previous snapshot and describe the result; the version is the content hash."""
    prices, price_stats = merge_table(previous.prices if previous else None, batch.prices, PRICES.key)
    financials, financial_stats = merge_table(
        previous.financials if previous else None, batch.financials, FINANCIALS.key
    )
    previous_oracle = previous.oracle if previous else None
    oracle = previous_oracle
    if batch.oracle is not None:
        oracle, _ = merge_table(previous_oracle, batch.oracle, ORACLE.key)
    # The oracle is a benchmark aid, not data a model may learn from: it does not enter the version.
    version = content_version({"prices": prices, "financials": financials})
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
        "merge": {"prices": price_stats.to_dict(), "financials": financial_stats.to_dict()},
        "validation": [report.to_dict() for report in batch.reports],
    }
    return SnapshotContent(version, prices, financials, oracle, summary)
