"""Schema versions: opening and upgrading empty, 0.1.0, older, newer and failing databases."""

from __future__ import annotations

import datetime as dt
import json
import logging
import pathlib
import sqlite3
import subprocess
import sys
import time
import tomllib
from contextlib import ExitStack
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, create_engine, event, text

from modelscale.errors import InvalidInput, StoreError
from modelscale.store import SchemaState, Store, migrate, schema_status, upgrade
from modelscale.store.engine import normalise_url
from modelscale.store.schema import Base
from tests.store.kb_fixtures import (
    FAILS,
    PROBE,
    SLOW,
    copy_sqlite_fixture,
    migrations_with,
    pg_database,
    revision_of,
    schema_snapshot,
    table_rows,
)
from tests.store.test_api import NoteResult

REPO = pathlib.Path(__file__).resolve().parents[2]

LATER_TABLES = frozenset({"audit", "sqlite_sequence"})
"""Tables revisions after the baseline add (and SQLite's AUTOINCREMENT bookkeeping)."""


def use(monkeypatch: pytest.MonkeyPatch, migrations: migrate.Migrations) -> None:
    """Make ``Store`` and the db functions use ``migrations`` instead of the packaged ones."""
    monkeypatch.setattr(migrate, "MIGRATIONS", migrations)


def set_revision(url: str, revision: str) -> None:
    engine = create_engine(normalise_url(url))
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = :r"), {"r": revision})
    engine.dispose()


# -- the scripts -------------------------------------------------------------------------------------


def test_the_packaged_head_is_the_scripts_only_head() -> None:
    script = migrate._script(migrate.MIGRATIONS.location)
    assert script.get_heads() == [migrate.MIGRATIONS.head]
    assert script.get_base() == migrate.BASELINE


def test_the_scripts_ship_as_package_data() -> None:
    globs = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-data"
    ]["modelscale"]
    package = REPO / "src" / "modelscale"
    files = [
        p
        for p in migrate.MIGRATIONS.location.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    ]
    assert {"env.py", "script.py.mako", "0001_baseline.py"} <= {p.name for p in files}
    for path in files:
        relative = path.relative_to(package)
        assert any(relative.match(g) for g in globs), f"{relative} is not package data"


# -- the baseline is what 0.1.0 wrote ----------------------------------------------------------------


def test_an_empty_database_is_migrated_to_what_the_models_describe(db_url: str) -> None:
    Store(db_url).close()
    assert revision_of(db_url) == [migrate.MIGRATIONS.head]
    engine = create_engine(normalise_url(db_url))
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        assert compare_metadata(context, Base.metadata) == []
    engine.dispose()


def test_the_baseline_is_the_schema_0_1_0_wrote(kb_0_1_0: str, tmp_path: pathlib.Path) -> None:
    with ExitStack() as stack:
        if kb_0_1_0.startswith("sqlite"):
            empty = f"sqlite:///{tmp_path / 'empty.db'}"
        else:
            empty = stack.enter_context(pg_database(kb_0_1_0))
        upgrade(empty)
        assert revision_of(empty) == [migrate.MIGRATIONS.head]
        old = schema_snapshot(kb_0_1_0)
        new = schema_snapshot(empty)
        # The baseline's tables are what 0.1.0 wrote; later revisions only add tables.
        assert {t: new[t] for t in old} == old
        assert set(new) - set(old) <= LATER_TABLES


def test_the_baseline_ddl_on_sqlite_is_0_1_0s_text(tmp_path: pathlib.Path) -> None:
    Store(f"sqlite:///{tmp_path / 'new.db'}").close()
    later = ", ".join(f"'{t}'" for t in ("alembic_version", *LATER_TABLES))
    query = f"SELECT type, name, sql FROM sqlite_master WHERE tbl_name NOT IN ({later})"
    new = sorted(sqlite3.connect(tmp_path / "new.db").execute(query).fetchall())
    old = sorted(sqlite3.connect(copy_sqlite_fixture(tmp_path)).execute(query).fetchall())
    assert new == old


