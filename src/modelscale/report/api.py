"""Build a model's report from the knowledge base and write it as HTML or Markdown."""

from __future__ import annotations

import dataclasses
import datetime as dt
import pathlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from modelscale.errors import InvalidInput
from modelscale.report.checklist import CheckPolicy, Scorecard, check
from modelscale.report.evidence import Evidence
from modelscale.report.live_sections import (
    assess_section,
    drift_section,
    experiment_section,
    notes_section,
    privacy_section,
    slo_section,
)
from modelscale.report.model_sections import (
    card_section,
    compress_section,
    laws_section,
    load_section,
    plan_section,
    profile_section,
)
from modelscale.report.section import Note, Section

__all__ = ["Report", "ReportFormat", "build_report", "write_report"]

ReportFormat = Literal["html", "md"]

_SECTIONS: tuple[Callable[[Evidence], Section], ...] = (
    card_section,
    profile_section,
    compress_section,
    plan_section,
    load_section,
    laws_section,
    slo_section,
    drift_section,
    experiment_section,
    privacy_section,
    assess_section,
    notes_section,
)


@dataclass(frozen=True)
class Report:
    """A model's report: the scorecard, then one section per part of the checklist."""

    model: str
    at: dt.datetime
    since: dt.datetime | None
    knowledge_base: str
    scorecard: Scorecard
    sections: tuple[Section, ...]

    @property
    def charts(self) -> int:
        """How many charts it draws."""
        return sum(len(s.charts) for s in self.sections)


def build_report(ev: Evidence, *, policy: CheckPolicy | None = None, source: str = "") -> Report:
    """Every section of ``ev``'s report, with notes placed beside the runs they refer to."""
    notes = [Note.of(n) for n in ev.notes()]
    sections = []
    for make in _SECTIONS:
        section = make(ev)
        # A chart with nothing to draw (a field an older release did not record) is left out.
        section = dataclasses.replace(section, charts=tuple(c for c in section.charts if c.points))
        if section.key != "notes":
            mine = tuple(n for n in notes if n.refers_to in section.runs)
            section = dataclasses.replace(section, notes=mine)
        sections.append(section)
    return Report(
        model=ev.name,
        at=ev.at,
        since=ev.since,
        knowledge_base=source,
        scorecard=check(ev, policy),
        sections=tuple(sections),
    )


def write_report(
    report: Report, out: str | pathlib.Path, *, fmt: ReportFormat = "html"
) -> pathlib.Path:
    """Write ``report`` to ``out`` (HTML, or Markdown with PNG plots in ``<out stem>_files/``).

    Raises:
        InvalidInput: the format is unknown or ``out`` cannot be written.
    """
    path = pathlib.Path(out).expanduser()
    if fmt not in ("html", "md"):
        raise InvalidInput(
            f"The 'format' of report must be html or md. Got {fmt!r} instead.", field="format"
        )
    if path.is_dir():
        raise InvalidInput(
            f"The output path {path} is a directory. Expected a file name (report.{fmt}).",
            field="out",
        )
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if fmt == "html":
            from modelscale.report.html import render_html

            text = render_html(report)
        else:
            from modelscale.report.markdown import render_markdown

            text = render_markdown(report, path)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
    except OSError as exc:
        raise InvalidInput(
            f"Cannot write the report to {path}: {exc.strerror or exc}. Expected a writable "
            "path (pass another with --out).",
            field="out",
        ) from None
    return path
