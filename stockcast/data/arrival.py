"""Data arrival: the event a data producer publishes when a day's files are in place, which starts IngestFlow.

Deployed on Argo Workflows, IngestFlow waits for the ``data_arrived`` event of its project branch
(``stockcast.core.events.DATA_EVENT``, named ``mfns.stockcast.<branch>.data_arrived`` as Metaflow's
``namespaced_event_name`` names it), whose payload becomes its parameters; BatchPredictFlow, MonitorFlow and, when
monitoring calls for it, TrainFlow follow. ``stockcast-data-arrived`` is how the producer's job (a vendor
download, a cron on the file drop) publishes it, through Argo Events' webhook (``ARGO_EVENTS_WEBHOOK_URL``, as
Metaflow's ``ArgoEvent`` reads it, or ``--webhook``):

    stockcast-data-arrived --production --prices s3://bucket/in/2026-12-04/stock_price.csv \\
        --financials s3://bucket/in/2026-12-04/financial_info.csv --today 2026-12-04

Every argument is checked before anything is sent, and a refused one is named: a payload IngestFlow would refuse
at its first step should not start a run.
"""

from __future__ import annotations

import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from stockcast.core.errors import UserError
from stockcast.core.events import DATA_EVENT
from stockcast.core.params import ParameterError, parse_optional_date
from stockcast.core.runs import project_branch

PROJECT = "stockcast"
REMOTE_SCHEMES = ("s3://", "http://", "https://")


@dataclass(frozen=True)
class Arrival:
    """What arrived: IngestFlow's parameters (``--prices``, ``--financials``, ``--today``)."""

    prices: str
    financials: str = ""
    today: str = ""

    def payload(self) -> dict[str, str]:
        """The event's payload, as IngestFlow's ``@trigger`` maps it onto its parameters."""
        return asdict(self)


def checked_arrival(prices: str, financials: str = "", today: str = "") -> Arrival:
    """The arrival, once every argument is one IngestFlow can take: each source an ``s3://`` or ``http(s)://`` URL
    or a path that exists here, ``today`` a ``YYYY-MM-DD`` date. ``ParameterError`` naming the argument otherwise."""
    if not prices.strip():
        raise ParameterError("--prices is required: the stock_price.csv (or folder) that arrived")
    for name, source in (("prices", prices), ("financials", financials)):
        if source and not source.startswith(REMOTE_SCHEMES) and not Path(source).exists():
            raise ParameterError(f"--{name} {source!r} is neither an s3:// or http(s):// URL nor a path that exists")
    parse_optional_date("today", today)
    return Arrival(prices, financials, today)


def data_event_name(branch: str) -> str:
    """The data-arrival event of a project branch, as ``namespaced_event_name`` resolves it inside IngestFlow."""
    return f"mfns.{PROJECT}.{branch}.{DATA_EVENT}"


def publish_arrival(arrival: Arrival, branch: str, *, webhook: str | None = None) -> str:
    """Publish the arrival to Argo Events (``webhook``, else Metaflow's ``ARGO_EVENTS_WEBHOOK_URL``); the event's
    name. ``UserError`` when no webhook is configured or it refused the event."""
    from metaflow.integrations import ArgoEvent
    from metaflow.metaflow_config import ARGO_EVENTS_WEBHOOK_URL

    url = webhook or ARGO_EVENTS_WEBHOOK_URL
    if not url:
        raise UserError("no Argo Events webhook: set ARGO_EVENTS_WEBHOOK_URL (Metaflow's configuration) or --webhook")
    name = data_event_name(branch)
    try:
        ArgoEvent(name, url=url).publish(payload=arrival.payload(), force=True, ignore_errors=False)
    except Exception as exc:  # ArgoEventException, and the HTTP errors it wraps
        raise UserError(f"{url} did not take event {name}: {exc}") from exc
    return name


def main(argv: list[str] | None = None) -> int:
    """``stockcast-data-arrived``: tell the deployed flows of a branch that a day's files are in place."""
    import argparse

    parser = argparse.ArgumentParser(prog="stockcast-data-arrived", description=main.__doc__)
    parser.add_argument(
        "--prices", required=True, help="stock_price.csv (or a folder of per-ticker files): URL or path"
    )
    parser.add_argument("--financials", default="", help="financial_info.csv, when it arrived too")
    parser.add_argument("--today", default="", help="the day the files are for (YYYY-MM-DD); empty: the real date")
    parser.add_argument("--branch", default=None, help="@project branch (with --production: prod.<branch>)")
    parser.add_argument("--production", action="store_true", help="the production branch (prod)")
    parser.add_argument("--webhook", default=None, help="Argo Events webhook URL (default: ARGO_EVENTS_WEBHOOK_URL)")
    args = parser.parse_args(argv)
    try:
        arrival = checked_arrival(args.prices, args.financials, args.today)
        name = publish_arrival(arrival, project_branch(args.branch, production=args.production), webhook=args.webhook)
    except UserError as exc:
        print(f"stockcast-data-arrived: {exc}", file=sys.stderr)
        return 1
    print(f"Published {name}: {arrival.payload()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
