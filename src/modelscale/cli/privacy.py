"""`modelscale privacy purge | audit`: retention and the privacy audit of stored data."""

from __future__ import annotations

import datetime as dt
import pathlib

import typer
from rich.markup import escape
from rich.table import Table

from modelscale.cli.app import CommandGroup, app
from modelscale.cli.render import console, err_console, print_json, print_table

__all__ = ["privacy_app"]

privacy_app = typer.Typer(
    cls=CommandGroup,
    help="Stored data and the law: purge what is past retention, audit what is stored, who read "
    "it, and whether any personal data got through.",
    no_args_is_help=True,
)
app.add_typer(privacy_app, name="privacy")

_DEPLOY = typer.Option(
    None,
    "--deploy",
    "-f",
    help="deploy.yaml: its log.path, store.url, retention and policies.",
    exists=False,
)
_LOG = typer.Option(
    None, "--log", help="The request log (directory or URL); default: deploy.yaml's log.path."
)
_DB = typer.Option(None, "--db", help="The knowledge base URL; default: MODELSCALE_DB.")
_JSON = typer.Option(False, "--json", help="Print JSON.")


def _mb(n: int) -> str:
    return f"{n / 2**20:.2f} MB"


@privacy_app.command("purge")
def purge_command(
    deploy: pathlib.Path | None = _DEPLOY,
    log: str | None = _LOG,
    db: str | None = _DB,
    dry_run: bool = typer.Option(False, "--dry-run", help="Say what would go; delete nothing."),
    as_json: bool = _JSON,
) -> None:
    """Delete request rows, payloads, feedback files and audit entries past their TTL."""
    from modelscale.workflow.privacy import PrivacyTarget, run_purge

    report = run_purge(PrivacyTarget.of(deploy, log=log, db=db), dry_run=dry_run)
    if as_json:
        print_json(report.to_dict())
    else:
        verb = "would delete" if dry_run else "deleted"
        table = Table(title="privacy purge" + (" (dry run)" if dry_run else ""))
        for col in ("class", "TTL", verb, "size", "left past TTL", "unreadable"):
            table.add_column(col, justify="left" if col == "class" else "right")
        for c in report.classes:
            table.add_row(
                c.name,
                f"{c.ttl_s / 86_400:g} d",
                f"{c.deleted:,}",
                _mb(c.bytes) if c.name != "audit" else "",
                f"{c.remaining:,}",
                f"{c.unreadable:,}",
            )
        print_table(table)
    if not report.ok:
        err_console.print("[red]some data past its TTL could not be deleted[/red]")
        raise typer.Exit(1)


@privacy_app.command("audit")
def audit_command(
    deploy: pathlib.Path | None = _DEPLOY,
    log: str | None = _LOG,
    db: str | None = _DB,
    since: str | None = typer.Option(
        None, "--since", help="Who read what since: 30m, 1h, 2d, an ISO time or unix seconds."
    ),
    max_rows: int = typer.Option(
        200_000, "--max-rows", min=1, help="Scan about this many stored rows for personal data."
    ),
    as_json: bool = _JSON,
) -> None:
    """Verify the audit log's hash chain; report stored data, policies, retention, readers and
    any personal data in stored logs. Exits 1 when something is wrong."""
    from modelscale.observe import parse_since
    from modelscale.workflow.privacy import PrivacyTarget, run_audit

    when = parse_since(since, field="since") if since else None
    audit, run_id = run_audit(
        PrivacyTarget.of(deploy, log=log, db=db), since=when, max_rows=max_rows
    )
    if as_json:
        print_json({"run_id": run_id, **audit.to_dict(), "problems": audit.problems()})
    else:
        _render(audit, run_id)
    if not audit.ok:
        raise typer.Exit(1)


def _render(audit: object, run_id: int) -> None:
    from modelscale.privacy import PrivacyAudit

    assert isinstance(audit, PrivacyAudit)  # what run_audit returns; not input validation
    mark = "[green]intact[/green]" if audit.chain_ok else "[red]BROKEN[/red]"
    console.print(
        f"audit log: {audit.chain_entries:,} entries, chain {mark}; newest hash "
        f"{audit.chain_last_hash} (keep it elsewhere to detect a rewrite of the whole log)"
    )
    stored = Table(title="stored data")
    for c in ("class", "items", "size", "oldest", "past retention"):
        stored.add_column(c, justify="left" if c in ("class", "oldest") else "right")
    for cls, d in audit.stored.items():
        oldest = (
            dt.datetime.fromtimestamp(d["oldest"], dt.UTC).strftime("%Y-%m-%d %H:%M")
            if d["oldest"]
            else ""
        )
        stored.add_row(
            cls,
            f"{d['items']:,}",
            _mb(d["bytes"]) if cls != "audit" else "",
            oldest,
            f"{audit.past_retention.get(cls, 0):,}",
        )
    print_table(stored)
    if audit.policies:
        pol = Table(title="policies")
        for c in ("model", "payloads", "text", "fields"):
            pol.add_column(c)
        for model, p in audit.policies.items():
            fields = [
                f"{g}.{k}={v}"
                for g in ("inputs", "outputs", "parameters", "headers", "outcomes")
                for k, v in p[g].items()
            ]
            pol.add_row(
                escape(model),
                "logged, redacted" if p["payloads_logged"] else "off",
                "yes" if p["text_input"] else "",
                escape(", ".join(fields) or "defaults"),
            )
        print_table(pol)
    if audit.readers:
        who = Table(title="who read or changed what")
        for c in ("actor", "action", "times", "last", "targets"):
            who.add_column(c, justify="right" if c == "times" else "left")
        for r in audit.readers:
            who.add_row(
                escape(r["actor"]),
                r["action"],
                f"{r['count']:,}",
                r["last"][:19],
                escape(", ".join(r["targets"])),
            )
        print_table(who)
    console.print(
        f"scanned {audit.scanned_rows:,} stored rows in {audit.scanned_files:,} files for "
        "personal data: "
        + (
            "none found"
            if not audit.findings
            else ", ".join(f"[red]{n} {k}[/red]" for k, n in audit.findings.items())
        )
    )
    for line in audit.problems():
        err_console.print(f"[red]problem:[/red] {escape(line)}")
    console.print(f"stored as run {run_id}")
