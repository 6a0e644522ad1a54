"""Error-budget burn rates and multi-window alerts, computed inside the server.

For each model and objective (availability, latency) a ``BurnCounter`` keeps one-second buckets
of (requests, bad requests) for the longest alert window (3 days) in a ring, and a running sum per
window; a request is counted in constant time, and moving the clock one second subtracts the
bucket that leaves each window. So reading the error ratio over 5 minutes or 3 days costs the
same, and nothing is ever summed over a window (the pain of long-window Prometheus rules over
many series, sloth#504).

``SloTracker`` turns ratios into burn rates (error ratio / (1 - objective)) and alerts with the
pairs in ``modelscale.observe.windows``: an alert fires when both its windows burn faster than
its rate and the long window holds at least ``min_events`` requests (a trickle of traffic cannot
page, kibana#203279) and ``min_bad_events`` bad ones (two errors among a young server's first
hundred requests are a 2% error ratio, but not yet evidence of one), and resolves once the condition has been false for a hold time (a fifth of
the short window, at least a minute), so an alert fires and resolves once per incident instead of
flapping. Each alert says which pair fired (one combined alert hides that). Times are passed in,
never read from a clock here, so a replay of recorded traffic runs as fast as the machine can.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from modelscale.observe.windows import ALERT_PAIRS, WINDOWS_S, AlertPair, window_name
from modelscale.result import Result

if TYPE_CHECKING:
    from modelscale.config import SloSpec

__all__ = ["AlertEvent", "AlertState", "BurnCounter", "SloAlert", "SloTracker", "is_bad"]


class BurnCounter:
    """Requests and bad requests per second over the last ``horizon_s`` seconds."""

    def __init__(self, windows_s: tuple[int, ...] = WINDOWS_S) -> None:
        self.windows_s = windows_s
        self.size = max(windows_s) + 1
        self.total = np.zeros(self.size, dtype=np.int64)
        self.bad = np.zeros(self.size, dtype=np.int64)
        self.sums = {w: [0, 0] for w in windows_s}
        """window -> [requests, bad requests] in it."""
        self.now: int | None = None
        """The current second (the newest bucket)."""

    def _range_sum(self, arr: np.ndarray, lo: int, hi: int) -> int:
        """Sum of the buckets of seconds lo..hi inclusive (hi - lo < size)."""
        if hi < lo:
            return 0
        a, b = lo % self.size, hi % self.size
        if a <= b:
            return int(arr[a : b + 1].sum())
        return int(arr[a:].sum() + arr[: b + 1].sum())

    def advance(self, second: int) -> None:
        """Move the clock to ``second`` (earlier seconds are ignored)."""
        if self.now is None:
            self.now = second
            return
        if second <= self.now:
            return
        gap = second - self.now
        if gap >= self.size:
            self.total[:] = 0
            self.bad[:] = 0
            for w in self.windows_s:
                self.sums[w] = [0, 0]
            self.now = second
            return
        for w in self.windows_s:
            # Seconds now-w+1 .. second-w leave the window (now+1 .. second enter it, empty).
            lo, hi = self.now - w + 1, second - w
            s = self.sums[w]
            s[0] -= self._range_sum(self.total, lo, hi)
            s[1] -= self._range_sum(self.bad, lo, hi)
        # The buckets of the new seconds held seconds that have left every window: clear them.
        lo, hi = self.now + 1, second
        a, b = lo % self.size, hi % self.size
        if a <= b:
            self.total[a : b + 1] = 0
            self.bad[a : b + 1] = 0
        else:
            self.total[a:] = 0
            self.bad[a:] = 0
            self.total[: b + 1] = 0
            self.bad[: b + 1] = 0
        self.now = second

    def add(self, t: float, bad: bool, count: int = 1) -> None:
        """Count ``count`` requests finished at unix time ``t`` (bad ones, if ``bad``)."""
        second = int(t)
        if self.now is None or second > self.now:
            self.advance(second)
        assert self.now is not None
        age = self.now - second
        if age >= self.size - 1:
            return  # older than the longest window
        i = second % self.size
        self.total[i] += count
        if bad:
            self.bad[i] += count
        for w in self.windows_s:
            if age < w:
                s = self.sums[w]
                s[0] += count
                if bad:
                    s[1] += count

    def window(self, seconds: int) -> tuple[int, int]:
        """(requests, bad requests) in the last ``seconds`` (one of the windows)."""
        total, bad = self.sums[seconds]
        return total, bad

    def ratio(self, seconds: int) -> float:
        """Bad share of the requests in the window (0 when there were none)."""
        total, bad = self.sums[seconds]
        return bad / total if total else 0.0


def is_bad(sli: str, status: int, latency_ms: float, threshold_ms: float | None) -> bool | None:
    """Whether a request spends the budget of ``sli``; None when the SLI does not count it.

    availability: every request counts; 5xx answers are bad. latency: every request but client
    errors (4xx) counts (as the latency histogram in /metrics); slower than the threshold is bad.
    """
    if sli == "availability":
        return status >= 500
    if 400 <= status < 500:
        return None
    assert threshold_ms is not None
    return latency_ms > threshold_ms


@dataclass
class AlertState:
    """One alert (model, SLI, pair) and whether it is firing."""

    model: str
    sli: str
    pair: AlertPair
    firing: bool = False
    since: float | None = None
    """When it fired (while firing)."""
    clear_since: float | None = None
    """When its condition was last seen false while firing."""
    fired: int = 0
    resolved: int = 0


@dataclass(frozen=True)
class AlertEvent:
    """An alert firing or resolving."""

    model: str
    sli: str
    objective: float
    severity: str
    pair: str
    """'1h/5m': which windows fired, long first."""
    burn_rate: float
    """The pair's threshold."""
    state: str
    """'firing' or 'resolved'."""
    at: float
    """Unix time."""
    burn_long: float
    burn_short: float
    requests_long: int
    window_days: float
    budget_left: float
    """Share of the error budget left over the long window's rate, extrapolated to the period
    (1 - burn over the longest window x its share of the period); informative."""

    @property
    def message(self) -> str:
        """One line for the server log."""
        verb = "FIRING" if self.state == "firing" else "resolved"
        return (
            f"SLO {self.severity} {verb}: {self.model} {self.sli} (objective "
            f"{self.objective:g}) burns its error budget at {self.burn_long:.1f}x over "
            f"{self.pair.split('/')[0]} and {self.burn_short:.1f}x over {self.pair.split('/')[1]} "
            f"(alert at {self.burn_rate:g}x; {self.requests_long} requests in the long window)"
        )

    def to_dict(self) -> dict[str, object]:
        """JSON-ready fields (and the message)."""
        return {
            "model": self.model,
            "sli": self.sli,
            "objective": self.objective,
            "severity": self.severity,
            "pair": self.pair,
            "burn_rate": self.burn_rate,
            "state": self.state,
            "at": self.at,
            "burn_long": self.burn_long,
            "burn_short": self.burn_short,
            "requests_long": self.requests_long,
            "window_days": self.window_days,
            "budget_left": self.budget_left,
            "message": self.message,
        }

    def as_result(self) -> SloAlert:
        """The run the knowledge base keeps (kind ``slo``)."""
        return SloAlert(alert=self.to_dict(), params={"model": self.model, "sli": self.sli})


