"""Writing into the user's output folder: whole files or nothing.

Each file is written to a temporary name in the destination folder and moved into place with
``os.replace``, so Ctrl-C, a full disk or a crash leaves either the old file or the new one,
never half of one. The file gets the permissions a plain ``open`` would give it (0666 less the
umask), not the owner-only ones of a temporary file.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import tempfile
from collections.abc import Callable
from typing import IO

from modelscale.errors import InvalidInput

__all__ = ["atomic_copy", "atomic_write_text", "writable_dir"]


def writable_dir(path: pathlib.Path, *, option: str = "out") -> pathlib.Path:
    """Create ``path`` if needed and prove it takes files (permission bits do not bind root).

    ``option`` names the parameter the folder was given in, for the error.
    """
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise InvalidInput(
            f"Cannot write to '{option}' {path}: {reason}. Expected a writable folder.",
            field=option,
        ) from exc
    return path


def _umask() -> int:
    try:  # Linux says it without changing it (other threads may be creating files)
        for line in pathlib.Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)  # elsewhere the only way to read it is to set it, and back
    os.umask(mask)
    return mask


def _atomic(dest: pathlib.Path, write: Callable[[IO[bytes]], None]) -> pathlib.Path:
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    tmp = pathlib.Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as f:
            # mkstemp makes the file 0600; the output is for whoever may read the folder.
            os.chmod(f.fileno(), 0o666 & ~_umask())
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, dest)
    except BaseException as exc:
        # BaseException too: Ctrl-C must not leave the temporary file behind either.
        tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise InvalidInput(f"Cannot write {dest}: {exc.strerror or exc}.", field="out") from exc
        raise
    return dest


def atomic_copy(source: pathlib.Path, dest: pathlib.Path) -> pathlib.Path:
    """Copy ``source`` to ``dest`` so that ``dest`` is never partly written."""

    def write(f: IO[bytes]) -> None:
        with source.open("rb") as src:
            shutil.copyfileobj(src, f, 1 << 20)

    return _atomic(dest, write)


def atomic_write_text(dest: pathlib.Path, text: str) -> pathlib.Path:
    """Write ``text`` (UTF-8) to ``dest`` so that ``dest`` is never partly written."""

    def write(f: IO[bytes]) -> None:
        f.write(text.encode("utf-8"))

    return _atomic(dest, write)
