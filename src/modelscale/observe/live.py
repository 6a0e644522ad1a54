"""What the dashboard shows: per-second series of each model version, and the SLOs' burn rates.

``LiveRecorder`` is a recorder of the server's pipeline (in a thread of its own, off the request
path). Per model version it counts each second's requests, errors, latencies and batch sizes;
once a second is over its percentiles are computed and the raw latencies dropped, so memory stays
at one small row per second for the last hour. The same recorder feeds the ``SloTracker`` and, on
its one-second clock, evaluates the alerts and hands events to the ``AlertDispatcher``.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from modelscale.observe.alerts import AlertDispatcher
from modelscale.observe.slo import SloTracker

if TYPE_CHECKING:
    from modelscale.serve import RequestRecord

__all__ = ["HORIZON_S", "LiveRecorder", "VersionView"]

HORIZON_S = 3_600
"""Seconds of per-second series kept (the longest window the dashboard asks for)."""


@dataclass
class _Open:
    count: int = 0
    errors: int = 0
    latencies: list[float] = field(default_factory=list)
    batch_rows: int = 0
    batches: int = 0


@dataclass(frozen=True)
class VersionView:
    """How to read a version's live state (queue depth, replicas) at sampling time."""

    model: str
    version: str
    queue_depth: Callable[[], int]
    replicas: Callable[[], dict[str, Any]]


class _Series:
    def __init__(self, view: VersionView | None) -> None:
        self.view = view
        self.open: dict[int, _Open] = {}
        self.rows: deque[tuple[Any, ...]] = deque(maxlen=HORIZON_S)
        self.last: int | None = None
        """The newest second closed."""
        self.requests = 0
        self.errors = 0


class LiveRecorder:
    """Per-second series per model version, SLO counters and alert evaluation (a ticking
    recorder of the server's pipeline)."""

    name = "observe"
    threaded = True
    tick_s = 1.0

    def __init__(
        self,
        views: Sequence[VersionView],
        *,
        tracker: SloTracker | None = None,
        dispatcher: AlertDispatcher | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.tracker = tracker
        self.dispatcher = dispatcher
        self.clock = clock
        self._series = {(v.model, v.version): _Series(v) for v in views}
        self._lock = threading.Lock()

    def record(self, records: Sequence[RequestRecord]) -> None:
        """Count each finished request in its version's current second and in the SLOs."""
        tracker = self.tracker
        with self._lock:
            for r in records:
                done = r.time + r.latency_s
                second = int(done)
                key = (r.model, r.version)
                s = self._series.get(key)
                if s is None:
                    s = self._series[key] = _Series(None)
                if s.last is not None and second <= s.last:
                    second = s.last + 1  # late: its second is closed; count it in the next
                o = s.open.get(second)
                if o is None:
                    o = s.open[second] = _Open()
                o.count += 1
                s.requests += 1
                if r.status >= 500:
                    o.errors += 1
                    s.errors += 1
                if r.status < 400 or r.status >= 500:
                    o.latencies.append(r.latency_s * 1000.0)
                if r.batch_rows:
                    o.batch_rows += r.batch_rows
                    o.batches += 1
                if tracker is not None:
                    tracker.observe(r.model, done, r.status, r.latency_s * 1000.0)

    def tick(self, *, final: bool = False) -> None:
        """Close the seconds that are over; evaluate the SLOs and send their alerts."""
        now = self.clock()
        second = int(now)
        events = []
        with self._lock:
            for s in self._series.values():
                self._close(s, second)
            if self.tracker is not None:
                events = self.tracker.evaluate(now)
        if events and self.dispatcher is not None:
            self.dispatcher.send(events)
        if final and self.dispatcher is not None:
            self.dispatcher.close()

    def _close(self, s: _Series, now_second: int) -> None:
        """Close every second before ``now_second`` (an empty row for a second with nothing)."""
        depth = 0
        if s.view is not None:
            try:
                depth = int(s.view.queue_depth())
            except Exception:
                depth = 0
        start = s.last + 1 if s.last is not None else min(s.open, default=now_second - 1)
        start = max(start, now_second - HORIZON_S)
        for sec in range(start, now_second):
            o = s.open.pop(sec, None)
            if o is None or o.count == 0:
                s.rows.append((sec, 0.0, None, None, None, None, None, depth))
                continue
            if o.latencies:
                p50, p90, p99 = np.percentile(o.latencies, (50, 90, 99)).tolist()
            else:
                p50 = p90 = p99 = None
            s.rows.append(
                (
                    sec,
                    float(o.count),
                    o.errors / o.count,
                    p50,
                    p90,
                    p99,
                    o.batch_rows / o.batches if o.batches else None,
                    depth,
                )
            )
        for sec in [k for k in s.open if k < now_second - HORIZON_S]:
            del s.open[sec]
        s.last = max(s.last or 0, now_second - 1)

    def slo_view(self) -> list[dict[str, Any]]:
        """Burn rates and alert states now (``SloTracker.burn_rates``)."""
        if self.tracker is None:
            return []
        with self._lock:
            return self.tracker.burn_rates(self.clock())

    def view(self, window_s: int) -> dict[str, Any]:
        """The dashboard's JSON: each version's series over the last ``window_s`` seconds."""
        now = self.clock()
        versions = []
        with self._lock:
            for (model, version), s in sorted(self._series.items()):
                self._close(s, int(now))
                rows = [r for r in s.rows if r[0] >= int(now) - window_s]
                names = ("t", "rps", "error_rate", "p50_ms", "p90_ms", "p99_ms", "batch_rows")
                series: dict[str, list[Any]] = {
                    n: [r[i] for r in rows] for i, n in enumerate(names)
                }
                series["queue_depth"] = [r[7] for r in rows]
                replicas: dict[str, Any] = {}
                if s.view is not None:
                    try:
                        replicas = s.view.replicas()
                    except Exception:
                        replicas = {}
                versions.append(
                    {
                        "model": model,
                        "version": version,
                        "series": series,
                        "replicas": replicas,
                        "totals": {"requests": s.requests, "errors": s.errors},
                    }
                )
            slo = self.tracker.burn_rates(now) if self.tracker is not None else []
        return {"now": now, "step_s": 1, "window_s": window_s, "versions": versions, "slo": slo}
