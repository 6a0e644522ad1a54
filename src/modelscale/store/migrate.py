"""Versions of the knowledge base schema: Alembic migrations, run when a store opens or on demand.

What opening a store does, by what the database holds:

- nothing of ours: the tables are created by migrating to head, which also stamps the version;
- the tables but no ``alembic_version`` (written by modelscale 0.1.0): stamped as ``0001_baseline``;
- an older revision: SQLite is backed up beside its file (sqlite3's online backup) and upgraded;
  PostgreSQL is left alone and the error says to run ``modelscale db upgrade``;
- a revision this install does not know (a newer modelscale wrote it): an error says to upgrade
  modelscale.

Every upgrade runs in one transaction under a lock (SQLite ``BEGIN IMMEDIATE``, a PostgreSQL advisory
lock), so two processes opening the same database wait for each other, the second finds it at head,
and a failed migration leaves the database at its old revision. pysqlite does not put DDL in a
transaction by itself; the migration connection turns its implicit transactions off and begins one
explicitly. An up-to-date database costs one query of ``alembic_version`` and no Alembic import.

To add a revision: change ``schema.py``, write ``versions/<rev>_<slug>.py`` (``alembic.command.revision``
with ``MIGRATIONS.config(url=...)``, ``autogenerate=True`` and ``rev_id`` drafts one), and set
``MIGRATIONS``' head to it.
"""

from __future__ import annotations

import datetime as dt
import enum
import functools
import logging
import pathlib
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from modelscale.errors import StoreError
from modelscale.store.engine import (
    cannot_open,
    connect_engine,
    first_line,
    normalise_url,
    prepare_sqlite_dir,
    redact,
    sqlite_path,
)

if TYPE_CHECKING:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

__all__ = [
    "BASELINE",
    "MIGRATIONS",
    "Migrations",
    "SchemaState",
    "SchemaStatus",
    "Upgrade",
    "ensure_schema",
    "schema_status",
    "upgrade",
]

log = logging.getLogger("modelscale.store")

BASELINE = "0001_baseline"
"""The revision of the schema modelscale 0.1.0 wrote before the schema had versions."""

_TABLES = frozenset({"model_versions", "runs"})
_VERSION_TABLE = "alembic_version"
# One advisory lock per PostgreSQL server serialises knowledge base migrations ("modelsc").
_PG_LOCK = 0x6D6F64656C7363


@dataclass(frozen=True)
class Migrations:
    """Where the migration scripts live and the revision the tables in ``schema.py`` are at."""

    location: pathlib.Path
    head: str

    def config(self, *, connection: Connection | None = None, url: str | None = None) -> Config:
        """An Alembic config for these scripts, on a connection or a URL; no alembic.ini needed."""
        from alembic.config import Config

        cfg = Config()
        cfg.set_main_option("script_location", str(self.location).replace("%", "%%"))
        if url is not None:
            cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
        if connection is not None:
            cfg.attributes["connection"] = connection
        return cfg


MIGRATIONS = Migrations(location=pathlib.Path(__file__).with_name("migrations"), head="0002_audit")
"""The migrations shipped in the package; a test checks ``head`` against the scripts."""


class SchemaState(enum.Enum):
    """Where a database stands against the migrations this install knows."""

    EMPTY = "empty"  # none of the knowledge base tables
    UNVERSIONED = "unversioned"  # the tables without alembic_version: modelscale 0.1.0
    CURRENT = "current"  # at head
    BEHIND = "behind"  # at an older revision
    NEWER = "newer"  # at a revision this install does not know


@dataclass(frozen=True)
class SchemaStatus:
    """A database's schema revision and this install's head."""

    url: str
    state: SchemaState
    revision: str | None
    head: str

    @property
    def behind(self) -> bool:
        """Whether ``modelscale db upgrade`` would change the database."""
        return self.state in (SchemaState.EMPTY, SchemaState.BEHIND) or (
            self.state is SchemaState.UNVERSIONED and self.head != BASELINE
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "url": self.url,
            "state": self.state.value,
            "revision": self.revision,
            "head": self.head,
            "behind": self.behind,
        }


@dataclass(frozen=True)
class Upgrade:
    """What bringing a database to head did."""

    url: str
    from_revision: str | None  # None: the database was empty
    to_revision: str
    stamped: bool  # an unversioned 0.1.0 database was stamped as BASELINE
    backup: pathlib.Path | None  # the SQLite file as it was before, when it was upgraded

    @property
    def changed(self) -> bool:
        """Whether anything was written."""
        return self.stamped or self.from_revision != self.to_revision


