"""IngestFlow: validate the day's files and publish a new, content-versioned data snapshot.

    python flows/ingest.py run --prices data/demo/stock_price.csv --financials data/demo/financial_info.csv
    python flows/ingest.py run --prices my_prices/          # a folder of per-ticker vendor files, prices only

Sources may be local paths, http(s):// or s3:// URLs. ``configs/data.toml`` names the trading calendar and how
corporate actions are found (``--config config other.toml`` to use another). A file that fails validation fails
the run: nothing is published and the latest snapshot stays what it was. Downstream flows read the result with
``stockcast.data.snapshot.latest_snapshot()``.
"""

from metaflow import Config, Parameter, card, current, exit_hook, namespaced_event_name, project, step, trigger

from stockcast.core.engines import engines
from stockcast.core.events import DATA_EVENT
from stockcast.core.params import parse_fraction, parse_optional_date
from stockcast.core.storage import STORAGE_OUTAGE_HOOK, datastore_store
from stockcast.data.card import snapshot_card
from stockcast.data.config import DATA_CONFIG_FILE, DataConfig, parse_data_config
from stockcast.data.heads import SnapshotHead, publish_head
from stockcast.data.ingest import (
    build_snapshot,
    held_corrections_summary,
    load_sources,
    new_actions,
    publish_snapshot,
    quarantine_summary,
    validate_batch,
)
from stockcast.data.snapshot import latest_snapshot_or_none, load_snapshot
from stockcast.flowbase import StockcastFlow

DEMO_PRICES = "data/demo/stock_price.csv"
DEMO_FINANCIALS = "data/demo/financial_info.csv"