# -- a 0.1.0 database --------------------------------------------------------------------------------


def check_0_1_0_content(store: Store, before: dict[str, list[tuple[Any, ...]]]) -> None:
    """The 0.1.0 fixture's runs and models, read back through the API, as they were stored."""
    runs = store.runs()
    assert [r.id for r in runs] == [r[0] for r in reversed(before["runs"])] == list(range(7, 0, -1))
    by_id = {r.id: r for r in runs}
    assert {i: r.parent_run_id for i, r in by_id.items() if r.parent_run_id} == {
        2: 1,
        3: 2,
        4: 3,
        5: 4,
    }
    assert [by_id[i].kind for i in range(1, 8)] == [
        "profile",
        "compress",
        "profile",
        "plan",
        "load",
        "note",
        "note",
    ]
    assert (by_id[5].status, by_id[5].note) == ("failed", "port 8000 was taken")
    assert by_id[6].results["text"] == "pruned by hand: ünïcode — 雪"
    assert by_id[7].params == {"empty": {}, "none": None, "big": 2**53}
    assert by_id[2].results["trials"][1] == {"recipe": "prune50", "drop": None}
    assert by_id[1].results["model"]["name"] == "mlp"
    for raw in before["runs"]:
        run = by_id[raw[0]]
        params, results = (json.loads(v) if isinstance(v, str) else v for v in raw[5:7])
        assert (run.params, run.results) == (params, results)
        stored = raw[3] if isinstance(raw[3], dt.datetime) else dt.datetime.fromisoformat(raw[3])
        assert run.created_at == stored.replace(tzinfo=stored.tzinfo or dt.UTC)
    pruned = next(m for m in store.models() if m.name == "mlp.int8.pruned")
    assert [m.name for m in store.lineage(pruned.sha256)] == ["mlp.int8.pruned", "mlp.int8", "mlp"]
    assert len(store.models()) == len(before["model_versions"]) == 3


def test_opening_a_0_1_0_database_stamps_it_and_keeps_every_run(kb_0_1_0: str) -> None:
    before = table_rows(kb_0_1_0)
    assert revision_of(kb_0_1_0) is None
    assert schema_status(kb_0_1_0).state is SchemaState.UNVERSIONED
    if not kb_0_1_0.startswith("sqlite"):
        with pytest.raises(StoreError, match="modelscale db upgrade"):
            Store(kb_0_1_0)  # PostgreSQL behind head is upgraded by the operator, not on open
        upgrade(kb_0_1_0)
    store = Store(kb_0_1_0)  # SQLite: stamped at the baseline, then upgraded to head
    assert revision_of(kb_0_1_0) == [migrate.MIGRATIONS.head]
    after = table_rows(kb_0_1_0)
    assert {t: after[t] for t in before} == before
    check_0_1_0_content(store, before)
    assert store.record(NoteResult(text="after")) == 8  # ids go on where 0.1.0 stopped
    store.close()


