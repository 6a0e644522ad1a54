"""`modelscale db`: the knowledge base's schema version, shown and upgraded."""

from __future__ import annotations

import typer
from rich.markup import escape

from modelscale.cli.app import CommandGroup, app
from modelscale.cli.render import console, print_json
from modelscale.store import SchemaState, SchemaStatus, schema_status, upgrade

__all__ = ["db_app"]

db_app = typer.Typer(
    cls=CommandGroup,
    help="The knowledge base's schema version: show it, upgrade it.",
    no_args_is_help=True,
)
app.add_typer(db_app, name="db")

_URL_HELP = (
    "SQLAlchemy URL of the knowledge base (default: MODELSCALE_DB or the local SQLite file)."
)


@db_app.command("current")
def current(
    url: str | None = typer.Option(None, "--url", help=_URL_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Show the database's schema revision, this modelscale's head, and whether it is behind."""
    status = schema_status(url)
    if as_json:
        print_json(status.to_dict())
        return
    console.print(f"database  {escape(status.url)}", soft_wrap=True)
    console.print(f"revision  {escape(_describe(status))}", soft_wrap=True)
    console.print(f"head      {status.head}", soft_wrap=True)
    behind = "yes: run `modelscale db upgrade`" if status.behind else "no"
    console.print(f"behind    {escape(behind)}", soft_wrap=True)


def _describe(status: SchemaStatus) -> str:
    if status.state is SchemaState.EMPTY:
        return "none (no knowledge base tables yet)"
    if status.state is SchemaState.UNVERSIONED:
        return "none (written by modelscale 0.1.0: taken as 0001_baseline)"
    if status.state is SchemaState.NEWER:
        return f"{status.revision} (unknown here: a newer modelscale wrote it; upgrade modelscale)"
    return status.revision or "none"


@db_app.command("upgrade")
def upgrade_db(url: str | None = typer.Option(None, "--url", help=_URL_HELP)) -> None:
    """Upgrade the database to this modelscale's schema; a SQLite file is backed up first."""
    done = upgrade(url)
    target = escape(done.url)
    if not done.changed:
        console.print(f"{target} is already at {done.to_revision}; nothing to do.", soft_wrap=True)
        return
    if done.from_revision == done.to_revision:  # only stamped
        console.print(
            f"{target}: stamped {done.to_revision} (the schema modelscale 0.1.0 wrote).",
            soft_wrap=True,
        )
        return
    console.print(
        f"{target}: {done.from_revision or 'empty'} -> {done.to_revision}", soft_wrap=True
    )
    if done.backup is not None:
        console.print(f"backup of the previous file: {escape(str(done.backup))}", soft_wrap=True)
