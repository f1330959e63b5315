"""IngestFlow: validate the day's files and publish a new, content-versioned data snapshot.

    python flows/ingest.py run --prices data/demo/stock_price.csv --financials data/demo/financial_info.csv

Sources may be local paths, http(s):// or s3:// URLs. A file that fails validation fails the run: nothing is
published and the latest snapshot stays what it was. Downstream flows read the result with
``stockcast.data.snapshot.latest_snapshot()``.
"""

from metaflow import Parameter, card, current, namespaced_event_name, project, retry, step, trigger

from stockcast.core.events import DATA_EVENT
from stockcast.core.params import parse_fraction, parse_optional_date
from stockcast.data.card import snapshot_card
from stockcast.data.ingest import build_snapshot, load_sources, validate_batch
from stockcast.data.snapshot import latest_snapshot_or_none, load_snapshot
from stockcast.flowbase import StockcastFlow


# Deployed on Argo Workflows, a `data_arrived` event of this project branch (`mfns.stockcast.<branch>.data_arrived`)
# starts ingestion; its payload names the day's files, e.g.
# {"prices": "s3://bucket/in/2025-12-31/stock_price.csv", "financials": "...", "today": "2025-12-31"}.
@trigger(
    event={
        "name": namespaced_event_name(DATA_EVENT),
        "parameters": {"prices": "prices", "financials": "financials", "today": "today"},
    }
)
@project(name="stockcast")
class IngestFlow(StockcastFlow):
    """Load, validate and merge the contract files into a new data snapshot of this project branch."""

    prices_uri = Parameter(
        "prices",
        default="data/demo/stock_price.csv",
        help="stock_price.csv: a path, an http(s):// URL or an s3:// URL (S3 uses the Metaflow S3 endpoint settings).",
    )
    financials_uri = Parameter(
        "financials",
        default="data/demo/financial_info.csv",
        help="financial_info.csv (same kinds of source); pass an empty string to ingest prices alone.",
    )
    max_quarantined_fraction = Parameter(
        "max-quarantined-fraction",
        default=0.05,
        type=float,
        help="Reject a file when more than this fraction of its rows break row-level rules (0 to 1).",
    )
    today = Parameter(
        "today",
        default="",
        help="The date treated as today by the 'not in the future' rule (YYYY-MM-DD); empty means the real date.",
    )

    @step
    def start(self):
        """Check the parameters (a bad value stops here, naming it) and find this branch's previous snapshot."""
        self.quarantine_limit = parse_fraction("max-quarantined-fraction", self.max_quarantined_fraction)
        self.as_of_today = parse_optional_date("today", self.today)
        previous = latest_snapshot_or_none(current.branch_name)
        self.previous_snapshot = previous.run_pathspec if previous else None
        self.next(self.load)

    @retry(times=2)
    @step
    def load(self):
        """Read the input files; kept as artefacts so every snapshot can be traced to its exact inputs."""
        self.raw = load_sources(self.prices_uri, self.financials_uri)
        self.next(self.validate)

    @step
    def validate(self):
        """Validate every file against the contract; a rejected file fails the run here, before publishing."""
        previous = load_snapshot(self.previous_snapshot) if self.previous_snapshot else None
        self.batch = validate_batch(
            self.raw, previous, today=self.as_of_today, max_quarantined_fraction=self.quarantine_limit
        )
        self.next(self.publish)

    @card(type="blank", id="snapshot")
    @retry(times=2)
    @step
    def publish(self):
        """Merge into the previous snapshot and publish the merged tables under their content version."""
        previous = load_snapshot(self.previous_snapshot) if self.previous_snapshot else None
        content = build_snapshot(previous, self.batch)
        self.prices, self.financials, self.oracle = content.prices, content.financials, content.oracle
        self.snapshot = content.summary
        current.card["snapshot"].extend(snapshot_card(self.snapshot, self.prices))
        self.next(self.end)

    @step
    def end(self):
        """Say what was published and where to look."""
        summary = self.snapshot
        print(
            f"Published snapshot {summary['version']} from run {current.flow_name}/{current.run_id}: "
            f"{summary['n_tickers']} tickers, {summary['rows']['prices']} price rows, "
            f"{summary['date_range'][0]} to {summary['date_range'][1]}."
        )
        print(f"Card: python flows/ingest.py card get {current.run_id}/publish --id snapshot snapshot.html")


if __name__ == "__main__":
    IngestFlow()
