"""Capacity of one server configuration on one machine: latency at a rate, max rate under a p99 bound.

A configuration is what deploy.yaml sets for one model version on one machine: replicas, threads
per replica, and the batch policy. The machine brings its cores and their speed. The server is
modelled as it runs: the front (one process) spends ``front_ms`` of CPU on each request, then the
batcher forms batches for the replicas; each batch costs ``S(n, T)`` from the performance model
plus ``batch_ms`` of hand-over, plus the wait for the front to read the reply (its event loop is
busy with requests too). When replicas x threads plus the front's (and a local load generator's)
CPU exceed the cores, the front runs slower by that ratio (processor sharing), so a front-bound
server (a fast model) saturates below ``1 / front_ms`` when it shares the cores with its
replicas; the replicas lose more than the stolen time (``Overheads.interference``: caches refilled,
threads stalled at barriers). Plans prefer configurations that stay within the cores.

Which method answers (``Estimate.method``):

- ``"analytic:M/G/c"`` when ``max_batch == 1`` (no batching): closed forms, see ``queueing``;
- ``"analytic:batch-queue"`` for one replica with ``max_wait == 0`` and nearly fixed batch times:
  the exact batch-service queue, see ``batchqueue``;
- ``"simulation"`` otherwise (several replicas with batching, a batch wait, or a front so busy
  that its own queue shapes the tail), see ``simulate``.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Literal

import numpy as np

from modelscale.errors import invalid_parameter
from modelscale.plan.batchqueue import BatchServiceQueue
from modelscale.plan.queueing import MGcQueue
from modelscale.plan.server import Estimate, Overheads, ServerConfig
from modelscale.plan.service import ServiceModel
from modelscale.plan.simulate import SimResult, simulate_batcher

__all__ = [
    "Method",
    "analytic_applies",
    "batch_times_ms",
    "capacity_rps",
    "front_busy",
    "front_cost_ms",
    "max_rate",
    "mean_batch",
    "predict",
    "replica_slowdown",
    "slowdown",
]

Method = Literal["auto", "analytic", "simulation"]

_TAIL = 0.01  # p99
_REL_TOL = 0.01
# The search stops short of saturation: no plan runs a server flat out, and right at saturation
# the exact models need unbounded state while the answer moves by under half a percent.
_MAX_UTILISATION = 0.995
# Above this front utilisation at saturation the front's queue shapes the tail: simulate.
_FRONT_BUSY_LIMIT = 0.5
# Batch times this variable (sd over ~30% of the mean) are not the fixed times the batch queue takes.
_BATCH_SCV_LIMIT = 0.1


def slowdown(
    config: ServerConfig,
    *,
    cores: int,
    rate_rps: float,
    overheads: Overheads,
    mean_batch: float = 1.0,
) -> float:
    """Factor on service times when replicas x threads and the front outgrow ``cores``."""
    front = overheads.front_per_request_ms(mean_batch)
    other = rate_rps * (front + overheads.client_ms) / 1000.0
    return max(1.0, (config.cores + other) / cores)


def mean_batch(
    service: ServiceModel, config: ServerConfig, *, rate_rps: float, overheads: Overheads
) -> float:
    """Rows per batch the batcher forms at ``rate_rps``: an estimate, to spread per-batch costs.

    A batch holds at least its first request and those arriving during the batch wait; when the
    replicas are busy it grows until one batch's time collects the next one:
    ``b = rate x (S(b) + hand-over) / replicas``. Capped at ``max_batch``.
    """
    if config.max_batch == 1 or rate_rps <= 0:
        return 1.0
    lam = rate_rps / 1000.0
    s0 = float(service.time_ms(np.asarray(0.0), config.threads))
    per_item = float(service.time_ms(np.asarray(1.0), config.threads)) - s0
    fixed = s0 + overheads.batch_ms
    waiting = 1.0 + lam * config.max_wait_ms
    room = config.replicas - lam * per_item
    busy = lam * fixed / room if room > 0 else math.inf
    return float(min(config.max_batch, max(1.0, waiting, busy)))


def batch_times_ms(
    service: ServiceModel,
    config: ServerConfig,
    *,
    cores: int,
    rate_rps: float,
    overheads: Overheads,
) -> np.ndarray:
    """Effective time of a batch of 1..max_batch at ``rate_rps`` (slowdown and hand-over in)."""
    return _at_rate(service, config, cores, rate_rps, overheads)[1]


def replica_slowdown(
    config: ServerConfig, *, cores: int, shared: float, interference: float
) -> float:
    """Factor on the model's own time inside a replica, given the ``shared`` slowdown.

    Replicas outgrowing the cores by themselves share them plainly (``replicas x threads /
    cores``). The part of the slowdown that the front and a local load generator add costs a
    replica ``interference`` times more: the stolen time and the caches refilled after it.
    Measured here against a profile taken as replicas run (spinning off), one- and two-thread
    replicas lost alike (1.10-1.16x at 0.12-0.15 cores of front and load generator), so the
    thread count does not enter: ONNX Runtime's thread pool hands a preempted thread's share
    to the others often enough that a barrier does not stall them all.
    """
    alone = max(1.0, config.cores / cores)
    return alone + max(0.0, shared - alone) * interference


def _front_wait_ms(rate_rps: float, cost_ms: float) -> float:
    """How long a finished replica waits on a busy front before its next batch (mean).

    The front reads the reply, then its batcher sends the next batch: two turns of the event loop
    that also parses requests. Each waits out the request in progress, half a request's work on
    average when the front is busy: ``rho x cost`` in all. (The reply does not wait for the whole
    request queue: the loop serves ready callbacks in turn.)
    """
    rho = min(max(rate_rps * cost_ms / 1000.0, 0.0), 1.0)
    return rho * cost_ms


def _at_rate(
    service: ServiceModel, config: ServerConfig, cores: int, rate_rps: float, ov: Overheads
) -> tuple[float, np.ndarray, float]:
    """At ``rate_rps``: the slowdown, the batch times and the front's time per request, all from
    one estimate of the mean batch.

    A batch holds its replica for the model's time (slowed by ``replica_slowdown``), the hand-over,
    and the front's queueing wait: the front reads the reply and sends the next batch from the
    same event loop that parses requests, so a busy front keeps a finished replica idle (measured
    here: digits on one replica, +33% predicted without it, +2% with it).
    """
    b = mean_batch(service, config, rate_rps=rate_rps, overheads=ov)
    f = slowdown(config, cores=cores, rate_rps=rate_rps, overheads=ov, mean_batch=b)
    rf = replica_slowdown(config, cores=cores, shared=f, interference=ov.interference)
    front = ov.front_per_request_ms(b) * f
    held = ov.batch_ms + _front_wait_ms(rate_rps, front)
    svc = service.batch_times_ms(config.max_batch, config.threads) * rf + held
    return f, svc, front


def analytic_applies(
    config: ServerConfig, *, front_busy: float = 0.0, batch_scv: float = 0.0
) -> bool:
    """Whether a closed-form or exact numerical model covers ``config``.

    ``front_busy`` is the front's utilisation when the replicas are saturated: the analytic models
    treat the front as a fixed delay, which stops being true once its own queue matters (a fast
    model whose server spends more time in HTTP than in the model). ``batch_scv`` is the
    variability of a full batch's time: the batch-service queue takes batch times as fixed.
    """
    if config.adaptive:
        return False  # the SLO policy's decisions are only simulated
    if config.max_batch == 1:
        shape_ok = True
    else:
        shape_ok = (
            config.replicas == 1 and config.max_wait_ms == 0 and batch_scv <= _BATCH_SCV_LIMIT
        )
    return shape_ok and front_busy < _FRONT_BUSY_LIMIT


def front_busy(
    service: ServiceModel, config: ServerConfig, *, cores: int, overheads: Overheads
) -> float:
    """The front's utilisation at the rate that saturates the replicas (capped at 1)."""
    if overheads.front_ms <= 0 and overheads.front_batch_ms <= 0:
        return 0.0
    replicas_only = dataclasses.replace(overheads, front_ms=0.0, front_batch_ms=0.0, client_ms=0.0)
    cap = capacity_rps(service, config, cores=cores, overheads=replicas_only)
    return min(1.0, cap * _at_rate(service, config, cores, cap, overheads)[2] / 1000)


