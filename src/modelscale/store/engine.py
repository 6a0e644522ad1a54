"""Connecting to the knowledge base: its URL, its engine, and the wording of connection errors."""

from __future__ import annotations

import os
import pathlib
from typing import Any

from sqlalchemy import create_engine
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from modelscale.errors import InvalidInput, StoreError

__all__ = [
    "cannot_open",
    "connect_engine",
    "first_line",
    "normalise_url",
    "prepare_sqlite_dir",
    "redact",
    "sqlite_path",
]


def normalise_url(url: str) -> URL:
    """Parse a knowledge base URL; ``postgresql://`` means psycopg 3."""
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise InvalidInput(
            f"The knowledge base URL {url!r} is not a SQLAlchemy URL. Expected e.g. "
            "'sqlite:///path/to/modelscale.db' or 'postgresql://user@host/db' (MODELSCALE_DB).",
            field="db",
        ) from exc
    # psycopg 3 is the PostgreSQL driver we ship; SQLAlchemy would default to psycopg2.
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def redact(url: URL) -> str:
    """The URL as it may appear in messages: without its password."""
    return url.render_as_string(hide_password=True)


def first_line(exc: BaseException) -> str:
    """The first line of a (database driver's) error message."""
    inner = getattr(exc, "orig", None) or exc
    text = str(inner).strip().splitlines()
    return text[0] if text else type(inner).__name__


def cannot_open(url: URL, exc: BaseException) -> StoreError:
    """The error for a knowledge base that cannot be reached or read."""
    return StoreError(
        f"Cannot open the knowledge base at {redact(url)}: {first_line(exc)}. "
        "Expected a reachable database; check MODELSCALE_DB."
    )


def sqlite_path(url: URL) -> pathlib.Path | None:
    """The file of a SQLite URL; None for other backends and in-memory databases."""
    if url.get_backend_name() != "sqlite":
        return None
    db = url.database
    if not db or db == ":memory:" or db.startswith("file:"):
        return None
    return pathlib.Path(db)


def prepare_sqlite_dir(url: URL) -> None:
    """Create the SQLite file's directory, and fail early when it cannot be written."""
    path = sqlite_path(url)
    if path is None:
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreError(
            f"Cannot create the knowledge base directory {path.parent}: {exc.strerror}. "
            "Expected a writable location; set MODELSCALE_DB to e.g. sqlite:////tmp/modelscale.db."
        ) from exc
    probe = path if path.exists() else path.parent
    if not os.access(probe, os.W_OK):
        raise StoreError(
            f"The knowledge base {path} is not writable (permission denied on {probe}). "
            "Expected a writable location; set MODELSCALE_DB to e.g. sqlite:////tmp/modelscale.db."
        )


def connect_engine(url: URL, *, connect_timeout_s: float = 5.0) -> Engine:
    """An engine for ``url`` with the knowledge base's driver settings (no connection made yet)."""
    connect_args: dict[str, Any] = {}
    if url.get_backend_name() == "sqlite":
        connect_args["timeout"] = 30  # concurrent writers (replicas, tests) wait, not fail
    elif url.get_backend_name() == "postgresql":
        connect_args["connect_timeout"] = max(1, int(connect_timeout_s))
    try:
        return create_engine(url, connect_args=connect_args)
    except SQLAlchemyError as exc:
        raise cannot_open(url, exc) from exc
    except ModuleNotFoundError as exc:
        raise StoreError(
            f"No database driver for {redact(url)} ({exc.name} is not installed)."
        ) from exc
