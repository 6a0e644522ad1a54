"""The folder a search builds its candidates in, and the cleaning up after searches that were killed.

A search writes every candidate (one model file each, as large as the model) into a work folder
in the system's temporary folder and removes it when it ends. A search killed outright (SIGKILL,
the machine losing power, an out-of-memory kill) cannot remove its own, so each search holds an
exclusive lock on a file inside its folder while it runs, and every search first removes the
folders whose lock nobody holds any more: their search has ended. The lock dies with its process,
so a reused process id never makes a live search's folder look stale.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import shutil
import tempfile
import time
from collections.abc import Iterator
from typing import IO

from modelscale.compress.atomic import writable_dir

__all__ = ["PREFIX", "remove_stale", "work_dir"]

PREFIX = "modelscale-compress-"
"""Work folders are named PREFIX + a random part, in ``tempfile.gettempdir()``."""

_LOCK = ".lock"
_UNLOCKED_AGE_S = 6 * 3600.0
"""A folder without a lock file (an older modelscale's) is stale once untouched this long."""


def _try_lock(f: IO[bytes]) -> bool:
    """Take ``f``'s exclusive lock without waiting (False: someone holds it)."""
    import fcntl

    try:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _is_stale(folder: pathlib.Path) -> bool:
    lock = folder / _LOCK
    try:
        with lock.open("rb") as f:
            return _try_lock(f)  # released when the file closes
    except FileNotFoundError:
        return time.time() - folder.stat().st_mtime > _UNLOCKED_AGE_S
    except OSError:
        return False


def remove_stale(parent: pathlib.Path | None = None) -> list[pathlib.Path]:
    """Remove this user's work folders in ``parent`` (default: the system temporary folder) whose
    search has ended, and return them."""
    root = pathlib.Path(parent or tempfile.gettempdir())
    removed: list[pathlib.Path] = []
    try:
        folders = [p for p in root.glob(f"{PREFIX}*") if p.is_dir() and not p.is_symlink()]
    except OSError:
        return removed
    uid = os.getuid() if hasattr(os, "getuid") else None
    for folder in folders:
        try:
            if uid is not None and folder.stat().st_uid != uid:
                continue
        except OSError:
            continue
        if _is_stale(folder):
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed


@contextlib.contextmanager
def work_dir(keep: pathlib.Path | None = None) -> Iterator[pathlib.Path]:
    """A folder for the candidates: ``keep`` (kept afterwards), or a temporary one removed at the
    end, made after removing the folders of searches that were killed."""
    if keep is not None:
        yield writable_dir(keep, option="keep_candidates")
        return
    with contextlib.suppress(ImportError):  # no fcntl (Windows): no lock, nothing cleaned
        remove_stale()
    tmp = pathlib.Path(tempfile.mkdtemp(prefix=PREFIX))
    try:
        with (tmp / _LOCK).open("wb") as lock:
            with contextlib.suppress(ImportError):
                _try_lock(lock)
            yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
