"""Summaries of one measurement window: latency percentiles, achieved rate, errors by status."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from modelscale.loadgen.client import CONNECTION_ERROR, TIMEOUT, Outcome

__all__ = ["LATE_MS", "LoadStats", "summarize"]

LATE_MS = 2.0
"""A request sent more than this after its planned time counts as late (its latency includes it).
Event-loop timers fire with ~1 ms granularity, so smaller lags are the clock, not saturation."""

_LABELS = {CONNECTION_ERROR: "connection", TIMEOUT: "timeout"}


@dataclass(frozen=True)
class LoadStats:
    """One window of load: what was offered, what came back, and how long it took."""

    offered_rps: float
    """Planned requests over the window's planned duration (closed loop: sent over duration)."""
    duration_s: float
    sent: int
    ok: int
    """Answers with a 2xx status."""
    errors: dict[str, int]
    """Non-2xx answers by status code, plus 'connection' and 'timeout'."""
    achieved_rps: float
    """2xx answers per second over the window (first planned send to last answer)."""
    p50_ms: float
    p90_ms: float
    p99_ms: float
    p999_ms: float
    max_ms: float
    mean_ms: float
    late: int
    """Requests sent more than LATE_MS after their planned time (the client or its connections
    could not keep up); their latency still counts from the planned time."""
    max_lag_ms: float

    @property
    def error_rate(self) -> float:
        """Share of requests that did not get a 2xx answer."""
        total = self.ok + sum(self.errors.values())
        return sum(self.errors.values()) / total if total else 0.0

    def passes(self, *, p99_ms: float, max_error_rate: float = 0.01) -> bool:
        """Whether the window met a p99 bound with fewer errors than ``max_error_rate``."""
        return self.ok > 0 and self.p99_ms <= p99_ms and self.error_rate < max_error_rate


def summarize(outcome: Outcome, *, planned_s: float, mask: np.ndarray | None = None) -> LoadStats:
    """Summarise the requests selected by ``mask`` (default all) of ``outcome``.

    Latency runs from each request's planned send time to its answer (open loop), so time spent
    waiting for a free connection or behind a stalled server is counted, never hidden.
    """
    sel = np.ones(len(outcome.status), dtype=bool) if mask is None else mask
    status = outcome.status[sel]
    intended, sent, done = outcome.intended[sel], outcome.sent[sel], outcome.done[sel]
    ok = (status >= 200) & (status < 300)
    lat = (done[ok] - intended[ok]) * 1000
    codes, counts = np.unique(status[~ok], return_counts=True)
    errors = {_LABELS.get(int(c), str(int(c))): int(n) for c, n in zip(codes, counts, strict=True)}
    was_sent = sent > 0
    lag = (sent[was_sent] - intended[was_sent]) * 1000
    span = max(float(done.max() - intended.min()), planned_s, 1e-9) if len(done) else planned_s
    pct = np.percentile(lat, [50, 90, 99, 99.9]) if len(lat) else [math.nan] * 4
    return LoadStats(
        offered_rps=len(status) / planned_s if planned_s > 0 else 0.0,
        duration_s=span,
        sent=int(was_sent.sum()),
        ok=int(ok.sum()),
        errors=errors,
        achieved_rps=float(ok.sum()) / span if span > 0 else 0.0,
        p50_ms=float(pct[0]),
        p90_ms=float(pct[1]),
        p99_ms=float(pct[2]),
        p999_ms=float(pct[3]),
        max_ms=float(lat.max()) if len(lat) else math.nan,
        mean_ms=float(lat.mean()) if len(lat) else math.nan,
        late=int((lag > LATE_MS).sum()),
        max_lag_ms=float(lag.max()) if len(lag) else 0.0,
    )