def front_cost_ms(
    config: ServerConfig,
    *,
    cores: int,
    rate_rps: float,
    overheads: Overheads,
    mean_batch: float = 1.0,
) -> float:
    """The front's time per request at ``rate_rps``: its CPU per request plus its share of the
    per-batch work, slowed like everything else when the cores are oversubscribed."""
    f = slowdown(config, cores=cores, rate_rps=rate_rps, overheads=overheads, mean_batch=mean_batch)
    return overheads.front_per_request_ms(mean_batch) * f


def capacity_rps(
    service: ServiceModel, config: ServerConfig, *, cores: int, overheads: Overheads
) -> float:
    """Saturation throughput: replicas always busy with full batches, and the front's own limit."""

    def served(rate: float) -> float:
        _, svc, cost = _at_rate(service, config, cores, rate, overheads)
        front = 1000.0 / cost if cost > 0 else math.inf
        return min(front, config.replicas * config.max_batch * 1000.0 / float(svc[-1]))

    # served() falls as the rate rises (the front's CPU slows everything) but can also rise with
    # it (fuller batches spread the per-batch work): find a rate it cannot serve, then bisect the
    # fixed point below it.
    lo, hi = 0.0, served(0.0)
    while 0.0 < hi < 1e12 and served(hi) >= hi:
        lo, hi = hi, 2.0 * hi
    while hi - lo > 1e-9 * hi:
        mid = (lo + hi) / 2.0
        if served(mid) >= mid:
            lo = mid
        else:
            hi = mid
    return float(lo)


