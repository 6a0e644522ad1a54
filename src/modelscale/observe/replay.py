"""Replaying traffic through the SLO tracker: how fast alerts fire, reset, and how often falsely.

Traffic is a list of requests (finish time, status, latency); incidents are the spans during
which something was really wrong. ``replay`` runs the traffic through a ``SloTracker`` on a
simulated clock (one evaluation per second, as the server does), and scores its alerts against
the incidents: recall (incidents that paged), precision (pages that fell in an incident), the
time from an incident's start to its page and from its end to the page's reset. A day of traffic
replays in seconds.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from modelscale.observe.slo import AlertEvent, SloTracker

if TYPE_CHECKING:
    from modelscale.config import SloSpec

__all__ = ["Incident", "ReplayResult", "Traffic", "outage", "replay", "steady"]


@dataclass(frozen=True)
class Incident:
    """A span of real trouble: [start, end) in seconds of the replay."""

    start: float
    end: float


@dataclass
class Traffic:
    """Requests of one model, sorted by finish time, and the incidents in them."""

    times: np.ndarray
    statuses: np.ndarray
    latencies_ms: np.ndarray
    duration_s: float
    incidents: list[Incident] = field(default_factory=list)


def steady(
    *,
    rate_per_s: float,
    duration_s: float,
    error_share: float = 0.0,
    latency_ms: float = 5.0,
    seed: int = 0,
) -> Traffic:
    """Poisson arrivals at ``rate_per_s``, each failing (503) with probability ``error_share``."""
    rng = np.random.default_rng(seed)
    n = rng.poisson(rate_per_s * duration_s)
    times = np.sort(rng.uniform(0, duration_s, n))
    statuses = np.where(rng.random(n) < error_share, 503, 200)
    latencies = rng.exponential(latency_ms, n)
    return Traffic(times, statuses, latencies, duration_s)


def outage(
    *,
    rate_per_s: float,
    before_s: float,
    outage_s: float,
    after_s: float,
    seed: int = 0,
) -> Traffic:
    """Good traffic, then every request failing for ``outage_s``, then good again."""
    total = before_s + outage_s + after_s
    t = steady(rate_per_s=rate_per_s, duration_s=total, seed=seed)
    down = (t.times >= before_s) & (t.times < before_s + outage_s)
    t.statuses = np.where(down, 503, t.statuses)
    t.incidents = [Incident(before_s, before_s + outage_s)]
    return t


@dataclass(frozen=True)
class ReplayResult:
    """What the alerts did over a replay, scored against its incidents."""

    alerts: list[AlertEvent]
    pages: int
    """Pages that fired."""
    true_pages: int
    """Pages that fired during an incident (or within its reset time after)."""
    incidents: int
    detected: int
    """Incidents that paged."""
    detection_s: list[float]
    """Per detected incident: its start to the first page."""
    reset_s: list[float]
    """Per detected incident: its end to the last of its pages resolving (None if it did not)."""

    @property
    def precision(self) -> float | None:
        """Share of pages that were real (None without pages)."""
        return self.true_pages / self.pages if self.pages else None

    @property
    def recall(self) -> float | None:
        """Share of incidents that paged (None without incidents)."""
        return self.detected / self.incidents if self.incidents else None


def replay(
    traffic: Traffic,
    slo: SloSpec,
    *,
    model: str = "model",
    start: float = 1_700_000_000.0,
    step_s: float = 1.0,
    sli: str | None = None,
) -> ReplayResult:
    """Run ``traffic`` through a tracker of ``slo``, evaluating every ``step_s`` seconds."""
    tracker = SloTracker({model: slo})
    events: list[AlertEvent] = []
    times, statuses, lats = traffic.times, traffic.statuses, traffic.latencies_ms
    i, n = 0, len(times)
    now = 0.0
    while now <= traffic.duration_s:
        while i < n and times[i] <= now:
            tracker.observe(model, start + float(times[i]), int(statuses[i]), float(lats[i]))
            i += 1
        events.extend(tracker.evaluate(start + now))
        now += step_s
    return _score(
        [e for e in events if sli is None or e.sli == sli], traffic.incidents, start=start
    )


def _score(
    events: Sequence[AlertEvent], incidents: Sequence[Incident], *, start: float
) -> ReplayResult:
    fired = [e for e in events if e.severity == "page" and e.state == "firing"]
    resolved = [e for e in events if e.severity == "page" and e.state == "resolved"]
    detection, reset, true_pages, detected = [], [], 0, 0
    for inc in incidents:
        mine = [e for e in fired if inc.start <= e.at - start]
        mine = [e for e in mine if e.at - start < inc.end + 3_600]
        if mine:
            detected += 1
            detection.append(min(e.at for e in mine) - start - inc.start)
            ends = [e.at - start for e in resolved if e.at - start >= inc.end]
            if ends:
                reset.append(max(min(ends), inc.end) - inc.end)
    for e in fired:
        t = e.at - start
        if any(inc.start <= t < inc.end + 3_600 for inc in incidents):
            true_pages += 1
    return ReplayResult(
        alerts=list(events),
        pages=len(fired),
        true_pages=true_pages,
        incidents=len(incidents),
        detected=detected,
        detection_s=detection,
        reset_s=reset,
    )
