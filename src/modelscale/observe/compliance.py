"""SLO compliance over a window of the request log: the share of good requests per objective,
the error budget spent, and whether each objective was met.

The server's burn-rate alerts say when a budget is burning too fast right now; this says where a
model stands over its whole SLO window (``slo.window_days``), which is what a scorecard asks.
Good and bad follow the server's counters (``observe.slo.is_bad``): every request counts for
availability and 5xx answers are bad; every request but 4xx counts for latency and slower than
the threshold is bad.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any, ClassVar

from modelscale.config import SloSpec
from modelscale.errors import InvalidInput
from modelscale.observe.query import connect_log
from modelscale.observe.storage import LogLocation
from modelscale.result import Result, RunLinks

__all__ = ["SloCompliance", "slo_compliance"]


@dataclass(frozen=True)
class SloCompliance(Result):
    """Where a model stands against its objectives over a window of its request log.

    Attributes:
        model: The model's name in the log.
        start: The window's start (unix seconds).
        end: Its end.
        objectives: Per objective: ``sli``, ``objective``, ``threshold_ms``, ``events``, ``bad``,
            ``good_ratio``, ``budget_spent`` (bad over the bad the objective allows; > 1 is
            over budget), ``met`` and ``enough`` (at least ``slo.min_events`` requests).
        met: Every objective met, on enough requests.
        summary: One line.
        model_sha256: The version the run is filed under, when known.
        params: The log, the window and the objectives' spec.
    """

    kind: ClassVar[str] = "slo"

    model: str
    start: float
    end: float
    objectives: tuple[dict[str, Any], ...]
    met: bool
    summary: str
    model_sha256: str | None = None
    params: dict[str, Any] = field(default_factory=dict)

    def links(self) -> RunLinks:
        """Filed under the model's version when one was named."""
        return RunLinks(model_version=self.model_sha256)


def slo_compliance(
    where: str | LogLocation,
    model: str,
    slo: SloSpec,
    *,
    now: dt.datetime | None = None,
    window_days: float | None = None,
    model_sha256: str | None = None,
) -> SloCompliance:
    """Measure ``model``'s objectives over the last ``window_days`` (default: the SLO's own).

    Raises:
        InvalidInput: the SLO sets no objective (availability or latency).
    """
    objectives = slo.objectives()
    if not objectives:
        raise InvalidInput(
            f"Model {model!r} has no availability or latency objective. Expected slo: "
            "{availability: 0.999, latency: {threshold_ms: 100}} in deploy.yaml.",
            field="slo",
        )
    now = now or dt.datetime.now(dt.UTC)
    days = window_days if window_days is not None else slo.window_days
    start = now - dt.timedelta(days=days)
    threshold = slo.latency.threshold_ms if slo.latency is not None else 0.0
    con = connect_log(where)
    try:
        row = con.execute(
            """
            SELECT count(*),
                   coalesce(sum(CASE WHEN status >= 500 THEN 1 ELSE 0 END), 0),
                   coalesce(sum(CASE WHEN status < 400 OR status >= 500 THEN 1 ELSE 0 END), 0),
                   coalesce(sum(CASE WHEN (status < 400 OR status >= 500) AND latency_ms > ?
                                     THEN 1 ELSE 0 END), 0)
            FROM requests WHERE model = ? AND time >= ? AND time <= ?
            """,
            [threshold, model, start, now],
        ).fetchone()
    finally:
        con.close()
    total, errors, timed, slow = (int(v) for v in (row or (0, 0, 0, 0)))
    counts = {"availability": (total, errors), "latency": (timed, slow)}
    out = []
    for sli, objective in objectives.items():
        events, bad = counts[sli]
        good = 1.0 - bad / events if events else None
        allowed = (1.0 - objective) * events
        out.append(
            {
                "sli": sli,
                "objective": objective,
                "threshold_ms": threshold if sli == "latency" else None,
                "events": events,
                "bad": bad,
                "good_ratio": good,
                "budget_spent": bad / allowed if allowed > 0 else None,
                "met": good is not None and good >= objective,
                "enough": events >= slo.min_events,
            }
        )
    met = all(o["met"] and o["enough"] for o in out)
    parts = []
    for o in out:
        ratio = "no requests" if o["good_ratio"] is None else f"{o['good_ratio']:.4%} good"
        parts.append(f"{o['sli']} {ratio} of {o['events']:,} (objective {o['objective']:.4%})")
    summary = (
        f"{model} over the last {days:g} days: "
        + "; ".join(parts)
        + (": met." if met else ": NOT met." if total >= slo.min_events else ": too few requests.")
    )
    return SloCompliance(
        model=model,
        start=start.timestamp(),
        end=now.timestamp(),
        objectives=tuple(out),
        met=met,
        summary=summary,
        model_sha256=model_sha256,
        params={
            "log": str(where if isinstance(where, str) else where.display),
            "window_days": days,
            "slo": slo.model_dump(mode="json"),
        },
    )
