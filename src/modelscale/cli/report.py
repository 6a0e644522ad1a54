"""`modelscale report | check | note`: the knowledge base as a report, a scorecard and notes."""

from __future__ import annotations

import pathlib
import time

import typer
from rich.markup import escape
from rich.table import Table

from modelscale.cli.app import CommandGroup, app
from modelscale.cli.render import console, fmt_bytes, print_json, print_table
from modelscale.report import Scorecard

__all__ = ["note_app", "render_scorecard"]

_DB = typer.Option(None, "--db", help="The knowledge base URL; default: MODELSCALE_DB.")
_MODEL = typer.Argument(..., help="Model name or sha256 (prefix), as `modelscale runs` shows.")
_POLICY = typer.Option(
    None, "--policy", "-p", help="checklist.yaml: required items, thresholds, evidence age."
)
_STYLE = {"pass": "green", "warn": "yellow", "fail": "red", "missing": "dim"}


@app.command("report")
def report_command(
    model: str = _MODEL,
    out: pathlib.Path | None = typer.Option(
        None, "--out", "-o", help="The file to write (default: MODEL_report.html or .md)."
    ),
    fmt: str = typer.Option("html", "--format", help="html (one offline file) or md."),
    since: str | None = typer.Option(
        None, "--since", help="Only runs since: 30m, 12h, 7d, an ISO time or unix seconds."
    ),
    policy: pathlib.Path | None = _POLICY,
    db: str | None = _DB,
) -> None:
    """Write one report of everything measured about MODEL: card, profile, compression, plan,
    load, laws, SLOs, drift, experiments, privacy, assessments, notes, and the scorecard."""
    from modelscale.observe import parse_since
    from modelscale.report import build_report, gather_evidence, load_policy, write_report
    from modelscale.store import open_store

    if fmt not in ("html", "md"):
        from modelscale.errors import InvalidInput

        raise InvalidInput(f"--format must be html or md. Got {fmt!r} instead.", field="format")
    rules = load_policy(policy)
    started = time.perf_counter()
    store = open_store(db)
    try:
        ev = gather_evidence(store, model, since=parse_since(since, field="since"))
        report = build_report(
            ev, policy=rules, source=store.url.render_as_string(hide_password=True)
        )
    finally:
        store.close()
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in ev.name)
    path = write_report(report, out or pathlib.Path(f"{safe}_report.{fmt}"), fmt=fmt)  # type: ignore[arg-type]
    seconds = time.perf_counter() - started
    present = [s.title for s in report.sections if not s.missing]
    absent = [s for s in report.sections if s.missing]
    console.print(
        f"Wrote {escape(str(path))} ({fmt_bytes(path.stat().st_size)}, {report.charts} charts, "
        f"{len(ev.runs)} runs) in {seconds:.2f} s."
    )
    console.print(f"Sections with evidence: {escape(', '.join(present))}.")
    for s in absent:
        console.print(f"[dim]No {s.title.lower()} yet: {escape(s.missing or '')}[/dim]")
    console.print(
        f"Scorecard: {escape(report.scorecard.summary)} (details: modelscale check "
        f"{escape(ev.name)})"
    )


@app.command("check")
def check_command(
    model: str = _MODEL,
    policy: pathlib.Path | None = _POLICY,
    deploy: pathlib.Path | None = typer.Option(
        None,
        "--deploy",
        "-f",
        help="deploy.yaml: measure MODEL's objectives over its request log first (an slo run).",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    db: str | None = _DB,
) -> None:
    """Score MODEL against the scaling checklist: pass / warn / fail / missing per item, with
    the runs behind each. Exits 1 when an item fails or a required one is missing (a CI gate)."""
    from modelscale.config import load_deployment
    from modelscale.report import check, gather_evidence, load_policy
    from modelscale.store import open_store
    from modelscale.workflow.reporting import measure_slos

    rules = load_policy(policy)
    spec = load_deployment(deploy) if deploy is not None else None
    store = open_store(db)
    try:
        ev = gather_evidence(store, model)  # an unknown model fails before anything is stored
        if spec is not None:
            measure_slos(spec, store, model=ev.name)
            ev = gather_evidence(store, model)
        card = check(ev, rules)
    finally:
        store.close()
    if as_json:
        print_json(card.to_dict())
    else:
        render_scorecard(card)
    if card.exit_code:
        raise typer.Exit(card.exit_code)


def render_scorecard(card: Scorecard) -> None:
    """The scorecard as a table: item, status, evidence (and the command when not passing)."""
    table = Table(
        title=f"scaling checklist: {card.model}", caption=card.summary, caption_justify="left"
    )
    # Widths capped so a pipe or a CI log (rendered unbounded) still reads as a table.
    for col, width in (("item", 34), ("status", 18), ("evidence", 90), ("runs", 16), ("age", 7)):
        table.add_column(col, overflow="fold", max_width=width)
    for i in card.items:
        style = _STYLE[i.status.value]
        detail = escape(i.detail)
        if i.status.value != "pass" and i.command:
            detail += f"\n[dim]-> {escape(i.command)}[/dim]"
        table.add_row(
            escape(i.title),
            f"[{style}]{i.status.value}[/{style}]" + ("" if i.required else " (optional)"),
            detail,
            ", ".join(map(str, i.runs)) or "-",
            f"{i.age_days:.1f} d" if i.age_days is not None else "-",
        )
    print_table(table)


note_app = typer.Typer(
    cls=CommandGroup,
    help="Findings and decisions, kept beside the runs they are about.",
    no_args_is_help=True,
)
app.add_typer(note_app, name="note")


@note_app.command("add")
def note_add(
    model: str = _MODEL,
    text: str = typer.Argument(..., help="The finding or decision, in words."),
    run: int | None = typer.Option(None, "--run", help="The run it is about."),
    tag: list[str] = typer.Option([], "--tag", "-t", help="A tag (repeat for several)."),
    db: str | None = _DB,
) -> None:
    """Write down a finding or decision about MODEL; reports show it beside the run."""
    from modelscale.report import make_note
    from modelscale.store import open_store
    from modelscale.workflow import record

    store = open_store(db)
    try:
        recorded = record(make_note(store, model, text, run=run, tags=tag), store)
    finally:
        store.close()
    console.print(f"Stored as note {recorded.run_id}" + (f" on run {run}" if run else "") + ".")


@note_app.command("list")
def note_list(
    model: str | None = typer.Argument(None, help="Only notes about this model."),
    tag: str | None = typer.Option(None, "--tag", "-t", help="Only notes with this tag."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    db: str | None = _DB,
) -> None:
    """List notes, oldest first."""
    from modelscale.report import gather_evidence
    from modelscale.store import open_store

    store = open_store(db)
    try:
        notes = (
            gather_evidence(store, model).notes()
            if model
            else sorted(store.runs(kind="note"), key=lambda r: r.id)
        )
    finally:
        store.close()
    if tag is not None:
        notes = [n for n in notes if tag in (n.params.get("tags") or [])]
    if as_json:
        print_json([n.to_dict() for n in notes])
        return
    if not notes:
        console.print('No notes yet. Add one: modelscale note add MODEL "text" --run ID')
        return
    table = Table()
    for col in ("id", "when", "model", "run", "tags", "note"):
        table.add_column(col, overflow="fold")
    for n in notes:
        table.add_row(
            str(n.id),
            n.created_at.strftime("%Y-%m-%d %H:%M"),
            escape(n.model_name or "-"),
            str(n.params.get("run") or "-"),
            escape(", ".join(n.params.get("tags") or [])),
            escape(str(n.results.get("text", ""))),
        )
    print_table(table)