def predict(
    service: ServiceModel,
    config: ServerConfig,
    *,
    cores: int,
    rate_rps: float,
    overheads: Overheads | None = None,
    method: Method = "auto",
    sim_requests: int = 30_000,
    seed: int = 0,
) -> Estimate:
    """Latency and utilisation of ``config`` on ``cores`` cores at ``rate_rps`` Poisson requests."""
    ov = overheads or Overheads()
    if not (rate_rps > 0 and math.isfinite(rate_rps)):
        raise invalid_parameter("rate_rps", "a number > 0", rate_rps, where="plan")
    use = _choose(service, config, cores, ov, method)
    cap = capacity_rps(service, config, cores=cores, overheads=ov)
    f, svc, front_cost = _at_rate(service, config, cores, rate_rps, ov)
    lam = rate_rps / 1000.0
    front = _front_delay_ms(rate_rps, front_cost)
    if use == "simulation":
        sim = _simulate(service, config, svc, lam, ov, front_cost, sim_requests, seed)
        ok = sim.stable and rate_rps < cap
        return Estimate(
            rate_rps=rate_rps,
            p99_ms=sim.p99 + ov.network_ms if ok else math.inf,
            mean_ms=sim.mean + ov.network_ms if ok else math.inf,
            utilisation=min(sim.utilisation, 1.0),
            capacity_rps=cap,
            slowdown=f,
            method="simulation",
        )
    if math.isinf(front):
        return Estimate(rate_rps, math.inf, math.inf, 1.0, cap, f, _analytic_name(config))
    if config.max_batch == 1:
        q = MGcQueue(
            rate=lam, servers=config.replicas, mean=float(svc[0]), scv=_scv(service, svc, ov)
        )
        p99 = q.quantile(0.99) if q.stable else math.inf
        mean = q.mean_latency()
        util = min(q.utilisation, 1.0)
    else:
        bq = BatchServiceQueue(rate=lam, service=svc)
        p99 = bq.quantile(0.99)
        mean = bq.mean_latency()
        util = bq.utilisation
    extra = front + ov.network_ms
    return Estimate(rate_rps, p99 + extra, mean + extra, util, cap, f, _analytic_name(config))


def max_rate(
    service: ServiceModel,
    config: ServerConfig,
    *,
    cores: int,
    p99_ms: float,
    overheads: Overheads | None = None,
    method: Method = "auto",
    sim_requests: int = 30_000,
    seed: int = 0,
    near: float | None = None,
) -> Estimate:
    """The highest Poisson rate at which ``config`` keeps p99 latency <= ``p99_ms`` (bisection).

    A rate of 0 means not even a trickle of requests meets the bound (e.g. a batch wait plus one
    batch already exceed it). ``near``: a rate the answer is likely within 15% of (another policy's
    on the same shape): the search brackets it first, which saves simulations.
    """
    ov = overheads or Overheads()
    if not (p99_ms > 0 and math.isfinite(p99_ms)):
        raise invalid_parameter("p99_ms", "a number of ms > 0", p99_ms, where="plan")
    use = _choose(service, config, cores, ov, method)
    cap = capacity_rps(service, config, cores=cores, overheads=ov)
    name = "simulation" if use == "simulation" else _analytic_name(config)

    def over(rate: float) -> float:
        """P(latency > bound) at ``rate``."""
        return _tail_at(service, config, cores, rate, p99_ms, ov, use, sim_requests, seed)

    # With hardly any traffic a request still pays the front, the batch wait and one batch.
    svc0 = batch_times_ms(service, config, cores=cores, rate_rps=0.0, overheads=ov)
    wait = config.max_wait_ms if config.max_batch > 1 else 0.0
    alone = ov.front_per_request_ms() + ov.network_ms + wait + float(svc0[0])
    if alone >= p99_ms:
        return Estimate(0.0, alone, alone, 0.0, cap, 1.0, name, ("no rate meets the bound",))
    hi = cap * _MAX_UTILISATION
    lo = 0.0
    hi_fails = False  # already simulated over the tail at hi
    if near is not None and 0 < near < hi:
        below, above = near * 0.85, min(hi, near * 1.15)
        if over(above) <= _TAIL:
            lo = above
        elif over(below) <= _TAIL:
            lo, hi = below, above
        else:
            hi, hi_fails = below, True
    if lo > 0:
        pass  # bracketed around ``near``
    elif not hi_fails and over(hi) <= _TAIL:
        lo = hi
    else:
        lo = hi / 2.0
        while over(lo) > _TAIL:
            hi, lo = lo, lo / 2.0
            if lo < cap * 1e-4:
                return Estimate(
                    0.0, math.inf, math.inf, 0.0, cap, 1.0, name, ("no rate meets the bound",)
                )
    while hi - lo > _REL_TOL * lo:
        mid = (lo + hi) / 2.0
        if over(mid) <= _TAIL:
            lo = mid
        else:
            hi = mid
    est = predict(
        service, config, cores=cores, rate_rps=lo, overheads=ov, method=method,
        sim_requests=sim_requests, seed=seed,
    )  # fmt: skip
    return Estimate(lo, est.p99_ms, est.mean_ms, est.utilisation, cap, est.slowdown, name)