@dataclass(frozen=True)
class SloAlert(Result):
    """An SLO alert that fired or resolved, as the knowledge base keeps it."""

    kind: ClassVar[str] = "slo"

    alert: dict[str, Any]
    params: dict[str, Any]


@dataclass
class _Objective:
    model: str
    sli: str
    objective: float
    threshold_ms: float | None
    counter: BurnCounter
    alerts: list[AlertState] = field(default_factory=list)


class SloTracker:
    """Burn rates and alerts of every model's objectives."""

    def __init__(
        self,
        slos: dict[str, SloSpec],
        *,
        pairs: tuple[AlertPair, ...] = ALERT_PAIRS,
        min_hold_s: float = 60.0,
    ) -> None:
        self.pairs = pairs
        self.min_hold_s = min_hold_s
        self.specs = dict(slos)
        self.objectives: list[_Objective] = []
        self._by_model: dict[str, list[_Objective]] = {}
        for model, slo in slos.items():
            for sli, objective in slo.objectives().items():
                threshold = slo.latency.threshold_ms if slo.latency is not None else None
                o = _Objective(
                    model,
                    sli,
                    objective,
                    threshold if sli == "latency" else None,
                    BurnCounter(),
                    [AlertState(model, sli, p) for p in pairs],
                )
                self.objectives.append(o)
                self._by_model.setdefault(model, []).append(o)

    def __bool__(self) -> bool:
        return bool(self.objectives)

    def observe(self, model: str, t: float, status: int, latency_ms: float) -> None:
        """Count one finished request of ``model`` at unix time ``t``."""
        for o in self._by_model.get(model, ()):
            bad = is_bad(o.sli, status, latency_ms, o.threshold_ms)
            if bad is not None:
                o.counter.add(t, bad)

    def burn_rates(self, now: float) -> list[dict[str, object]]:
        """Per objective: burn rate per window and each alert's state (the dashboard's view)."""
        out: list[dict[str, object]] = []
        for o in self.objectives:
            o.counter.advance(int(now))
            budget = 1 - o.objective
            out.append(
                {
                    "model": o.model,
                    "sli": o.sli,
                    "objective": o.objective,
                    "burn_rates": {
                        window_name(w): o.counter.ratio(w) / budget for w in o.counter.windows_s
                    },
                    "requests": {
                        window_name(w): o.counter.window(w)[0] for w in o.counter.windows_s
                    },
                    "alerts": [
                        {
                            "severity": a.pair.severity,
                            "pair": a.pair.name,
                            "burn_rate": a.pair.burn_rate,
                            "state": "firing" if a.firing else "ok",
                            "since": a.since,
                        }
                        for a in o.alerts
                    ],
                }
            )
        return out

    def evaluate(self, now: float) -> list[AlertEvent]:
        """Move every counter's clock to ``now`` and return the alerts that fired or resolved."""
        events: list[AlertEvent] = []
        second = int(now)
        for o in self.objectives:
            o.counter.advance(second)
            budget = 1 - o.objective
            slo = self.specs[o.model]
            for a in o.alerts:
                p = a.pair
                requests_long, bad_long = o.counter.window(p.long_s)
                burn_long = o.counter.ratio(p.long_s) / budget
                burn_short = o.counter.ratio(p.short_s) / budget
                hot = (
                    burn_long > p.burn_rate
                    and burn_short > p.burn_rate
                    and requests_long >= slo.min_events
                    and bad_long >= slo.min_bad_events
                )
                state = None
                if hot:
                    a.clear_since = None
                    if not a.firing:
                        a.firing, a.since, a.fired = True, now, a.fired + 1
                        state = "firing"
                elif a.firing:
                    if a.clear_since is None:
                        a.clear_since = now
                    if now - a.clear_since >= max(self.min_hold_s, p.short_s / 5):
                        a.firing, a.since, a.clear_since = False, None, None
                        a.resolved += 1
                        state = "resolved"
                if state is not None:
                    longest = max(o.counter.windows_s)
                    period_s = slo.window_days * 86_400
                    spent = o.counter.ratio(longest) / budget * min(1.0, longest / period_s)
                    events.append(
                        AlertEvent(
                            model=o.model,
                            sli=o.sli,
                            objective=o.objective,
                            severity=p.severity,
                            pair=p.name,
                            burn_rate=p.burn_rate,
                            state=state,
                            at=now,
                            burn_long=_round(burn_long),
                            burn_short=_round(burn_short),
                            requests_long=requests_long,
                            window_days=slo.window_days,
                            budget_left=_round(1 - spent),
                        )
                    )
        return events


def _round(x: float) -> float:
    return round(x, 4) if math.isfinite(x) else x