@functools.cache
def _script(location: pathlib.Path) -> ScriptDirectory:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(Migrations(location, "").config())


def _read_version(conn: Connection) -> tuple[str, ...]:
    return tuple(conn.execute(text(f"SELECT version_num FROM {_VERSION_TABLE}")).scalars())


def _version(conn: Connection) -> tuple[str, ...] | None:
    """The revisions in alembic_version, or None when it cannot be read (no such table)."""
    try:
        return _read_version(conn)
    except DBAPIError:
        conn.rollback()  # PostgreSQL refuses further statements in a failed transaction
        return None


def ensure_schema(engine: Engine, *, migrations: Migrations | None = None) -> Upgrade | None:
    """Bring the database behind ``engine`` to head as opening a store does; None if it already was.

    Raises:
        StoreError: the database cannot be reached, is newer than this install, is a PostgreSQL
            database behind head, or a migration failed (it is then at its old revision).
    """
    migrations = migrations or MIGRATIONS
    try:
        with engine.connect() as conn:
            if _version(conn) == (migrations.head,):
                return None
    except SQLAlchemyError as exc:
        raise cannot_open(engine.url, exc) from exc
    done = _migrate(engine, migrations, allow_upgrade=sqlite_path(engine.url) is not None)
    if done.backup is not None:
        log.warning(
            "Upgraded the knowledge base %s from revision %s to %s; the file as it was is kept at %s",
            done.url,
            done.from_revision,
            done.to_revision,
            done.backup,
        )
    elif done.changed:
        log.info("Knowledge base %s is at revision %s", done.url, done.to_revision)
    return done


def _resolve(url: str | None, connect_timeout_s: float | None) -> tuple[str, float]:
    from modelscale.config import get_settings

    settings = get_settings()
    return url or settings.db, connect_timeout_s or settings.db_connect_timeout_s


def upgrade(
    url: str | None = None,
    *,
    connect_timeout_s: float | None = None,
    migrations: Migrations | None = None,
) -> Upgrade:
    """Upgrade the knowledge base at ``url`` (default ``MODELSCALE_DB``) to head, on any backend.

    This is ``modelscale db upgrade``: unlike opening a store, it upgrades PostgreSQL too.

    Raises:
        InvalidInput: ``url`` is not a SQLAlchemy URL.
        StoreError: as ``ensure_schema``, except for a PostgreSQL database behind head.
    """
    url, timeout = _resolve(url, connect_timeout_s)
    parsed = normalise_url(url)
    prepare_sqlite_dir(parsed)
    engine = connect_engine(parsed, connect_timeout_s=timeout)
    try:
        return _migrate(engine, migrations or MIGRATIONS, allow_upgrade=True)
    finally:
        engine.dispose()


def schema_status(
    url: str | None = None,
    *,
    connect_timeout_s: float | None = None,
    migrations: Migrations | None = None,
) -> SchemaStatus:
    """The revision of the knowledge base at ``url`` (default ``MODELSCALE_DB``); writes nothing.

    Raises:
        InvalidInput: ``url`` is not a SQLAlchemy URL.
        StoreError: the database cannot be reached or read.
    """
    migrations = migrations or MIGRATIONS
    url, timeout = _resolve(url, connect_timeout_s)
    parsed = normalise_url(url)
    head = _script(migrations.location).get_current_head() or ""
    path = sqlite_path(parsed)
    if path is not None and not path.exists():  # connecting would create the file
        return SchemaStatus(redact(parsed), SchemaState.EMPTY, None, head)
    engine = connect_engine(parsed, connect_timeout_s=timeout)
    try:
        with engine.connect() as conn:
            state, revision = _inspect(conn, migrations)
    except SQLAlchemyError as exc:
        raise cannot_open(parsed, exc) from exc
    finally:
        engine.dispose()
    return SchemaStatus(redact(parsed), state, revision, head)


