"""Rendering helpers shared by CLI commands: consoles, JSON output, small table builders."""

from __future__ import annotations

import json
import sys
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)

from modelscale.result import jsonable

__all__ = ["console", "err_console", "fmt_bytes", "fmt_count", "print_json", "progress"]

console = Console(highlight=False)
# Progress and errors go to stderr so `--json` output on stdout stays machine-readable.
err_console = Console(stderr=True, highlight=False)


def print_json(obj: Any) -> None:
    """Write ``obj`` as JSON to stdout."""
    sys.stdout.write(json.dumps(jsonable(obj), indent=2, sort_keys=False) + "\n")
    sys.stdout.flush()


def progress(*, transient: bool = True) -> Progress:
    """A Rich progress bar on stderr, as every long command shows it."""
    return Progress(
        SpinnerColumn(),
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err_console,
        transient=transient,
        # Redrawn bars are noise in logs and pipes; show them only on a terminal.
        disable=not err_console.is_terminal,
    )


def fmt_bytes(n: float | None) -> str:
    """1536 -> '1.5 KiB'."""
    if n is None:
        return "-"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"


def fmt_count(n: float | None) -> str:
    """22713216 -> '22.71 M'."""
    if n is None:
        return "-"
    value = float(n)
    for unit, scale in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(value) >= scale:
            return f"{value / scale:.2f} {unit}"
    return f"{value:.0f}"