def test_a_0_1_0_database_upgrades_with_every_run_intact(
    kb_0_1_0: str, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    use(monkeypatch, migrations_with(tmp_path, PROBE))
    before = table_rows(kb_0_1_0)
    done = upgrade(kb_0_1_0)
    assert (done.from_revision, done.to_revision, done.stamped) == (
        migrate.BASELINE,
        "9001_probe",
        True,
    )
    assert revision_of(kb_0_1_0) == ["9001_probe"]
    assert table_rows(kb_0_1_0) == before
    store = Store(kb_0_1_0)
    check_0_1_0_content(store, before)
    assert store.record(NoteResult(text="after")) == 8
    assert "probe_notes" in schema_snapshot(kb_0_1_0)
    store.close()


def test_opening_an_older_sqlite_file_backs_it_up_then_upgrades(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    path = copy_sqlite_fixture(tmp_path / "kb")
    url = f"sqlite:///{path}"
    before = table_rows(url)
    use(monkeypatch, migrations_with(tmp_path, PROBE))
    with caplog.at_level(logging.WARNING, logger="modelscale.store"):
        store = Store(url)
    check_0_1_0_content(store, before)
    assert revision_of(url) == ["9001_probe"]
    [backup] = path.parent.glob("kb-0.1.0.sqlite.backup-*")
    assert backup.name.startswith("kb-0.1.0.sqlite.backup-0001_baseline-2")
    assert str(backup) in caplog.text and "0001_baseline to 9001_probe" in caplog.text
    # the backup is a readable database as it was: 0.1.0, unversioned, every row
    backup_url = f"sqlite:///{backup}"
    assert sqlite3.connect(backup).execute("PRAGMA integrity_check").fetchone() == ("ok",)
    assert revision_of(backup_url) is None
    assert table_rows(backup_url) == before
    # opened again: at head, no second backup
    Store(url).close()
    assert len(list(path.parent.glob("*.backup-*"))) == 1


@pytest.mark.parametrize("kb_0_1_0", ["postgresql"], indirect=True)  # SQLite: upgraded on open
def test_postgresql_behind_head_is_not_upgraded_on_open(
    kb_0_1_0: str, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    use(monkeypatch, migrations_with(tmp_path, PROBE))
    with pytest.raises(
        StoreError,
        match=r"at schema revision 0001_baseline; this modelscale needs 9001_probe\. "
        r"Run `modelscale db upgrade` with MODELSCALE_DB=postgresql\+psycopg://modelscale@",
    ):
        Store(kb_0_1_0)
    assert revision_of(kb_0_1_0) is None  # not even stamped
    assert schema_status(kb_0_1_0).behind
    upgrade(kb_0_1_0)
    Store(kb_0_1_0).close()


# -- newer, failed, damaged ----------------------------------------------------------------------------


def test_a_database_from_a_newer_modelscale_fails_clearly(db_url: str) -> None:
    Store(db_url).close()
    set_revision(db_url, "9999_future")
    message = (
        r"is at schema revision 9999_future, which this modelscale does not know \(the newest it "
        rf"knows is {migrate.MIGRATIONS.head}\): a newer modelscale wrote it\. Upgrade modelscale"
    )
    with pytest.raises(StoreError, match=message):
        Store(db_url)
    with pytest.raises(StoreError, match=message):
        upgrade(db_url)
    status = schema_status(db_url)
    assert (status.state, status.revision, status.behind) == (
        SchemaState.NEWER,
        "9999_future",
        False,
    )
    assert revision_of(db_url) == ["9999_future"]


def test_a_failed_migration_leaves_the_database_as_it_was(
    kb_0_1_0: str, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    upgrade(kb_0_1_0)  # stamped at the baseline, then brought to this modelscale's head
    head = migrate.MIGRATIONS.head
    before = table_rows(kb_0_1_0)
    schema = schema_snapshot(kb_0_1_0)
    use(monkeypatch, migrations_with(tmp_path, FAILS))
    sqlite = kb_0_1_0.startswith("sqlite")
    with pytest.raises(StoreError) as info:
        if sqlite:
            Store(kb_0_1_0)  # upgraded on open
        else:
            upgrade(kb_0_1_0)
    message = str(info.value)
    assert f"from {head} to 9002_fails failed: probe migration failed on purpose" in message
    assert f"Nothing was changed: it is still at {head}." in message
    assert revision_of(kb_0_1_0) == [head]
    assert table_rows(kb_0_1_0) == before  # no 'half-migrated' notes
    assert schema_snapshot(kb_0_1_0) == schema  # no probe table, column or type change
    if sqlite:
        [backup] = tmp_path.glob(f"kb-0.1.0.sqlite.backup-{head}-*")
        assert f"The backup written before it is kept: {backup}." in message
        assert revision_of(f"sqlite:///{backup}") == [head]
    else:
        assert "backup" not in message


def test_half_a_knowledge_base_is_refused(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "half.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE runs (id INTEGER PRIMARY KEY)")
    with pytest.raises(
        StoreError, match="has the table runs but not model_versions, and no schema"
    ):
        Store(f"sqlite:///{path}")


def test_bad_urls() -> None:
    with pytest.raises(InvalidInput, match="not a SQLAlchemy URL"):
        upgrade("not a url")
    with pytest.raises(InvalidInput, match="not a SQLAlchemy URL"):
        schema_status("not a url")
    for call in (upgrade, schema_status):
        with pytest.raises(StoreError, match=r"Cannot open the knowledge base at postgresql"):
            call("postgresql://nobody:secret@127.0.0.1:1/x", connect_timeout_s=1)


def test_status_of_a_missing_sqlite_file_creates_nothing(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "no" / "kb.db"
    status = schema_status(f"sqlite:///{path}")
    assert (status.state, status.revision, status.behind) == (SchemaState.EMPTY, None, True)
    assert not path.parent.exists()


# -- cost and concurrency ------------------------------------------------------------------------------


def test_opening_an_up_to_date_database_is_one_query(db_url: str) -> None:
    Store(db_url).close()
    statements: list[str] = []

    def seen(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    event.listen(Engine, "before_cursor_execute", seen)
    try:
        Store(db_url).close()
    finally:
        event.remove(Engine, "before_cursor_execute", seen)
    ours = [s for s in statements if "select pg_catalog" not in s.lower() and "show " not in s]
    assert ours == ["SELECT version_num FROM alembic_version"]


def test_opening_an_up_to_date_database_does_not_load_alembic(tmp_path: pathlib.Path) -> None:
    url = f"sqlite:///{tmp_path / 'kb.db'}"
    Store(url).close()
    code = (
        "import sys; from modelscale.store import Store; "
        f"Store({url!r}).close(); print(sorted(m for m in sys.modules if m.startswith('alembic')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


_OPEN_AT = """
import pathlib, sys, time
from modelscale.store import Store, migrate
url, location, head, at = sys.argv[1:]
migrate.MIGRATIONS = migrate.Migrations(pathlib.Path(location), head)
time.sleep(max(0.0, float(at) - time.time()))
store = Store(url)
print(len(store.runs()))
"""


def open_in_two_processes(url: str, migrations: migrate.Migrations) -> list[str]:
    at = str(time.time() + 3)  # both are importing by then; they open within milliseconds
    argv = [sys.executable, "-c", _OPEN_AT, url, str(migrations.location), migrations.head, at]
    procs = [
        subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=120) for p in procs]
    for p, (_, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err
    return [out.strip() for out, _ in outs]


@pytest.mark.slow
def test_two_processes_opening_an_empty_database_migrate_it_once(
    db_url: str, tmp_path: pathlib.Path
) -> None:
    migrations = migrations_with(tmp_path, SLOW)
    assert open_in_two_processes(db_url, migrations) == ["0", "0"]
    assert revision_of(db_url) == ["9003_slow"]
    assert {"runs", "model_versions", "slow_probe"} <= set(schema_snapshot(db_url))


@pytest.mark.slow
def test_two_processes_opening_an_older_sqlite_file_upgrade_it_once(tmp_path: pathlib.Path) -> None:
    path = copy_sqlite_fixture(tmp_path / "kb")
    url = f"sqlite:///{path}"
    before = table_rows(url)
    migrations = migrations_with(tmp_path, SLOW)
    assert open_in_two_processes(url, migrations) == ["7", "7"]
    assert revision_of(url) == ["9003_slow"]
    assert table_rows(url) == before
    assert len(list(path.parent.glob("*.backup-*"))) == 1
