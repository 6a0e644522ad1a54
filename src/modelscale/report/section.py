"""A report section: what it found, its charts and tables, the runs behind it, or what is missing."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from modelscale.report.charts import Chart
from modelscale.store import Run

__all__ = ["Note", "Section", "Table", "fmt", "fmt_bytes", "numbers", "when"]


@dataclass(frozen=True)
class Table:
    """Rows of text under column names."""

    columns: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    title: str = ""


@dataclass(frozen=True)
class Note:
    """A note people wrote, as a section shows it."""

    run_id: int
    at: dt.datetime
    text: str
    refers_to: int | None
    tags: tuple[str, ...]

    @classmethod
    def of(cls, run: Run) -> Note:
        """From a stored ``note`` run."""
        ref = run.params.get("run")
        tags = run.params.get("tags") or ()
        return cls(
            run_id=run.id,
            at=run.created_at,
            text=run.note or str(run.results.get("text", "")),
            refers_to=int(ref) if isinstance(ref, int) else None,
            tags=tuple(str(t) for t in tags),
        )


@dataclass(frozen=True)
class Section:
    """One part of the report.

    Attributes:
        key: Its anchor (``#profile``).
        title: Its heading.
        summary: What the evidence says, in a sentence or three (empty when missing).
        charts: Its charts.
        tables: Its tables.
        runs: The runs it is drawn from.
        missing: When there is no evidence: the command that would produce it.
        notes: Notes about its runs.
    """

    key: str
    title: str
    summary: str = ""
    charts: tuple[Chart, ...] = ()
    tables: tuple[Table, ...] = ()
    runs: tuple[int, ...] = ()
    missing: str | None = None
    notes: tuple[Note, ...] = field(default_factory=tuple)

    @classmethod
    def absent(cls, key: str, title: str, command: str) -> Section:
        """A section with no evidence, naming the command that produces it."""
        return cls(key=key, title=title, missing=command)


def fmt(value: Any, digits: int = 3) -> str:
    """A number for people: thousands separated, ``digits`` significant digits; '-' for none."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if value != value:  # NaN
            return "-"
        if abs(value) >= 10**digits:
            return f"{value:,.0f}"
        return f"{value:.{digits}g}"
    return str(value)


def fmt_bytes(n: Any) -> str:
    """Bytes in KiB / MiB / GiB."""
    if not isinstance(n, int | float):
        return "-"
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"


def when(at: dt.datetime | float | None) -> str:
    """A timestamp (datetime or epoch seconds) as UTC minutes."""
    if at is None:
        return "-"
    if isinstance(at, int | float):
        at = dt.datetime.fromtimestamp(float(at), dt.UTC)
    return at.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M")


def numbers(values: Sequence[Any]) -> list[float | None]:
    """Floats, None where a value is missing or not a number."""
    out: list[float | None] = []
    for v in values:
        out.append(float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None)
    return out
