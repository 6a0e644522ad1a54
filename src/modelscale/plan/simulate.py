"""Discrete-event simulation of the front's batcher and its replicas, as the server runs them.

The simulated server: Poisson requests pass the front (one process, a fixed CPU cost per request,
first come first served), then wait in one model version's batcher. The oldest waiting request's
batch closes when ``max_batch`` requests wait or ``max_wait`` after that request arrived; the batch
then goes to the replica that became free first (if all are busy it waits for one, still filling up
to ``max_batch``); a batch of ``n`` takes ``service[n-1]`` times a gamma noise of the given scv, plus
a fixed hand-over.

With a p99 objective (``objective``) the batches are formed instead by the server's own SLO policy
(``modelscale.batching.SloPolicy``, the class the batcher asks at every dispatch), in virtual time:
it learns the batch times from the simulated batches as the server learns them from its replicas,
chooses each batch's rows and wait, and sheds a request it predicts would miss the objective (a
shed request counts as over any bound).

Arrivals, noise and the front are vectorised with numpy; only the batch loop runs in Python, one
step per batch. Seeds are fixed, and arrivals are drawn for unit rate and scaled, so simulations at
different rates share their randomness (common random numbers): latency then grows smoothly with
the rate, which is what the max-rate search relies on.
"""

from __future__ import annotations

import bisect
import heapq
import math
from collections import deque
from dataclasses import dataclass

import numpy as np

from modelscale.batching import ServiceCurve, SloPolicy
from modelscale.errors import invalid_parameter

__all__ = ["SimResult", "simulate_batcher"]


@dataclass(frozen=True)
class SimResult:
    """Latency and throughput of one simulated run (times in the unit of the inputs).

    Attributes:
        rate: Offered arrival rate.
        requests: Requests measured (after the warm-up share).
        p50: Median latency.
        p90: 90th percentile latency.
        p99: 99th percentile latency.
        mean: Mean latency.
        sf_at: ``P(latency > bound)`` for the bound asked for (None if none was).
        throughput: Completed requests per time unit over the measured span.
        mean_batch: Mean requests per batch.
        utilisation: Busy fraction of the replicas.
        little_in_system: Time-average number of requests in the system (Little's L).
        little_rate_x_mean: Arrival rate times mean latency (Little's lambda W), for the check.
        stable: False when the queue kept growing to the end (the rate is beyond capacity).
        shed: Share of the measured requests refused as predicted late (the SLO policy only).
    """

    rate: float
    requests: int
    p50: float
    p90: float
    p99: float
    mean: float
    sf_at: float | None
    throughput: float
    mean_batch: float
    utilisation: float
    little_in_system: float
    little_rate_x_mean: float
    stable: bool
    shed: float = 0.0


def _front(arrivals: np.ndarray, cost: float) -> np.ndarray:
    """Departure times from a FIFO single server with a fixed cost: Lindley, vectorised.

    ``d_i = max(a_i, d_{i-1}) + c`` unrolls to ``d_i = (i + 1) c + max_{k <= i} (a_k - k c)``.
    """
    if cost <= 0:
        return arrivals
    k = np.arange(arrivals.size)
    return np.maximum.accumulate(arrivals - k * cost) + (k + 1) * cost


