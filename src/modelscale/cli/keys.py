"""`modelscale keys create | list | revoke`: the scoped API keys of a server's keys file."""

from __future__ import annotations

import pathlib
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import typer
from rich.markup import escape
from rich.table import Table

from modelscale.cli.app import CommandGroup, app
from modelscale.cli.render import console, err_console, print_json, print_table
from modelscale.errors import ModelscaleWarning
from modelscale.secret import check_private, create_secret, read_secret
from modelscale.serve.auth import default_secret_file
from modelscale.serve.keys import SCOPES, create_key, pepper_of, read_keys, revoke_key

__all__ = ["create_command", "keys_app", "list_command", "revoke_command"]

keys_app = typer.Typer(
    cls=CommandGroup,
    help="The scoped API keys a server takes (deploy.yaml auth.keys_file, serve --keys-file): "
    "make one, list them, revoke one. Keys are stored hashed; a change reaches a running server "
    "within a second.",
    no_args_is_help=True,
)
app.add_typer(keys_app, name="keys")

_KEYS_FILE = typer.Option(
    pathlib.Path("keys.json"), "--keys-file", help="The JSON keys file [keys.json]."
)
_JSON = typer.Option(False, "--json", help="Print JSON.")


def _audit(action: str, keys_file: pathlib.Path, **details: Any) -> None:
    """Append a change to the keys (``create``, ``revoke``) to the knowledge base's audit log,
    with what identifies the key (never the key or its hash)."""
    from modelscale.workflow.privacy import audit_access

    audit_access(f"keys.{action}", str(keys_file), details)


@contextmanager
def _warnings_shown() -> Iterator[None]:
    """Our warnings (a keys file others can read) as one line each on stderr."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ModelscaleWarning)
        yield
    for w in caught:
        if issubclass(w.category, ModelscaleWarning):
            err_console.print(f"[yellow]Warning:[/] {escape(str(w.message))}", soft_wrap=True)
        else:
            warnings.showwarning(w.message, w.category, w.filename, w.lineno)


@keys_app.command("create")
def create_command(
    name: str = typer.Argument(..., help="What the key is for (a service, a person)."),
    scope: list[str] = typer.Option(
        [], "--scope", "-s", help=f"What the key may do, repeatable: {', '.join(SCOPES)}."
    ),
    keys_file: pathlib.Path = _KEYS_FILE,
    secret_file: pathlib.Path | None = typer.Option(
        None,
        "--secret-file",
        help="The server secret; made if missing [MODELSCALE_SECRET_FILE, else 'secret' beside "
        "the keys file].",
    ),
    as_json: bool = _JSON,
) -> None:
    """Make a key and print it, once: only its hash is kept."""
    secret_path = secret_file or default_secret_file(keys_file)
    with _warnings_shown():
        made = not secret_path.exists()
        if made:
            secret = create_secret(secret_path)
        else:
            check_private(secret_path, what="The server secret file")
            secret = read_secret(secret_path)
        if keys_file.exists():
            check_private(keys_file, what="The API keys file")
        entry, key = create_key(keys_file, name=name, scopes=scope, pepper=pepper_of(secret))
    _audit("create", keys_file, id=entry.id, name=entry.name, scopes=list(entry.scopes))
    if as_json:
        print_json({"key": key, **entry.public(), "keys_file": str(keys_file)})
        return
    if made:
        err_console.print(f"Made the server secret {escape(str(secret_path))} (mode 0600).")
    console.print(
        f"Key {entry.id} ({escape(entry.name)}; {', '.join(entry.scopes)}) added to "
        f"{escape(str(keys_file))}:"
    )
    console.print(key, soft_wrap=True, highlight=False, markup=False)
    console.print(
        "Keep it now: it is not shown again (only its hash is stored). Send it as "
        "'Authorization: Bearer <key>'.",
        soft_wrap=True,
    )


@keys_app.command("list")
def list_command(keys_file: pathlib.Path = _KEYS_FILE, as_json: bool = _JSON) -> None:
    """The keys: id, name, scopes, when made and when revoked (never the keys or hashes)."""
    with _warnings_shown():
        check_private(keys_file, what="The API keys file")
        keys = read_keys(keys_file)
    if as_json:
        print_json({"keys": [k.public() for k in keys.keys]})
        return
    if not keys.keys:
        console.print(f"No keys in {escape(str(keys_file))}.")
        return
    table = Table(title=f"API keys in {escape(str(keys_file))}", title_justify="left")
    for col in ("id", "name", "scopes", "created", "revoked"):
        table.add_column(col)
    for k in keys.keys:
        table.add_row(
            k.id,
            escape(k.name),
            ", ".join(k.scopes),
            k.created_at,
            f"[red]{k.revoked_at}[/]" if k.revoked_at else "-",
        )
    print_table(table)


@keys_app.command("revoke")
def revoke_command(
    key_id: str = typer.Argument(..., metavar="ID", help="The key's id (keys list)."),
    keys_file: pathlib.Path = _KEYS_FILE,
    as_json: bool = _JSON,
) -> None:
    """Revoke a key: servers refuse it (401) within a second, without a restart."""
    with _warnings_shown():
        check_private(keys_file, what="The API keys file")
        entry, changed = revoke_key(keys_file, key_id.strip().lower())
    if changed:
        _audit("revoke", keys_file, id=entry.id, name=entry.name)
    if as_json:
        print_json({**entry.public(), "changed": changed})
        return
    if changed:
        console.print(f"Revoked key {entry.id} ({escape(entry.name)}) at {entry.revoked_at}.")
    else:
        console.print(
            f"Key {entry.id} ({escape(entry.name)}) was revoked already, at {entry.revoked_at}."
        )