def _choose(
    service: ServiceModel, config: ServerConfig, cores: int, ov: Overheads, method: Method
) -> str:
    if method not in ("auto", "analytic", "simulation"):
        raise invalid_parameter(
            "method", "'auto', 'analytic' or 'simulation'", method, where="plan"
        )
    busy = front_busy(service, config, cores=cores, overheads=ov)
    full = batch_times_ms(service, config, cores=cores, rate_rps=0.0, overheads=ov)
    applies = analytic_applies(config, front_busy=busy, batch_scv=_scv(service, full, ov, index=-1))
    if method == "analytic" and not applies:
        raise invalid_parameter(
            "method",
            "'simulation' or 'auto' for batches chosen from the objective, several replicas with "
            "batching, a batch wait, batch "
            f"times varying by over {_BATCH_SCV_LIMIT**0.5:.0%}, or a front busy over "
            f"{_FRONT_BUSY_LIMIT:.0%} of the time (here {busy:.0%}); no analytic model covers them",
            method,
            where="plan",
        )
    if method == "auto":
        return "analytic" if applies else "simulation"
    return method


def _scv(service: ServiceModel, svc: np.ndarray, ov: Overheads, index: int = 0) -> float:
    """Variability of a whole batch time: the model's noise; the hand-over is taken as fixed."""
    total = float(svc[index])
    return service.scv * ((total - ov.batch_ms) / total) ** 2 if total > 0 else 0.0


def _analytic_name(config: ServerConfig) -> str:
    return "analytic:M/G/c" if config.max_batch == 1 else "analytic:batch-queue"


def _front_delay_ms(rate_rps: float, cost_ms: float) -> float:
    """Mean time in the front (an M/D/1 queue of ``cost_ms`` per request)."""
    if cost_ms <= 0:
        return 0.0
    rho = rate_rps * cost_ms / 1000.0
    if rho >= 1:
        return math.inf
    return cost_ms * (1.0 + rho / (2.0 * (1.0 - rho)))


def _simulate(
    service: ServiceModel,
    config: ServerConfig,
    svc: np.ndarray,
    lam: float,
    ov: Overheads,
    front_cost: float,
    requests: int,
    seed: int,
    bound: float | None = None,
) -> SimResult:
    """Simulate ``config``'s batcher at ``lam`` requests/ms with the serving overheads applied."""
    return simulate_batcher(
        rate=lam,
        service=svc - ov.batch_ms,
        fixed=ov.batch_ms,
        replicas=config.replicas,
        max_wait=config.max_wait_ms,
        scv=service.scv,
        front_cost=front_cost,
        requests=requests,
        seed=seed,
        bound=bound,
        objective=config.objective_ms,
    )


def _tail_at(
    service: ServiceModel,
    config: ServerConfig,
    cores: int,
    rate: float,
    bound: float,
    ov: Overheads,
    use: str,
    sim_requests: int,
    seed: int,
) -> float:
    _, svc, front_cost = _at_rate(service, config, cores, rate, ov)
    lam = rate / 1000.0
    if use == "simulation":
        sim = _simulate(
            service, config, svc, lam, ov, front_cost, sim_requests, seed, bound - ov.network_ms
        )
        return float(sim.sf_at) if sim.stable and sim.sf_at is not None else 1.0
    front = _front_delay_ms(rate, front_cost)
    t = bound - ov.network_ms - front
    if math.isinf(front) or t <= 0:
        return 1.0
    if config.max_batch == 1:
        q = MGcQueue(
            rate=lam, servers=config.replicas, mean=float(svc[0]), scv=_scv(service, svc, ov)
        )
        return q.sf(t)
    return BatchServiceQueue(rate=lam, service=svc).sf(t)