def _inspect(conn: Connection, migrations: Migrations) -> tuple[SchemaState, str | None]:
    script = _script(migrations.location)
    head = script.get_current_head()
    # Looked up rather than tried: a failed statement would end the locked PostgreSQL transaction.
    names = set(inspect(conn).get_table_names())
    revisions = _read_version(conn) if _VERSION_TABLE in names else ()
    if not revisions:  # no version table, or an empty one
        tables = _TABLES & names
        if not tables:
            return SchemaState.EMPTY, None
        if tables != _TABLES:
            raise StoreError(
                f"The knowledge base at {redact(conn.engine.url)} has the table "
                f"{', '.join(sorted(tables))} but not {', '.join(sorted(_TABLES - tables))}, and "
                "no schema version: modelscale did not write it, or it is damaged. Expected an "
                "empty database or one modelscale wrote; set MODELSCALE_DB to another database."
            )
        return SchemaState.UNVERSIONED, None
    revision = ", ".join(revisions)
    known = {s.revision for s in script.walk_revisions()}
    if any(r not in known for r in revisions):
        return SchemaState.NEWER, revision
    if revisions == (head,):
        return SchemaState.CURRENT, revision
    return SchemaState.BEHIND, revision


@contextmanager
def _locked(conn: Connection) -> Iterator[None]:
    """One transaction that holds the migration lock until it commits or rolls back."""
    if conn.dialect.name == "sqlite":
        dbapi: Any = conn.connection.dbapi_connection
        implicit = dbapi.isolation_level
        # pysqlite runs DDL outside any transaction unless we begin one ourselves.
        dbapi.isolation_level = None
        try:
            with conn.begin():
                conn.exec_driver_sql("BEGIN IMMEDIATE")  # waits (timeout=30) for other writers
                yield
        finally:
            dbapi.isolation_level = implicit
        return
    with conn.begin():
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK})
        yield


def _migrate(engine: Engine, migrations: Migrations, *, allow_upgrade: bool) -> Upgrade:
    from alembic import command

    url = redact(engine.url)
    head = _script(migrations.location).get_current_head() or ""
    try:
        with engine.connect() as conn, _locked(conn):
            state, revision = _inspect(conn, migrations)
            if state is SchemaState.NEWER:
                raise StoreError(
                    f"The knowledge base at {url} is at schema revision {revision}, which this "
                    f"modelscale does not know (the newest it knows is {head}): a newer modelscale "
                    "wrote it. Upgrade modelscale (pip install -U modelscale) to use it."
                )
            start = BASELINE if state is SchemaState.UNVERSIONED else revision
            if state is SchemaState.CURRENT:
                return Upgrade(url, revision, head, stamped=False, backup=None)
            if start is not None and start != head and not allow_upgrade:
                raise StoreError(
                    f"The knowledge base at {url} is at schema revision {start}; this modelscale "
                    f"needs {head}. Run `modelscale db upgrade` with MODELSCALE_DB={url} "
                    "(or --url) to upgrade it."
                )
            path = sqlite_path(engine.url)
            backup = None
            if start is not None and start != head and path is not None:
                backup = _backup(path, start)  # before our first write: other readers still can
            cfg = migrations.config(connection=conn)
            try:
                if state is SchemaState.UNVERSIONED:
                    command.stamp(cfg, BASELINE)
                if start != head:
                    command.upgrade(cfg, head)
            except Exception as exc:
                kept = f" The backup written before it is kept: {backup}." if backup else ""
                raise StoreError(
                    f"Upgrading the knowledge base at {url} from {start or 'empty'} to {head} "
                    f"failed: {first_line(exc)}. Nothing was changed: it is still at "
                    f"{revision or start or 'empty'}.{kept}"
                ) from exc
            return Upgrade(
                url, start, head, stamped=state is SchemaState.UNVERSIONED, backup=backup
            )
    except SQLAlchemyError as exc:
        raise cannot_open(engine.url, exc) from exc


def _backup(path: pathlib.Path, revision: str) -> pathlib.Path:
    """Copy the SQLite file beside itself with sqlite3's online backup (safe while it is open)."""
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    target = path.with_name(f"{path.name}.backup-{revision}-{stamp}")
    n = 1
    while target.exists():
        n += 1
        target = path.with_name(f"{path.name}.backup-{revision}-{stamp}-{n}")
    try:
        source = sqlite3.connect(path, timeout=30)
        try:
            copy = sqlite3.connect(target)
            try:
                source.backup(copy)
            finally:
                copy.close()
        finally:
            source.close()
    except (sqlite3.Error, OSError) as exc:
        target.unlink(missing_ok=True)
        raise StoreError(
            f"Cannot back up the knowledge base {path} to {target} before upgrading it: {exc}. "
            "Nothing was changed. Expected a writable directory beside the database file."
        ) from exc
    return target