def simulate_batcher(
    *,
    rate: float,
    service: np.ndarray | list[float],
    replicas: int = 1,
    max_wait: float = 0.0,
    scv: float = 0.0,
    front_cost: float = 0.0,
    fixed: float = 0.0,
    requests: int = 20_000,
    warmup: float = 0.1,
    seed: int = 0,
    bound: float | None = None,
    objective: float | None = None,
) -> SimResult:
    """Simulate ``requests`` Poisson arrivals through the batcher and replicas.

    Args:
        rate: Arrival rate (per time unit of ``service``).
        service: ``s_1 .. s_B``: mean service time of a batch of each size (B = max_batch).
        replicas: Replica processes.
        max_wait: How long a batch waits after its first request (0: go as soon as a replica is
            free).
        scv: Squared coefficient of variation of batch service times (gamma noise; 0: exact).
        front_cost: Time the front spends on each request before the batcher sees it.
        fixed: Time added to every batch without noise (the hand-over to a replica).
        requests: Arrivals to simulate.
        warmup: Leading share of requests left out of the statistics.
        seed: Random seed.
        bound: Also report ``P(latency > bound)`` (shed requests count as over it).
        objective: A p99 objective: batches come from the server's SLO policy (``max_wait`` is
            then unused and ``service`` spans the batches it may send).
    """
    svc = np.asarray(service, dtype=float)
    if svc.ndim != 1 or svc.size < 1 or np.any(svc + fixed <= 0) or np.any(svc < 0) or fixed < 0:
        raise invalid_parameter("service", "positive batch times", service, where="simulation")
    if not (rate > 0 and math.isfinite(rate)):
        raise invalid_parameter("rate", "a number > 0", rate, where="simulation")
    if replicas < 1:
        raise invalid_parameter("replicas", "an integer >= 1", replicas, where="simulation")
    if requests < 100:
        raise invalid_parameter("requests", "an integer >= 100", requests, where="simulation")
    if objective is not None and not (objective > 0 and math.isfinite(objective)):
        raise invalid_parameter("objective", "a p99 objective > 0", objective, where="simulation")
    rng = np.random.default_rng(seed)
    arrivals = np.cumsum(rng.exponential(1.0, requests)) / rate
    if scv > 0:
        shape = 1.0 / scv
        noise = rng.gamma(shape, 1.0 / shape, requests)
    else:
        noise = np.ones(requests)
    ready = _front(arrivals, front_cost)
    if objective is None:
        starts, sizes, ends, busy = _batch_loop(
            ready.tolist(), svc.tolist(), noise.tolist(), replicas, max_wait, fixed
        )
        done = np.repeat(np.asarray(ends), np.asarray(sizes))
    else:
        starts, sizes, ends, busy, finished = _policy_loop(
            ready.tolist(), svc.tolist(), noise.tolist(), replicas, fixed, objective
        )
        done = np.asarray(finished)  # inf where shed
    latency = done - arrivals
    first = int(requests * warmup)
    lat = latency[first:]
    answered = np.isfinite(lat)
    t0, t1 = arrivals[first], arrivals[-1]
    span = max(t1 - t0, 1e-12)
    completed = np.count_nonzero((done >= t0) & (done <= t1))
    # Little's law over [t0, t1]: integrate the number in system from arrivals and departures.
    in_system = _time_average_in_system(
        arrivals[np.isfinite(done)], done[np.isfinite(done)], t0, t1
    )
    # Shed requests are infinitely late: order statistics, as interpolating to one gives nan.
    if answered.all():
        p50, p90, p99 = np.quantile(lat, [0.5, 0.9, 0.99])
    else:
        p50, p90, p99 = np.quantile(lat, [0.5, 0.9, 0.99], method="inverted_cdf")
    # A queue past capacity grows to the end: its last tenth waits far longer than its second.
    tenth = max(requests // 10, 1)
    finite = np.where(np.isfinite(latency), latency, np.nan)
    early = float(np.nanmedian(finite[tenth : 2 * tenth])) if answered.any() else math.inf
    late = float(np.nanmedian(finite[-tenth:])) if answered.any() else math.inf
    stable = late <= 2.0 * early + 5.0 * (float(svc[-1]) + fixed)
    batch_starts = np.asarray(starts)
    measured = batch_starts >= t0
    return SimResult(
        rate=float(rate),
        requests=int(lat.size),
        p50=float(p50),
        p90=float(p90),
        p99=float(p99),
        mean=float(lat[answered].mean()) if answered.any() else math.inf,
        sf_at=None if bound is None else float(np.mean(lat > bound)),
        throughput=float(completed / span),
        mean_batch=float(np.mean(np.asarray(sizes)[measured])) if measured.any() else 0.0,
        utilisation=float(min(1.0, busy / (replicas * (ends[-1] - float(arrivals[0]))))),
        little_in_system=float(in_system),
        little_rate_x_mean=float(rate * lat[answered].mean()) if answered.any() else math.inf,
        stable=stable,
        shed=float(1.0 - answered.mean()),
    )


def _batch_loop(
    ready: list[float],
    svc: list[float],
    noise: list[float],
    replicas: int,
    max_wait: float,
    fixed: float,
) -> tuple[list[float], list[int], list[float], float]:
    """Form and dispatch batches; returns batch start times, sizes, end times and busy time."""
    n, big_b = len(ready), len(svc)
    free = [(0.0, r) for r in range(replicas)]  # (time the replica is free, replica id)
    starts: list[float] = []
    sizes: list[int] = []
    ends: list[float] = []
    busy = 0.0
    i = 0
    k = 0
    while i < n:
        head = ready[i]
        full = ready[i + big_b - 1] if i + big_b - 1 < n else math.inf
        close = min(head + max_wait, full)
        t_free, rid = free[0]
        start = close if close > t_free else t_free
        j = bisect.bisect_right(ready, start, i, min(i + big_b, n))
        size = j - i
        took = svc[size - 1] * noise[k] + fixed
        heapq.heapreplace(free, (start + took, rid))
        starts.append(start)
        sizes.append(size)
        ends.append(start + took)
        busy += took
        i = j
        k += 1
    return starts, sizes, ends, busy


def _policy_loop(
    ready: list[float],
    svc: list[float],
    noise: list[float],
    replicas: int,
    fixed: float,
    objective: float,
) -> tuple[list[float], list[int], list[float], float, list[float]]:
    """Batches as the server's SLO policy forms them, event by event in virtual time.

    The policy works in seconds (its clocks and constants are the server's); times here are in the
    simulation's unit (ms), so they are divided by 1,000 on the way in. It starts from the line
    through the given batch times, as the server starts from a stored profile, and learns from
    every simulated batch. Returns batch starts, sizes, ends, busy time and each request's finish
    time (inf when shed).
    """
    n, big_b = len(ready), len(svc)
    sizes_n = np.arange(1, big_b + 1, dtype=float)
    full = (np.asarray(svc) + fixed) / 1000.0
    slope, level = np.polyfit(sizes_n, full, 1) if big_b > 1 else (full[0] / 2, full[0] / 2)
    prior = (max(float(level), 1e-7), max(float(slope), 1e-7))
    policy = SloPolicy(objective / 1000.0, big_b, curve=ServiceCurve(prior=prior, span=big_b))
    curve, meter = policy.service, policy.meter
    idle = list(range(replicas))  # replicas free now
    running: list[tuple[float, int]] = []  # (free at, replica) of the busy ones, a heap
    began = [0.0] * replicas
    rows_on = [0] * replicas
    finished = [math.inf] * n
    starts: list[float] = []
    sizes: list[int] = []
    ends: list[float] = []
    queue: deque[int] = deque()
    busy = 0.0
    now, i, k = 0.0, 0, 0
    wake, wake_rows = math.inf, math.inf
    while i < n or queue:
        while running and running[0][0] <= now:
            idle.append(heapq.heappop(running)[1])
        if queue and idle:
            d = policy.decide(
                age_s=(now - ready[queue[0]]) / 1000.0,
                rows=len(queue),
                replicas=replicas,
                now=now / 1000.0,
            )
            if d.rows:
                size = min(d.rows, len(queue), big_b)
                took = svc[size - 1] * noise[k] + fixed
                r = idle.pop()
                heapq.heappush(running, (now + took, r))
                began[r], rows_on[r] = now, size
                for _ in range(size):
                    finished[queue.popleft()] = now + took
                curve.observe(size, took / 1000.0)
                starts.append(now)
                sizes.append(size)
                ends.append(now + took)
                busy += took
                k += 1
                wake, wake_rows = math.inf, math.inf
                continue
            wake, wake_rows = now + max(d.wait_s * 1000.0, 1e-6), d.need
        nxt = min(
            ready[i] if i < n else math.inf,
            wake if queue and idle else math.inf,
            running[0][0] if queue and running else math.inf,
        )
        if nxt == math.inf:
            break
        now = nxt
        while i < n and ready[i] <= now:
            j, i = i, i + 1
            meter.add(1, now / 1000.0)
            every_replica_busy = not idle and running[0][0] > now
            if queue or every_replica_busy:
                # The server's shedding rule: only a queue can make a request late.
                ahead = [began[r] / 1000.0 + curve.mean(rows_on[r]) for t, r in running if t > now]
                predicted = policy.predict(
                    ahead_rows=len(queue),
                    rows=1,
                    busy_until=ahead,
                    free=replicas - len(ahead),
                    now=now / 1000.0,
                )
                if predicted > policy.objective_s:
                    continue  # shed: finished stays inf
            queue.append(j)
            if len(queue) >= wake_rows:
                wake = now
    return starts, sizes, ends, busy, finished


def _time_average_in_system(arr: np.ndarray, dep: np.ndarray, t0: float, t1: float) -> float:
    """Mean number of requests in the system over [t0, t1]."""
    a = np.clip(arr, t0, t1)
    d = np.clip(dep, t0, t1)
    return float(np.sum(np.maximum(d - a, 0.0)) / max(t1 - t0, 1e-12))
