"""`modelscale logs`: read a server's request log (Parquet, queried with DuckDB)."""

from __future__ import annotations

import datetime as dt
import pathlib
import time
from typing import Any

import orjson
import typer
from rich.markup import escape
from rich.table import Table

from modelscale.cli.app import CommandGroup, app
from modelscale.cli.remote import fetch_json, is_url, read_api_key
from modelscale.cli.render import console, err_console, print_json, print_table
from modelscale.errors import InvalidInput

__all__ = ["logs_app"]

logs_app = typer.Typer(
    cls=CommandGroup,
    help="A server's request log: follow it, query it with SQL, summarise it.",
    no_args_is_help=True,
)
app.add_typer(logs_app, name="logs")

_LOG_HELP = (
    "The log: a directory (a server's log.path, default .modelscale/logs) or a URL (s3://...)."
)


def _log(where: str) -> str:
    if "://" not in where and not pathlib.Path(where).expanduser().is_dir():
        raise InvalidInput(
            f"{where} is not a directory. Expected a request log's directory (a server's "
            "log.path; by default .modelscale/logs) or a filesystem URL.",
            field="log",
        )
    return where


def _audited(action: str, target: str, details: dict[str, Any]) -> None:
    """Append this read of the log to the audit log (before reading)."""
    from modelscale.workflow.privacy import audit_access

    audit_access(action, target, details)


def _line(r: dict[str, Any]) -> str:
    when = dt.datetime.fromtimestamp(float(r["time"]), tz=dt.UTC).strftime("%H:%M:%S.%f")[:-3]
    status = int(r["status"])
    colour = "green" if status < 400 else ("yellow" if status < 500 else "red")
    parts = [
        when,
        f"{r['model']}:{r['version']}",
        f"[{colour}]{status}[/{colour}]",
        f"{float(r['latency_ms']):8.2f} ms",
        f"rows {r['rows']}" if r.get("rows") is not None else "",
        f"batch {r['batch_rows']}" if r.get("batch_rows") is not None else "",
        escape(str(r.get("request_id") or "")),
    ]
    if r.get("error"):
        parts.append(escape(str(r["error"])))
    return "  ".join(p for p in parts if p)


def _fetch(url: str, key: str | None, params: dict[str, Any]) -> list[dict[str, Any]]:
    body = fetch_json(url, "/v2/logs", key, params)
    records = body.get("records") if isinstance(body, dict) else None
    if not isinstance(records, list):
        raise InvalidInput(f"{url}/v2/logs answered no records list.", field="target")
    return records


@logs_app.command("tail")
def tail(
    target: str = typer.Argument(..., help="A server's URL (http://host:port) or a log directory."),
    model: str | None = typer.Option(None, "--model", help="Only this model."),
    status: str | None = typer.Option(
        None, "--status", help="Only this status: 503, a class (5xx) or 'error' (4xx and 5xx)."
    ),
    lines: int = typer.Option(
        20, "--lines", "-n", min=1, max=10_000, help="Records to start with."
    ),
    follow: bool = typer.Option(True, "--follow/--no-follow", help="Keep printing new records."),
    interval_s: float = typer.Option(
        1.0, "--interval", min=0.1, max=60, help="Seconds between polls while following."
    ),
    api_key_file: pathlib.Path | None = typer.Option(
        None, "--api-key-file", help="The server's API key (first line of the file)."
    ),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per line."),
) -> None:
    """Print the newest records, then follow new ones until Ctrl-C (--no-follow: print and exit)."""
    from modelscale.observe import recent_records, status_range

    if status is not None:
        status_range(status)
    remote = is_url(target)
    key = read_api_key(api_key_file, remote=remote)
    if not remote:
        _log(target)

    def read(after: float | None, limit: int) -> list[dict[str, Any]]:
        if remote:
            return _fetch(
                target,
                key,
                {"since": after, "model": model, "status": status, "limit": limit},
            )
        since = dt.datetime.fromtimestamp(after, tz=dt.UTC) if after is not None else None
        return recent_records(target, after=since, model=model, status=status, limit=limit)

    def show(records: list[dict[str, Any]]) -> None:
        for r in records:
            if as_json:
                print(orjson.dumps(r).decode())
            else:
                console.print(_line(r), soft_wrap=True, highlight=False)

    if not remote:  # a server audits its own readers
        _audited("logs.read", target, {"command": "tail"})
    records = read(None, lines)
    show(records)
    last = records[-1]["time"] if records else time.time()
    try:
        while follow:
            time.sleep(interval_s)
            new = read(last, 1_000)
            show(new)
            if new:
                last = new[-1]["time"]
    except KeyboardInterrupt:
        pass


