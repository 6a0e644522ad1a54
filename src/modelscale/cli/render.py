"""Rendering helpers shared by CLI commands: consoles, JSON output, small table builders."""

from __future__ import annotations

import json
import sys
from collections.abc import Collection, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.measure import Measurement
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from modelscale.progress import ProgressEvent
from modelscale.result import jsonable

__all__ = [
    "ProgressBar",
    "console",
    "err_console",
    "fmt_bytes",
    "fmt_count",
    "print_json",
    "print_table",
    "progress",
]

console = Console(highlight=False)
# Progress and errors go to stderr so `--json` output on stdout stays machine-readable.
err_console = Console(stderr=True, highlight=False)


def print_table(table: Table, *, shorten: Collection[str] = (), to: Console | None = None) -> None:
    """Print ``table`` whole, never cut at the console's width.

    Into a pipe or a file it is printed at its natural width (not 80 columns), one line per row.
    On a terminal too narrow for it, cells wrap within their columns instead of ending in '...',
    except in the columns named in ``shorten`` (by header), which stay one line and are cut.
    """
    out = to or console
    natural = Measurement.get(out, out.options.update_width(100_000), table).maximum
    if natural <= out.width:
        out.print(table)
    elif not out.is_terminal:
        Console(file=out.file, width=natural, highlight=False, soft_wrap=False).print(table)
    else:
        for column in table.columns:
            if str(column.header) not in shorten:
                column.no_wrap, column.overflow = False, "fold"
        out.print(table)


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


class ProgressBar:
    """The one adapter from a capability's ``ProgressEvent`` to the command line's progress bar.

    Pass it as ``on_progress``; it draws while ``showing`` is open (events outside are dropped).

        bar = ProgressBar()
        with bar.showing("loading"):
            result = profile_model(model, on_progress=bar)

    Args:
        labels: Words to show for stage names (stages not listed show as they are).
        prefix: Put before every stage shown.
    """

    def __init__(self, labels: Mapping[str, str] | None = None, *, prefix: str = "") -> None:
        self.labels = dict(labels or {})
        self.prefix = prefix
        self._bar: Progress | None = None
        self._task: Any = None

    @contextmanager
    def showing(self, description: str, *, lazy: bool = False) -> Iterator[ProgressBar]:
        """Show the bar, starting at ``description``, until the block ends.

        ``lazy``: draw nothing until the first event (a cached result then shows no bar).
        """
        bar = progress()
        self._bar, self._task = bar, bar.add_task(description, total=None)
        if not lazy:
            bar.start()
        try:
            yield self
        finally:
            bar.stop()
            self._bar = self._task = None

    def __call__(self, event: ProgressEvent) -> None:
        bar = self._bar
        if bar is None:
            return
        if not bar.live.is_started:
            bar.start()
        bar.update(
            self._task,
            description=self.prefix + self.labels.get(event.stage, event.stage),
            completed=event.done,
            total=event.total,
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
