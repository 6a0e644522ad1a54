"""Knowledge bases as released modelscale versions wrote them, and test-only migration scripts."""

from __future__ import annotations

import itertools
import os
import pathlib
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import create_engine, inspect, text

from modelscale.store.engine import normalise_url
from modelscale.store.migrate import MIGRATIONS, Migrations

__all__ = [
    "DATA",
    "FAILS",
    "PROBE",
    "RUN_COLUMNS",
    "SLOW",
    "copy_sqlite_fixture",
    "load_pg_dump",
    "migrations_with",
    "pg_database",
    "revision_of",
    "schema_snapshot",
    "table_rows",
]

DATA = pathlib.Path(__file__).resolve().parents[1] / "data"

RUN_COLUMNS = (
    "id, kind, model_version, created_at, status, params, results, machine, parent_run_id, note"
)

# A revision a later release might write: a table, a column, and a type change that SQLite can only
# make by rebuilding the runs table (batch mode), so the data has to survive a copy.
PROBE = """
import sqlalchemy as sa
from alembic import op

revision = "9001_probe"
down_revision = "0001_baseline"


def upgrade():
    op.create_table(
        "probe_notes",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("run_id", sa.Integer(), sa.ForeignKey("runs.id", ondelete="CASCADE")),
    )
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("probe", sa.Text(), nullable=True))
        batch.alter_column("status", existing_type=sa.String(16), type_=sa.String(32))


def downgrade():
    pass
"""

# The same changes, then a failure: none of it may stay.
FAILS = """
import sqlalchemy as sa
from alembic import op

revision = "9002_fails"
down_revision = "0001_baseline"


def upgrade():
    op.create_table("probe_notes", sa.Column("id", sa.Integer(), primary_key=True))
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("probe", sa.Text(), nullable=True))
        batch.alter_column("status", existing_type=sa.String(16), type_=sa.String(32))
    op.execute("UPDATE runs SET note = 'half-migrated'")
    raise RuntimeError("probe migration failed on purpose")


def downgrade():
    pass
"""

# A slow migration, so that a second process arrives while the first one migrates.
SLOW = """
import time

import sqlalchemy as sa
from alembic import op

revision = "9003_slow"
down_revision = "0001_baseline"


def upgrade():
    op.create_table("slow_probe", sa.Column("id", sa.Integer(), primary_key=True))
    time.sleep(1.5)


def downgrade():
    pass
"""


def migrations_with(where: pathlib.Path, *revisions: str) -> Migrations:
    """The packaged migrations plus ``revisions`` (script texts), in a copy under ``where``."""
    location = where / "migrations"
    shutil.copytree(MIGRATIONS.location, location, ignore=shutil.ignore_patterns("__pycache__"))
    head = MIGRATIONS.head
    for script in revisions:
        # The probes follow whatever the packaged head is.
        script = script.replace('down_revision = "0001_baseline"', f'down_revision = "{head}"')
        head = script.split('revision = "', 1)[1].split('"', 1)[0]
        (location / "versions" / f"{head}.py").write_text(script)
    return Migrations(location=location, head=head)


def copy_sqlite_fixture(where: pathlib.Path, version: str = "0.1.0") -> pathlib.Path:
    """A writable copy of the SQLite knowledge base ``version`` wrote."""
    where.mkdir(parents=True, exist_ok=True)
    target = where / f"kb-{version}.sqlite"
    shutil.copyfile(DATA / f"kb-{version}.sqlite", target)
    return target


_names = itertools.count()


@contextmanager
def pg_database(server_url: str) -> Iterator[str]:
    """A fresh, empty database on the PostgreSQL test server, dropped afterwards."""
    url = normalise_url(server_url)
    name = f"kb_{os.getpid()}_{next(_names)}"
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield url.set(database=name, query={}).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def load_pg_dump(url: str, version: str = "0.1.0") -> None:
    """Load the plain pg_dump ``version`` wrote into the (empty) database at ``url``."""
    # psql meta-commands (\\restrict) are for psql; the rest is SQL that psycopg runs as is.
    dump = (DATA / f"kb-{version}.postgresql.sql").read_text()
    sql = "\n".join(line for line in dump.splitlines() if not line.startswith("\\"))
    engine = create_engine(normalise_url(url))
    raw = engine.raw_connection()
    try:
        raw.cursor().execute(sql)
        raw.commit()
    finally:
        raw.close()
        engine.dispose()


def table_rows(url: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of the 0.1.0 tables, in the 0.1.0 columns, as the driver returns them."""
    engine = create_engine(normalise_url(url))
    try:
        with engine.connect() as conn:
            return {
                "runs": [
                    tuple(r)
                    for r in conn.execute(text(f"SELECT {RUN_COLUMNS} FROM runs ORDER BY id"))
                ],
                "model_versions": [
                    tuple(r)
                    for r in conn.execute(
                        text(
                            "SELECT sha256, name, path, size_bytes, parent_sha256, created_at, meta"
                            " FROM model_versions ORDER BY sha256"
                        )
                    )
                ],
            }
    finally:
        engine.dispose()


def revision_of(url: str) -> list[str] | None:
    """The rows of alembic_version, or None when the table is absent."""
    engine = create_engine(normalise_url(url))
    try:
        with engine.connect() as conn:
            if not inspect(conn).has_table("alembic_version"):
                return None
            return list(conn.execute(text("SELECT version_num FROM alembic_version")).scalars())
    finally:
        engine.dispose()


def schema_snapshot(url: str) -> dict[str, Any]:
    """Tables, columns with their DDL types, keys, indexes and foreign keys, as reflected."""
    engine = create_engine(normalise_url(url))
    try:
        with engine.connect() as conn:
            insp = inspect(conn)
            out: dict[str, Any] = {}
            for table in sorted(set(insp.get_table_names()) - {"alembic_version"}):
                out[table] = {
                    "columns": [
                        (
                            c["name"],
                            c["type"].compile(dialect=engine.dialect),
                            c["nullable"],
                            c.get("default"),
                        )
                        for c in insp.get_columns(table)
                    ],
                    "pk": insp.get_pk_constraint(table)["constrained_columns"],
                    "indexes": sorted(
                        (i["name"], tuple(i["column_names"]), bool(i["unique"]))
                        for i in insp.get_indexes(table)
                    ),
                    "fks": sorted(
                        (
                            tuple(f["constrained_columns"]),
                            f["referred_table"],
                            tuple(f["referred_columns"]),
                            tuple(sorted(f["options"].items())),
                        )
                        for f in insp.get_foreign_keys(table)
                    ),
                    "unique": sorted(
                        tuple(u["column_names"]) for u in insp.get_unique_constraints(table)
                    ),
                }
            return out
    finally:
        engine.dispose()
