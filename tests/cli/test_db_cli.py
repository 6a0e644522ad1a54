from __future__ import annotations

import json
import pathlib

import pytest
from sqlalchemy import create_engine, text

from modelscale.config import get_settings
from modelscale.store import Store, migrate
from modelscale.store.engine import normalise_url
from tests.cli.helpers import invoke, invoke_json
from tests.store.kb_fixtures import FAILS, PROBE, copy_sqlite_fixture, migrations_with, revision_of

HEAD = migrate.MIGRATIONS.head


def default_db() -> pathlib.Path:
    """The file tests/conftest.py points MODELSCALE_DB at."""
    return pathlib.Path(normalise_url(get_settings().db).database or "")


def test_current_on_a_new_database_creates_nothing() -> None:
    shown = invoke("db", "current")
    assert shown.exit_code == 0, shown.output
    assert "revision  none (no knowledge base tables yet)" in shown.stdout
    assert f"head      {HEAD}" in shown.stdout
    assert "behind    yes: run `modelscale db upgrade`" in shown.stdout
    assert invoke_json("db", "current") == {
        "url": f"sqlite:///{default_db()}",
        "state": "empty",
        "revision": None,
        "head": HEAD,
        "behind": True,
    }
    assert not default_db().exists()


def test_upgrade_creates_the_schema_then_has_nothing_to_do() -> None:
    first = invoke("db", "upgrade")
    assert first.exit_code == 0, first.output
    assert f"sqlite:///{default_db()}: empty -> {HEAD}" in first.stdout
    again = invoke("db", "upgrade")
    assert again.exit_code == 0
    assert f"is already at {HEAD}; nothing to do." in again.stdout
    status = invoke_json("db", "current")
    assert (status["state"], status["revision"], status["behind"]) == (
        "current",
        HEAD,
        False,
    )


def test_a_0_1_0_file_is_stamped_then_upgraded(tmp_path: pathlib.Path) -> None:
    url = f"sqlite:///{copy_sqlite_fixture(tmp_path)}"
    shown = invoke("db", "current", "--url", url)
    assert "revision  none (written by modelscale 0.1.0: taken as 0001_baseline)" in shown.stdout
    assert "behind    yes" in shown.stdout  # the audit table came after 0.1.0
    done = invoke("db", "upgrade", "--url", url)
    assert done.exit_code == 0, done.output
    assert f"0001_baseline -> {HEAD}" in done.stdout  # stamped, then upgraded (with a backup)
    assert "backup" in done.stdout
    assert invoke_json("db", "current", "--url", url)["state"] == "current"


def test_upgrade_of_an_older_sqlite_file_names_its_backup(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = copy_sqlite_fixture(tmp_path / "kb")
    monkeypatch.setattr(migrate, "MIGRATIONS", migrations_with(tmp_path, PROBE))
    status = invoke_json("db", "current", "--url", f"sqlite:///{path}")
    assert (status["head"], status["behind"]) == ("9001_probe", True)
    done = invoke("db", "upgrade", "--url", f"sqlite:///{path}")
    assert done.exit_code == 0, done.output
    assert "0001_baseline -> 9001_probe" in done.stdout  # stamped, then every revision
    [backup] = path.parent.glob("*.backup-*")
    assert f"backup of the previous file: {backup}" in done.stdout


def test_upgrade_by_modelscale_db_on_both_backends(
    db_url: str, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MODELSCALE_DB", db_url)
    get_settings.cache_clear()
    Store(db_url).close()
    monkeypatch.setattr(migrate, "MIGRATIONS", migrations_with(tmp_path, PROBE))
    assert invoke_json("db", "current")["revision"] == HEAD
    done = invoke("db", "upgrade")
    assert done.exit_code == 0, done.output
    assert f"{HEAD} -> 9001_probe" in done.stdout
    assert ("backup" in done.stdout) == db_url.startswith("sqlite")
    assert revision_of(db_url) == ["9001_probe"]


# -- bad input -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "command", [["db", "current"], ["db", "current", "--json"], ["db", "upgrade"]]
)
def test_not_a_url(command: list[str]) -> None:
    result = invoke(*command, "--url", "this is not a url")
    assert result.exit_code == 2
    assert "is not a SQLAlchemy URL" in result.stderr
    assert result.stdout == ""


@pytest.mark.parametrize(
    "command", [["db", "current"], ["db", "current", "--json"], ["db", "upgrade"]]
)
def test_unreachable_postgresql(command: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELSCALE_DB_CONNECT_TIMEOUT_S", "1")
    get_settings.cache_clear()
    result = invoke(*command, "--url", "postgresql://nobody:hunter2@127.0.0.1:1/x")
    assert result.exit_code == 2
    assert "Cannot open the knowledge base at postgresql+psycopg://nobody:***@127.0.0.1:1/x" in (
        result.stderr
    )
    assert "hunter2" not in result.output


@pytest.mark.parametrize("command", [["db", "current"], ["db", "upgrade"]])
def test_no_driver(command: list[str]) -> None:
    result = invoke(*command, "--url", "mysql://nobody@127.0.0.1/x")
    assert result.exit_code == 2
    assert "No database driver for mysql://nobody@127.0.0.1/x" in result.stderr


def test_a_database_from_a_newer_modelscale(db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    Store(db_url).close()
    engine = create_engine(normalise_url(db_url))
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '9999_future'"))
    engine.dispose()
    refused = invoke("db", "upgrade", "--url", db_url)
    assert refused.exit_code == 2
    assert "is at schema revision 9999_future, which this modelscale does not know" in (
        refused.stderr
    )
    assert "Upgrade modelscale" in refused.stderr
    # current reports it (exit 0): it is a state to show, not a mistake in the command
    shown = invoke("db", "current", "--url", db_url)
    assert shown.exit_code == 0
    assert "9999_future (unknown here: a newer modelscale wrote it; upgrade modelscale)" in (
        shown.stdout
    )
    status = json.loads(invoke("db", "current", "--url", db_url, "--json").stdout)
    assert (status["state"], status["behind"]) == ("newer", False)
    monkeypatch.setenv("MODELSCALE_DB", db_url)
    get_settings.cache_clear()
    runs = invoke("runs")  # and commands that open the store refuse it
    assert runs.exit_code == 2
    assert "a newer modelscale wrote it" in runs.stderr


def test_a_failed_upgrade_names_the_backup(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = copy_sqlite_fixture(tmp_path / "kb")
    monkeypatch.setattr(migrate, "MIGRATIONS", migrations_with(tmp_path, FAILS))
    result = invoke("db", "upgrade", "--url", f"sqlite:///{path}")
    assert result.exit_code == 2
    [backup] = path.parent.glob("*.backup-*")
    assert "probe migration failed on purpose. Nothing was changed" in result.stderr
    assert str(backup) in result.stderr
    assert revision_of(f"sqlite:///{path}") is None  # still as 0.1.0 left it


def test_unknown_option_and_missing_command() -> None:
    assert invoke("db", "upgrade", "--json").exit_code == 2
    assert invoke("db", "current", "--url").exit_code == 2  # --url needs a value
    assert invoke("db", "downgrade").exit_code == 2
