"""`modelscale runs`: list and show what the knowledge base holds."""

from __future__ import annotations

import json

import typer
from rich.markup import escape
from rich.table import Table

from modelscale.cli.app import CommandGroup, app
from modelscale.cli.render import console, print_json, print_table
from modelscale.store import Store, open_store

__all__ = ["runs_app"]

runs_app = typer.Typer(
    cls=CommandGroup, help="List and show runs in the knowledge base.", invoke_without_command=True
)
app.add_typer(runs_app, name="runs")


@runs_app.callback()
def list_runs(
    ctx: typer.Context,
    model: str | None = typer.Option(None, "--model", "-m", help="Model name or sha256 (prefix)."),
    kind: str | None = typer.Option(None, "--kind", "-k", help="Run kind, e.g. profile."),
    limit: int = typer.Option(50, "--limit", min=1, help="Show at most this many runs."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """List runs, newest first, one line each (details: modelscale runs show ID)."""
    if ctx.invoked_subcommand is not None:
        return
    store = open_store()
    runs = store.runs(model=model, kind=kind, limit=limit)
    if as_json:
        print_json([r.to_dict() for r in runs])
        return
    if not runs:
        console.print("No runs yet. Try: modelscale profile MODEL.onnx")
        return
    table = Table(
        caption=f"knowledge base: {store.url.render_as_string(hide_password=True)}; one line "
        "per run, the whole of one: modelscale runs show ID",
        caption_justify="left",
    )
    for col in ("id", "kind", "model", "created", "parent"):
        table.add_column(col, no_wrap=True)
    # One line per run: on a terminal the summary is cut at its edge; a pipe gets all of it.
    table.add_column("summary", no_wrap=True, overflow="ellipsis", min_width=20)
    for r in runs:
        model_label = f"{r.model_name or '?'}@{r.model_version[:8]}" if r.model_version else "-"
        status = "" if r.status == "ok" else f"[red]{r.status}[/] "
        table.add_row(
            str(r.id),
            r.kind,
            model_label,
            r.created_at.strftime("%Y-%m-%d %H:%M"),
            str(r.parent_run_id or "-"),
            status + escape(str(r.results.get("summary", ""))),
        )
    print_table(table, shorten=("summary",))


@runs_app.command("show")
def show_run(
    run_id: int = typer.Argument(..., help="Run id, as listed by `modelscale runs`."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Show one run whole: parameters, results, machine and lineage."""
    store = open_store()
    run = store.run(run_id)
    if as_json:
        print_json(run.to_dict())
        return
    console.rule(f"run {run.id} · {run.kind} · {run.status}")
    console.print(f"created   {run.created_at.isoformat()}")
    if run.model_version:
        console.print(f"model     {_lineage(store, run.model_version)}")
    produced = run.results.get("chosen_sha256")
    if isinstance(produced, str) and produced != run.model_version:
        console.print(f"produced  {_lineage(store, produced)}")
    if run.parent_run_id:
        console.print(f"parent    run {run.parent_run_id}")
    if run.note:
        console.print(f"note      {run.note}")
    for title, body in (("params", run.params), ("results", run.results), ("machine", run.machine)):
        console.rule(title, style="dim")
        console.print_json(json.dumps(body))


def _lineage(store: Store, sha256: str) -> str:
    chain = store.lineage(sha256)
    return " <- ".join(f"{m.name} ({m.sha256[:12]})" for m in chain) or sha256