@logs_app.command("query")
def query(
    log: str = typer.Argument(..., help=_LOG_HELP),
    sql: str = typer.Argument(..., help="One SELECT over the view `requests`."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Run one read-only SQL query (DuckDB) over the log as the view `requests`."""
    from modelscale.observe import query_log

    _audited("logs.export" if as_json else "logs.read", _log(log), {"sql": sql[:500]})
    result = query_log(log, sql)
    if as_json:
        print_json({"columns": result.columns, "rows": result.rows})
        return
    table = Table()
    for c in result.columns:
        table.add_column(escape(c))
    for row in result.rows:
        table.add_row(*(escape(_cell(v)) for v in row))
    print_table(table)
    err_console.print(f"{len(result.rows)} rows")


def _cell(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, dt.datetime):
        return v.isoformat(sep=" ", timespec="milliseconds")
    return "" if v is None else str(v)


@logs_app.command("slo")
def slo(
    deploy: pathlib.Path = typer.Option(
        ..., "--deploy", "-f", help="deploy.yaml: the models' slo: objectives and log.path."
    ),
    model: str | None = typer.Option(None, "--model", help="Only this model."),
    window_days: float | None = typer.Option(
        None, "--window-days", min=0.0001, help="The window (default: each SLO's window_days)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Each objective over its window of the request log: good share, budget spent, met or
    not; stored as an slo run (what `modelscale check` and `report` read)."""
    from modelscale.config import load_deployment
    from modelscale.store import open_store
    from modelscale.workflow.reporting import measure_slos

    spec = load_deployment(deploy)
    if spec.log.enabled:
        _audited("logs.read", spec.log.where, {"command": "slo"})
    store = open_store(spec.store.url)
    try:
        measured = measure_slos(spec, store, model=model, window_days=window_days)
    finally:
        store.close()
    if as_json:
        print_json([{"run_id": run, **m.to_dict()} for m, run in measured])
        return
    if not measured:
        console.print("No model in the deployment sets an availability or latency objective.")
        return
    table = Table(title="objectives over the request log")
    for c in ("model", "objective", "requests", "bad", "good", "budget spent", "met", "run"):
        table.add_column(c, justify="left" if c in ("model", "objective") else "right")
    for m, run in measured:
        for o in m.objectives:
            good = "-" if o["good_ratio"] is None else f"{o['good_ratio']:.4%}"
            spent = "-" if o["budget_spent"] is None else f"{o['budget_spent']:.0%}"
            met = (
                "[green]yes[/]"
                if o["met"] and o["enough"]
                else ("[yellow]too few requests[/]" if not o["enough"] else "[red]no[/]")
            )
            table.add_row(
                escape(m.model),
                f"{o['sli']} {o['objective']:.4%}",
                f"{o['events']:,}",
                f"{o['bad']:,}",
                good,
                spent,
                met,
                str(run),
            )
    print_table(table)


@logs_app.command("stats")
def stats(
    log: str = typer.Argument(..., help=_LOG_HELP),
    by: list[str] = typer.Option(
        ["model", "version"],
        "--by",
        help="Group by (repeat for several): model, version, arm, status, key_id, hour, minute.",
    ),
    since: str | None = typer.Option(
        None, "--since", help="Only requests since: 30m, 1h, 2d, an ISO time or unix seconds."
    ),
    model: str | None = typer.Option(None, "--model", help="Only this model."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Requests, error rate and latency p50/p90/p99 per group."""
    from modelscale.observe import log_stats, parse_since

    _audited("logs.read", _log(log), {"command": "stats"})
    result = log_stats(log, by=by, since=parse_since(since, field="since"), model=model)
    if as_json:
        print_json(result.to_dict())
        return
    table = Table(title="requests" + (f" since {since}" if since else ""))
    for c in [*result.by, "requests", "errors (5xx)", "4xx", "p50 ms", "p90 ms", "p99 ms"]:
        table.add_column(c, justify="left" if c in result.by else "right")
    for r in result.rows:
        table.add_row(
            *(escape(_cell(r.group[k])) for k in result.by),
            f"{r.requests:,}",
            f"{r.errors:,} ({r.error_rate:.2%})",
            f"{r.client_errors:,}",
            *(_cell(v) for v in (r.p50_ms, r.p90_ms, r.p99_ms)),
        )
    print_table(table)
    if not result.rows:
        err_console.print("no requests in the log" + (f" since {since}" if since else ""))