# Deployed on Argo Workflows, a `data_arrived` event of this project branch (`mfns.stockcast.<branch>.data_arrived`)
# starts ingestion; its payload names the day's files, e.g.
# {"prices": "s3://bucket/in/2025-12-31/stock_price.csv", "financials": "...", "today": "2025-12-31"}.
@trigger(
    event={
        "name": namespaced_event_name(DATA_EVENT),
        "parameters": {"prices": "prices", "financials": "financials", "today": "today"},
    }
)
@exit_hook(on_error=[STORAGE_OUTAGE_HOOK])
@engines
@project(name="stockcast")
class IngestFlow(StockcastFlow):
    """Load, validate and merge the contract files into a new data snapshot of this project branch."""

    config = Config("config", default=lambda _ctx: str(DATA_CONFIG_FILE), parser=parse_data_config, help="data TOML")

    prices_uri = Parameter(
        "prices",
        default=DEMO_PRICES,
        help="stock_price.csv, or a folder of per-ticker vendor CSVs (Date, Open, High, Low, Close, Adj Close, "
        "Volume): a path, an http(s):// URL or an s3:// URL (S3 uses the Metaflow S3 endpoint settings).",
    )
    financials_uri = Parameter(
        "financials",
        default="",
        help="financial_info.csv (same kinds of source). Empty: none, except for the demo's prices, which come "
        "with the demo's financials. A sectors.csv (ticker, sector) beside the prices gives sectors without it.",
    )
    actions_uri = Parameter(
        "actions",
        default="",
        help="corporate_actions.csv (ticker, ex_date, kind, ratio, new_ticker); empty: the one beside the prices, "
        "if any. Actions are also read off adj_close and suspected from prices (configs/data.toml).",
    )
    max_quarantined_fraction = Parameter(
        "max-quarantined-fraction",
        default=0.05,
        type=float,
        help="Reject a file when more than this fraction of its rows break row-level rules (0 to 1).",
    )
    apply_corrections = Parameter(
        "apply-corrections",
        default=False,
        type=bool,
        help="Apply corrections of published prices beyond the band of configs/data.toml (corrections."
        "max_price_change); without it they are held back and listed.",
    )
    today = Parameter(
        "today",
        default="",
        help="The date treated as today by the 'not in the future' rule (YYYY-MM-DD); empty means the real date.",
    )

    @step
    def start(self):
        """Check the parameters (a bad value stops here, naming it) and find this branch's previous snapshot."""
        self.settings = DataConfig.model_validate(self.config)
        self.quarantine_limit = parse_fraction("max-quarantined-fraction", self.max_quarantined_fraction)
        self.as_of_today = parse_optional_date("today", self.today)
        # Only the demo's own prices bring the demo's financials: a user's --prices alone means prices alone.
        self.financials_source = self.financials_uri or (DEMO_FINANCIALS if self.prices_uri == DEMO_PRICES else "")
        previous = latest_snapshot_or_none(current.branch_name)
        self.previous_snapshot = previous.run_pathspec if previous else None
        self.next(self.load)

    # No @retry: a missing or refused file would fail again; network and storage hiccups are retried by the reader.
    @step
    def load(self):
        """Read the input files; kept as artefacts so every snapshot can be traced to its exact inputs."""
        self.raw = load_sources(self.prices_uri, self.financials_source, self.actions_uri)
        self.next(self.validate)

    @step
    def validate(self):
        """Validate every file against the contract; a rejected file fails the run here, before publishing."""
        previous = load_snapshot(self.previous_snapshot) if self.previous_snapshot else None
        self.batch = validate_batch(
            self.raw,
            previous,
            today=self.as_of_today,
            max_quarantined_fraction=self.quarantine_limit,
            settings=self.settings,
        )
        for line in quarantine_summary([report.to_dict() for report in self.batch.reports]):
            print(line)
        self.next(self.publish)

    # No @retry: the merge is deterministic (a rename onto a ticker that already trades is refused here), and
    # storage writes are retried by the store; partitions are create-only, so a resumed run rewrites nothing.
    @card(type="blank", id="snapshot")
    @step
    def publish(self):
        """Merge into the previous snapshot and publish it under its content version: the partitions the previous
        snapshot lacks go to the datastore, and the manifest listing them all is this run's artefact."""
        previous = load_snapshot(self.previous_snapshot) if self.previous_snapshot else None
        content = build_snapshot(previous, self.batch, self.settings, apply_corrections=self.apply_corrections)
        self.manifest, self.snapshot = publish_snapshot(content, previous, datastore_store())
        current.card["snapshot"].extend(snapshot_card(self.snapshot, content.prices))
        self.next(self.end)

    @step
    def end(self):
        """Point the branch's head at the snapshot, for running services to follow, and say what was published."""
        summary = self.snapshot
        publish_head(
            datastore_store(),
            current.branch_name,
            SnapshotHead.of(summary, self.manifest, run=f"{current.flow_name}/{current.run_id}"),
        )
        print(
            f"Published snapshot {summary['version']} from run {current.flow_name}/{current.run_id}: "
            f"{summary['n_tickers']} tickers, {summary['rows']['prices']} price rows, "
            f"{summary['date_range'][0]} to {summary['date_range'][1]}."
        )
        known = load_snapshot(self.previous_snapshot).summary.get("actions", []) if self.previous_snapshot else []
        new = new_actions(summary["actions"], known)
        print(f"{len(summary['actions'])} corporate action(s) in the snapshot, {len(new)} new:")
        for action in new:
            print(f"Corporate action: {action['description']}")
        missing = summary["missing_days"]
        if missing["market"] or missing["tickers"]:
            print(
                f"Missing trading days ({summary['calendar']}): {len(missing['market'])} with no prices at all"
                f"{' (' + ', '.join(missing['market'][:5]) + ')' if missing['market'] else ''}; "
                f"{len(missing['tickers'])} ticker(s) lack days of their own history."
            )
        for line in held_corrections_summary(summary["held_corrections"]):
            print(line)
        print(f"Card: python flows/ingest.py card get {current.run_id}/publish --id snapshot snapshot.html")


if __name__ == "__main__":
    IngestFlow()
