"""The scripts a fresh clone starts with: they say how to reach the installed command, and the test
database they start is quiet about private folders and stops again."""

from __future__ import annotations

import glob
import os
import pathlib
import shutil
import socket
import subprocess
import tempfile

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
SCRIPTS = ROOT / "scripts"
ACTIVATE = "source .venv/bin/activate"


@pytest.mark.parametrize("script", ["demo", "test"])
def test_the_scripts_end_by_saying_how_to_activate_the_venv(script: str) -> None:
    text = (SCRIPTS / script).read_text()
    # Said after the work, whatever its exit status: the last lines echo it, then exit.
    tail = text.rstrip().splitlines()[-3:]
    assert ACTIVATE in tail[-2] and tail[-2].startswith("echo ") and tail[-1].startswith("exit ")
    assert "exec " not in text  # an exec'd command would never reach the hint


def test_the_readme_activates_the_venv_and_works_outside_the_clone() -> None:
    readme = (ROOT / "README.md").read_text()
    quickstart = readme.split("## Quickstart", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    lines = [line for line in quickstart.strip().splitlines() if not line.startswith("#")]
    assert lines[0].startswith(ACTIVATE)
    assert lines[1].startswith("mkdir -p ~/") and "&& cd ~/" in lines[1]


def test_the_test_script_stops_the_database_it_started() -> None:
    text = (SCRIPTS / "test").read_text()
    assert "if ! scripts/start-postgres --running; then" in text
    assert "trap 'scripts/start-postgres --stop' EXIT" in text


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
@pytest.mark.skipif(
    not glob.glob("/usr/lib/postgresql/*/bin/initdb"), reason="no PostgreSQL server binaries"
)
def test_start_postgres_from_a_private_folder_is_quiet_and_stops(tmp_path: pathlib.Path) -> None:
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    # Not under tmp_path: the postgres user must be able to reach its data folder.
    root = pathlib.Path(tempfile.mkdtemp(prefix="modelscale-pg-test-", dir="/tmp"))
    env = {**os.environ, "PGROOT": str(root), "PGPORT": str(_free_port())}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(SCRIPTS / "start-postgres"), *args],
            cwd=private,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    try:
        started = run()
        assert started.returncode == 0, started.stderr
        assert started.stderr == ""  # no "could not change directory ...: Permission denied"
        assert started.stdout.strip().endswith(f":{env['PGPORT']}/modelscale_test")
        assert run("--running").returncode == 0
        again = run()  # already running: the same URL, nothing restarted
        assert again.stdout == started.stdout and again.stderr == ""
        stopped = run("--stop")
        assert stopped.returncode == 0 and stopped.stderr == ""
        assert run("--running").returncode == 1
        assert run("--stop").returncode == 0  # stopping a stopped server is fine
    finally:
        run("--stop")
        shutil.rmtree(root, ignore_errors=True)
