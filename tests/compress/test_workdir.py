"""The candidates' work folder: gone after a search, after a SIGTERM, and after a kill at the next
search; outputs readable as the umask allows."""

from __future__ import annotations

import os
import pathlib
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator

import numpy as np
import pytest

from modelscale.compress.atomic import atomic_copy, atomic_write_text
from modelscale.compress.workdir import PREFIX, remove_stale, work_dir

_HOLD = (
    "import sys, time\n"
    "from modelscale.compress.workdir import work_dir\n"
    "with work_dir() as path:\n"
    "    print(path, flush=True)\n"
    "    time.sleep(120)\n"
)
_CLI = "import sys\nfrom modelscale.cli import main\nsys.argv[0] = 'modelscale'\nmain()\n"


@pytest.fixture
def tmpdir_env(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> pathlib.Path:
    """A private system temporary folder, for this process and the processes it starts."""
    folder = tmp_path / "systmp"
    folder.mkdir()
    monkeypatch.setenv("TMPDIR", str(folder))
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


@pytest.fixture
def holder(tmpdir_env: pathlib.Path) -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen([sys.executable, "-c", _HOLD], stdout=subprocess.PIPE, text=True)
    yield proc
    if proc.poll() is None:
        proc.kill()
    proc.wait()


def _folders(root: pathlib.Path) -> list[pathlib.Path]:
    return sorted(root.glob(f"{PREFIX}*"))


def test_the_folder_is_removed_when_the_search_ends(tmpdir_env: pathlib.Path) -> None:
    with work_dir() as work:
        (work / "candidate.onnx").write_bytes(b"x")
        assert _folders(tmpdir_env) == [work]
    assert _folders(tmpdir_env) == []


def test_a_killed_search_s_folder_goes_at_the_next_search_and_a_live_one_stays(
    tmpdir_env: pathlib.Path, holder: subprocess.Popen[str]
) -> None:
    assert holder.stdout is not None
    other = pathlib.Path(holder.stdout.readline().strip())
    assert other.is_dir()
    with work_dir() as mine:
        assert other.is_dir(), "a running search's folder was removed"
        assert set(_folders(tmpdir_env)) == {other, mine}
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    assert other.is_dir()  # a killed search cannot clean up after itself ...
    with work_dir() as mine:
        assert _folders(tmpdir_env) == [mine]  # ... the next one does
    assert remove_stale(tmpdir_env) == []


def test_an_old_folder_without_a_lock_is_removed_once_untouched_for_hours(
    tmpdir_env: pathlib.Path,
) -> None:
    old, recent = tmpdir_env / f"{PREFIX}old", tmpdir_env / f"{PREFIX}recent"
    for folder in (old, recent):
        folder.mkdir()
    day_ago = time.time() - 86400
    os.utime(old, (day_ago, day_ago))
    assert remove_stale(tmpdir_env) == [old]
    assert recent.is_dir()


def test_sigterm_ends_compress_and_removes_its_work_folder(
    tmpdir_env: pathlib.Path, mlp_path: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    rng = np.random.default_rng(0)
    eval_path = tmp_path / "eval.npz"
    np.savez(eval_path, x=rng.standard_normal((256, 16)).astype(np.float32))
    proc = subprocess.Popen(
        [sys.executable, "-c", _CLI, "compress", str(mlp_path), "--eval", str(eval_path),
         "--out", str(tmp_path / "out"), "--max-time", "5", "--threads", "1", "--no-store"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not _folders(tmpdir_env) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert _folders(tmpdir_env), "compress never made its work folder"
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert _folders(tmpdir_env) == []


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_outputs_get_the_permissions_the_umask_allows(
    tmp_path: pathlib.Path, umask: int, mode: int
) -> None:
    source = tmp_path / "source.bin"
    source.write_bytes(b"model")
    previous = os.umask(umask)
    try:
        written = [
            atomic_write_text(tmp_path / "summary.json", "{}"),
            atomic_copy(source, tmp_path / "model.onnx"),
        ]
    finally:
        os.umask(previous)
    assert [p.stat().st_mode & 0o777 for p in written] == [mode, mode]
