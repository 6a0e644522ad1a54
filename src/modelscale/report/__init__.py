"""Reports, scorecards and notes: the knowledge base as something a team reads and a CI gate
trusts.

``gather_evidence`` reads a model's versions and runs; ``build_report`` turns them into sections
with charts and tables and ``write_report`` writes one self-contained HTML file (or Markdown with
PNG plots); ``check`` scores them against the scaling checklist; ``NoteResult`` is a finding or
decision people write down, stored as a ``note`` run.
"""

from __future__ import annotations

from modelscale.report.api import Report, ReportFormat, build_report, write_report
from modelscale.report.checklist import (
    CheckPolicy,
    Item,
    ItemPolicy,
    Scorecard,
    Status,
    check,
    load_policy,
)
from modelscale.report.evidence import Evidence, gather_evidence
from modelscale.report.notes import NoteResult, make_note

__all__ = [
    "CheckPolicy",
    "Evidence",
    "Item",
    "ItemPolicy",
    "NoteResult",
    "Report",
    "ReportFormat",
    "Scorecard",
    "Status",
    "build_report",
    "check",
    "gather_evidence",
    "load_policy",
    "make_note",
    "write_report",
]
