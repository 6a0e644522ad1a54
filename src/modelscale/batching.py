"""SLO-aware batching: how many queued rows to send and how long to wait, from the latency objective.

A fixed ``max_batch`` / ``max_wait_ms`` is right for one machine speed only: a batch that fits the
objective on a fast machine makes every request late on a slow one, and a batch small enough for the
slow machine wastes the fast one. With a p99 objective the batcher instead asks this policy at every
dispatch, from three things it learns while serving:

- ``ServiceCurve``: ``S(n)``, the wall time of a batch of ``n`` rows at a replica (hand-over to
  outcome, as a request experiences it): a straight line ``a + b n`` fitted by decayed,
  Huber-weighted relative least squares, so a slow batch (a page fault) moves it little, and
  scaled as a whole by robust steps (clipped in log space) that follow the machine slowing down
  or speeding up for good within a few dozen batches without forgetting the line's shape; and
  the 95th percentile of observed over predicted, the tail a request's own batch is planned
  with. It starts from the stored profile's line when there is one, else from the first batch
  (one row, sent alone).
- ``RateMeter``: the rows arriving per second (exponentially decayed counter).
- the queue itself: the oldest request's age and the rows waiting.

At each dispatch (a replica is free and rows wait):

1. ``cap``: the largest batch whose mean time fits half the objective. A request that arrives
   just after the replicas took their batches waits up to one batch for a replica and then runs
   its own, so two batches must fit (the same rule the raw ceiling of bench/serving.py uses).
   ``max_batch`` only bounds it.
2. ``need``: the smallest batch with which the replicas keep up with the arrival rate: below it
   the queue grows. At low load this is 1 and every request is sent at once.
3. Send at once when the rows waiting reach what the oldest request can afford (as many as its
   remaining budget allows at the tail estimate, up to ``cap``). With fewer than ``need`` rows,
   wait for ``need`` as long as the oldest request can afford; with enough, wait only while rows
   arrive densely and at most ``gather`` (5%) of the budget, so a tiny model's batches fill as
   a fixed 5 ms wait would fill them. A request that completes the rows waited for wakes the
   batcher at once; no timer runs while every replica is busy.

The same model decides shedding (``predict``): where a new request would finish, walking the
replicas through the queue ahead of it in batches of ``cap``; a request that would wait in a queue
and is predicted to miss the objective is refused at once.

A virtual-time simulation of this policy against the exact latency of greedy batching
(``modelscale.plan.batchqueue``) is in bench/batching_policy.py: with Poisson arrivals, no policy
comes near the raw ceiling at tight objectives (p99 <= 2.4 x the batch time allows ~60% of it),
and this one reaches the queueing bound within a few percent.

The policy sits below the capabilities (pure arithmetic, no I/O) because two of them run it: the
server's batcher asks it at every dispatch, and ``plan`` runs it in its simulator, so a plan that
chooses batching from the objective predicts the very rule that will serve.

Clipper (NSDI 2017) adapts the batch by AIMD on the observed latency and Triton waits a fixed queue
delay for preferred sizes; neither derives the batch from the objective and a model of the service
time, which is what makes this follow the machine: no library does this, so it is written here.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass, field
from typing import NamedTuple

__all__ = ["Decision", "RateMeter", "ServiceCurve", "SloPolicy"]

_HUBER_K = 2.0
"""Residuals beyond this many scale units (mean absolute relative residual) are down-weighted."""
_TAIL_Q = 0.95
_TAIL_STEP = 0.02
_LEVEL_STEP = 0.05
_LEVEL_CLIP = 0.4
"""The level moves by at most 5% x 0.4 in log space per batch: a lone 6x stall moves it 2%, a
machine twice as slow is followed within ~35 batches."""
_MIN_WAIT_S = 0.0002
"""A shorter wait is not worth a timer (the event loop's own resolution is about 1 ms): send."""
_PRIOR_WEIGHT = 0.5
"""Weight of each of the prior's two pseudo-points: enough to pin the slope while every batch has
the same size, little against a few batches of evidence."""


class ServiceCurve:
    """``S(n) = a + b n``: wall seconds of a batch of ``n`` rows at one replica, learned online.

    Args:
        half_life: Batches after which an observation counts half.
        prior: ``(a, b)`` in seconds to start from (a stored profile), or None to start from the
            first batch seen (half of it fixed cost, half per row).
        span: The batch sizes the prior's pseudo-points sit at (1 and the largest allowed).
    """

    def __init__(
        self,
        *,
        half_life: float = 200.0,
        prior: tuple[float, float] | None = None,
        span: int = 64,
    ) -> None:
        self.decay = 0.5 ** (1.0 / half_life)
        self.span = max(2, span)
        self.prior = prior
        self._w = self._x = self._y = self._xx = self._xy = 0.0
        self.a, self.b = prior if prior is not None else (0.0, 0.0)
        self.scale = 0.15
        """Mean absolute relative residual of recent batches (decayed)."""
        self.tail = 1.25
        """The 95th percentile of observed over predicted (tracked by stochastic approximation)."""
        self.batches = 0

    @property
    def known(self) -> bool:
        """Whether there is anything to predict from (a prior or a batch)."""
        return self.prior is not None or self.batches > 0

    def mean(self, rows: float) -> float:
        """Expected wall seconds of a batch of ``rows``."""
        return self.a + self.b * rows

    def line(self) -> tuple[float, float, float]:
        """(seconds per batch, seconds per row, the tail factor) as learned so far."""
        return self.a, self.b, self.tail

    @property
    def fixed_s(self) -> float:
        """The per-batch part of ``mean`` (seconds)."""
        return self.a

    @property
    def per_row_s(self) -> float:
        """The per-row part of ``mean`` (seconds)."""
        return self.b

    def high(self, rows: float) -> float:
        """A high (95th percentile) estimate of a batch of ``rows``."""
        return self.mean(rows) * self.tail

    def observe(self, rows: int, seconds: float) -> None:
        """Learn from one batch of ``rows`` that took ``seconds`` (hand-over to outcome)."""
        if rows < 1 or not seconds > 0 or not math.isfinite(seconds):
            return
        if self.prior is None and self.batches == 0:
            # Half fixed cost, half per row, through the first batch. The guess must not be
            # pessimistic about larger batches: a curve that thinks them too slow never sends
            # one, so never learns otherwise. One that thinks them too fast sends them, sees
            # them, and corrects within a few batches.
            per = seconds / (1.0 + rows)
            self.prior = (per, per)
            self.a, self.b = self.prior
        predicted = self.mean(rows)
        ratio = seconds / predicted if predicted > 0 else 1.0
        if self.batches > 0:
            # The tail tracks the ratio's 95th percentile: up 19 steps for each step down.
            self.tail += _TAIL_STEP * (_TAIL_Q - (ratio <= self.tail))
            self.tail = min(max(self.tail, 1.0), 10.0)
        self._rescale(math.exp(_LEVEL_STEP * min(max(math.log(ratio), -_LEVEL_CLIP), _LEVEL_CLIP)))
        shape = self.a + self.b * rows
        residual = abs(seconds / shape - 1.0) if shape > 0 else 0.0
        weight = 1.0 if residual <= _HUBER_K * self.scale else _HUBER_K * self.scale / residual
        self.scale += 0.02 * (min(residual, 4 * self.scale + 0.05) - self.scale)
        self.scale = min(max(self.scale, 0.02), 2.0)
        d = self.decay
        # Relative least squares: each batch weighs by 1/S^2, so small and large batches count
        # alike in relative error.
        w = weight / (seconds * seconds)
        self._w = self._w * d + w
        self._x = self._x * d + w * rows
        self._y = self._y * d + w * seconds
        self._xx = self._xx * d + w * rows * rows
        self._xy = self._xy * d + w * rows * seconds
        self.batches += 1
        self._refit()

    def _rescale(self, factor: float) -> None:
        """The machine's level moved by ``factor``: every batch seen so far (and the prior) is
        taken as if it had run at the new level, so the line keeps its shape and moves at once."""
        assert self.prior is not None
        f2 = factor * factor
        # With relative weights 1/S^2, scaling every S by f scales w by 1/f^2 and w S by 1/f.
        self._w /= f2
        self._x /= f2
        self._xx /= f2
        self._y /= factor
        self._xy /= factor
        self.prior = (self.prior[0] * factor, self.prior[1] * factor)
        self.a *= factor
        self.b *= factor

    def _refit(self) -> None:
        assert self.prior is not None
        w, x, y, xx, xy = self._w, self._x, self._y, self._xx, self._xy
        # The prior's line as two pseudo-points (at 1 row and at the span), each weighing like
        # _PRIOR_WEIGHT batches of its own size: they pin the slope while every batch seen has
        # the same size, and give way as soon as sizes vary.
        pa, pb = self.prior
        for n in (1.0, float(self.span)):
            s = max(pa + pb * n, 1e-9)
            pw = _PRIOR_WEIGHT / (s * s)
            w, x, y, xx, xy = w + pw, x + pw * n, y + pw * s, xx + pw * n * n, xy + pw * n * s
        det = w * xx - x * x
        if det <= 1e-12 * w * xx:
            return
        b = (w * xy - x * y) / det
        a = (y - b * x) / w
        if b <= 0:
            # Flat or falling: a batch of any size costs about the same; keep a tiny slope so
            # that larger batches never look free.
            b, a = 1e-6 * max(y / w, 1e-9), y / w
        elif a < 0:
            b, a = xy / xx, 0.0  # through the origin
        self.a, self.b = a, b


_MIN_SEEN_S = 0.05
"""The shortest span the rate meter reads a rate over (one row at its very start is 20 rows/s)."""


class RateMeter:
    """Rows arriving per second: an exponentially decayed count over ``tau_s``."""

    def __init__(self, tau_s: float = 1.0) -> None:
        self.tau = tau_s
        self._value = 0.0
        self._at: float | None = None
        self._since: float | None = None

    def add(self, rows: int, now: float) -> None:
        """Count ``rows`` arriving at ``now`` (seconds, any monotonic clock)."""
        self._value = self._decayed(now) + rows / self.tau
        self._at = now
        if self._since is None:
            self._since = now

    def _decayed(self, now: float) -> float:
        if self._at is None:
            return 0.0
        return self._value * math.exp(-max(0.0, now - self._at) / self.tau)

    def rate(self, now: float) -> float:
        """Rows per second around ``now``.

        The decayed count has seen only ``now - first arrival`` of its ``tau`` window: it is
        divided by the share of the window seen (as Adam corrects its moments), or a burst from
        idle would read as a fraction of its rate for a whole ``tau`` and be served in batches
        too small to keep up with it.
        """
        if self._since is None:
            return 0.0
        seen = 1.0 - math.exp(-max(now - self._since, _MIN_SEEN_S) / self.tau)
        return self._decayed(now) / seen


class Decision(NamedTuple):
    """What to do at a dispatch: send ``rows`` now, or wait ``wait_s`` (then ask again)."""

    rows: int
    wait_s: float
    need: int
    """Rows that wake the batcher before ``wait_s`` passes."""


@dataclass
class SloPolicy:
    """Chooses batch sizes and waits so that every request meets ``objective_s`` (module docstring).

    Args:
        objective_s: The p99 latency objective.
        max_batch: The largest batch allowed (an upper bound, not the setting).
        max_wait_s: The longest a batch may wait for more rows (None: only the objective bounds it).
        headroom: Share of the objective the batcher plans with; the rest is the front's own time
            (decoding, encoding, the network) and noise.
        spare: How much faster than the arrivals the replicas must serve with the batch size
            ``need`` picks.
        gather: Share of the budget a batch may wait for denser traffic to fill it once it
            holds enough rows to keep up.
    """

    objective_s: float
    max_batch: int
    max_wait_s: float | None = None
    headroom: float = 0.95
    spare: float = 1.0
    gather: float = 0.05
    curve: ServiceCurve | None = None
    """The batch-time line to start from (None: a fresh one spanning ``max_batch``)."""
    meter: RateMeter = field(default_factory=RateMeter)
    limit_now: int = 0
    """The batch limit of the latest decision (what ``predict`` walks the queue with)."""

    def __post_init__(self) -> None:
        if self.curve is None:
            self.curve = ServiceCurve(span=self.max_batch)

    @property
    def budget_s(self) -> float:
        """The latency the batcher plans every request to stay within."""
        return self.objective_s * self.headroom

    @property
    def service(self) -> ServiceCurve:
        assert self.curve is not None
        return self.curve

    def cap(self) -> int:
        """The largest batch whose mean service time fits half the objective (at least 1)."""
        c = self.service
        if not c.known:
            return self.max_batch
        slope = c.per_row_s
        n = self.max_batch if slope <= 0 else int((self.objective_s / 2 - c.fixed_s) / slope)
        return max(1, min(self.max_batch, n))

    def below_one_row(self) -> bool:
        """Whether even a batch of one row takes more than half the objective (``cap``'s rule):
        batches are then of one, and a request that waits behind another is late."""
        return self.service.known and self.service.mean(1) > self.objective_s / 2

    def need(self, rate: float, replicas: int, cap: int) -> int:
        """The smallest batch (<= ``cap``) with which ``replicas`` keep up with ``rate`` rows/s."""
        c = self.service
        if not c.known or rate <= 0:
            return 1
        want = rate * self.spare / max(replicas, 1)  # rows per second one replica must take
        # n / (a + b n) >= want  <=>  n (1 - want b) >= want a
        room = 1.0 - want * c.per_row_s
        if room <= 0:
            return cap
        return max(1, min(cap, math.ceil(want * c.fixed_s / room)))

    def limit(self, *, replicas: int, now: float) -> tuple[int, int]:
        """(the most rows a batch takes now, the fewest worth sending)."""
        cap = self.cap()
        self.limit_now = cap
        return cap, self.need(self.meter.rate(now), replicas, cap)

    def current_limit(self) -> int:
        """The batch limit of the latest decision (the cap before any)."""
        return self.limit_now or self.cap()

    def decide(self, *, age_s: float, rows: int, replicas: int, now: float) -> Decision:
        """The decision for a free replica, with ``rows`` waiting and the oldest ``age_s`` old."""
        c = self.service
        if not c.known:
            # Nothing measured yet: one row, at once. Its time is the curve's first guess; a
            # blind batch of many could already be late where one row hardly fits.
            return Decision(1, 0.0, 1)
        cap, need = self.limit(replicas=replicas, now=now)
        tail = c.tail
        # The most rows that keep the oldest request within the budget (at least 1: a request
        # already late is sent at once, with the batch that serves the queue fastest).
        left = self.budget_s - age_s
        fit = int((left / tail - c.fixed_s) / c.per_row_s) if c.per_row_s > 0 else cap
        take = max(1, min(cap, fit)) if left > c.mean(1) * tail else min(cap, rows)
        # Never fewer than the rate needs: a smaller batch saves the oldest request a little and
        # grows the queue behind it, whose every request was admitted (``predict``) on batches
        # of the cap.
        take = max(take, need)
        if rows >= take:
            return Decision(min(rows, take), 0.0, need)
        rate = self.meter.rate(now)
        if rows < need:
            # Too few rows to keep up with the arrivals: wait for `need`, but no longer than
            # the oldest request can afford.
            target = need
            wait = min(left - c.high(need), (need - rows) / rate if rate > 0 else math.inf)
        else:
            # Enough rows to keep up. Where rows arrive densely and the objective has slack,
            # gather a little longer anyway (at most `gather` of the budget since the oldest
            # arrived): fewer, fuller batches cost the front less per request, which is what
            # limits a model whose batches take next to no time.
            gather = self.gather * self.budget_s - age_s
            if gather <= 0 or rate * gather < 1:
                return Decision(rows, 0.0, need)
            target = min(take, rows + int(rate * gather))
            wait = min(gather, left - c.high(target))
        if self.max_wait_s is not None:
            wait = min(wait, self.max_wait_s - age_s)
        if wait < _MIN_WAIT_S:
            return Decision(min(rows, take), 0.0, need)
        return Decision(0, wait, target)

    def predict(
        self,
        *,
        ahead_rows: int,
        rows: int,
        busy_until: list[float],
        free: int,
        now: float,
    ) -> float:
        """Seconds from ``now`` until a request of ``rows`` queued behind ``ahead_rows`` is answered.

        ``busy_until`` holds when each busy replica is expected to be free, ``free`` the replicas
        free now. The queue ahead is taken in batches of ``cap`` by whichever replica frees first.
        """
        c = self.service
        if not c.known:
            return 0.0
        cap = self.limit_now or self.cap()
        heap = [max(t, now) for t in busy_until] + [now] * max(free, 0)
        if not heap:
            heap = [now]
        heapq.heapify(heap)
        remaining = ahead_rows + rows
        # Its own batch fills up behind it with the rows the rate brings: as large as the rate
        # needs (a full cap when the replicas barely keep up), not just what is queued now.
        own = self.need(self.meter.rate(now), len(heap), cap)
        for _ in range(10_000):
            start = heapq.heappop(heap)
            n = min(remaining, cap)
            remaining -= n
            if remaining <= 0:
                return start - now + c.high(max(n, own))
            heapq.heappush(heap, start + c.mean(n))
        return math.inf
