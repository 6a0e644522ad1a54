"""What a batcher can reach at a p99 objective: the SLO policy, fixed settings, and the queueing bound.

The server's SLO policy (modelscale.batching.SloPolicy, the very class the batcher asks) is
run in virtual time against R replicas whose batch of n rows takes S(n) = a + b n (times a
lognormal noise, plus a fixed hand-over both ways), with Poisson arrivals, and so are fixed
``max_batch / max_wait`` batchers. For each objective the highest rate with p99 <= objective and
< 1% shed is found by bisection, averaged over seeds. Beside them:

- the SLO-feasible raw ceiling (as in bench/serving.py): max over n with S(n) <= objective / 2 of
  R n / S(n), every replica busy all the time, no queueing;
- for one replica, the exact bound of greedy batching with the best cap
  (modelscale.plan.batchqueue.BatchServiceQueue: whenever the replica is free it takes everything
  waiting up to the cap), which no work-conserving batcher beats by much with Poisson arrivals.

No server, no load generator: this isolates the policy from the machine's noise, and runs in a
minute. The default lines are MiniLM fp32 seq 32 as bench/serving.py measured it on this machine
(2 x 1 thread: 3.4 + 9.4 n ms; 1 x 2 threads: 1.5 + 4.8 n ms).

Run: .venv/bin/python bench/batching_policy.py [--seeds 3] [--seconds 60]
     [--out bench/results/batching_policy.json] [--md bench/results/batching_policy.md]
"""

from __future__ import annotations

import argparse
import json
import math
import pathlib
import random
from collections import deque
from collections.abc import Callable
from typing import Any

from modelscale.batching import SloPolicy
from modelscale.plan.batchqueue import BatchServiceQueue

OBJECTIVES_MS = (50.0, 100.0, 200.0)
SPLITS = {"2 x 1": (2, 3.4, 9.4), "1 x 2": (1, 1.5, 4.8)}
HANDOVER_MS = 0.75
"""Each way, front to replica and back (IPC and wake-ups), beside the batch itself."""
NOISE = 0.08


def simulate(
    policy: str,
    rate: float,
    *,
    replicas: int,
    a_ms: float,
    b_ms: float,
    objective_ms: float,
    seconds: float,
    seed: int,
    max_batch: int = 8,
    wait_ms: float = 5.0,
) -> tuple[float, float]:
    """(p99 latency ms of answered requests, share shed) of one run."""
    rng = random.Random(seed)
    objective = objective_ms / 1000
    handover = 2 * HANDOVER_MS / 1000
    slo = SloPolicy(objective, 64) if policy == "slo" else None
    greedy = policy == "greedy"

    def service(n: int) -> float:
        return (a_ms + b_ms * n) / 1000 * rng.lognormvariate(0.0, NOISE) + handover

    t, arrivals = 0.0, []
    while t < seconds:
        t += rng.expovariate(rate)
        arrivals.append(t)
    free_at = [0.0] * replicas
    busy: dict[int, tuple[float, int]] = {}
    queue: deque[float] = deque()
    latencies: list[float] = []
    shed = 0
    now, i = 0.0, 0
    wake, wake_rows = math.inf, math.inf
    while i < len(arrivals) or queue:
        free = [r for r in range(replicas) if free_at[r] <= now]
        if queue and free:
            rows = len(queue)
            if slo is not None:
                d = slo.decide(age_s=now - queue[0], rows=rows, replicas=replicas, now=now)
                n, wake, wake_rows = d.rows, now + d.wait_s, d.need
            elif greedy:
                n = min(rows, max_batch)
            else:
                due = queue[0] + wait_ms / 1000
                n = min(rows, max_batch) if rows >= max_batch or now >= due else 0
                wake, wake_rows = due, max_batch
            if n:
                s = service(n)
                r = free[0]
                free_at[r] = now + s
                busy[r] = (now, n)
                for _ in range(n):
                    latencies.append(now + s - queue.popleft())
                if slo is not None:
                    slo.service.observe(n, s)
                wake, wake_rows = math.inf, math.inf
                continue
        nxt = min(
            arrivals[i] if i < len(arrivals) else math.inf,
            wake if queue and free else math.inf,
            min((f for f in free_at if f > now), default=math.inf) if queue else math.inf,
        )
        if nxt == math.inf:
            break
        now = nxt
        if i < len(arrivals) and arrivals[i] == now:
            i += 1
            if slo is not None:
                slo.meter.add(1, now)
                waiting = bool(queue) or all(f > now for f in free_at)
                if waiting:
                    ahead = [
                        start + slo.service.mean(n)
                        for r, (start, n) in busy.items()
                        if free_at[r] > now
                    ]
                    predicted = slo.predict(
                        ahead_rows=len(queue),
                        rows=1,
                        busy_until=ahead,
                        free=sum(f <= now for f in free_at),
                        now=now,
                    )
                    if predicted > objective:
                        shed += 1
                        continue
            queue.append(now)
            if len(queue) > 20 * rate * objective + 1000:
                return math.inf, 0.0  # the queue only grows: far beyond what the objective allows
            if len(queue) >= wake_rows:
                wake = now
    if not latencies:
        return math.inf, 1.0
    latencies.sort()
    p99 = latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))] * 1000
    return p99, shed / (len(latencies) + shed)


def find_max(passes: Callable[[float], bool], lo: float = 5.0, hi: float = 1000.0) -> float:
    """The highest rate that passes (bisection to 1%)."""
    if not passes(lo):
        return 0.0
    while hi / lo > 1.01:
        mid = math.sqrt(lo * hi)
        lo, hi = (mid, hi) if passes(mid) else (lo, mid)
    return lo


def sim_max(policy: str, *, seeds: int, seconds: float, objective_ms: float, **kw: Any) -> float:
    def passes(rate: float) -> bool:
        for seed in range(seeds):
            p99, shed = simulate(
                policy, rate, objective_ms=objective_ms, seconds=seconds, seed=seed, **kw
            )
            if p99 > objective_ms or shed >= 0.01:
                return False
        return True

    return find_max(passes)


def ceiling(replicas: int, a_ms: float, b_ms: float, objective_ms: float) -> tuple[float, int]:
    """The SLO-feasible raw ceiling (req/s) and its batch size."""
    best = (0.0, 0)
    for n in range(1, 257):
        s = a_ms + b_ms * n
        if s <= objective_ms / 2:
            best = max(best, (replicas * n / s * 1000, n))
    return best


def exact_bound(a_ms: float, b_ms: float, objective_ms: float) -> tuple[float, int]:
    """One replica: the highest rate with exact p99 <= objective, over greedy caps."""
    best = (0.0, 0)
    for cap in range(1, 33):
        svc = [a_ms + b_ms * n + 2 * HANDOVER_MS for n in range(1, cap + 1)]

        def passes(rate: float, svc: list[float] = svc) -> bool:
            q = BatchServiceQueue(rate=rate / 1000, service=svc)
            return q.utilisation < 1 and q.quantile(0.99) <= objective_ms

        try:
            best = max(best, (find_max(passes, hi=1000 / svc[0] * cap), cap))
        except (ValueError, ArithmeticError):
            continue
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=60.0, help="virtual seconds per run")
    parser.add_argument("--out", default="bench/results/batching_policy.json")
    parser.add_argument("--md", default="bench/results/batching_policy.md")
    args = parser.parse_args()
    rows = []
    for split, (replicas, a, b) in SPLITS.items():
        for objective in OBJECTIVES_MS:
            kw = dict(replicas=replicas, a_ms=a, b_ms=b, objective_ms=objective)
            run = dict(seeds=args.seeds, seconds=args.seconds, **kw)
            ceil, ceil_batch = ceiling(replicas, a, b, objective)
            row: dict[str, Any] = {
                "split": split,
                "objective_ms": objective,
                "line_ms": [a, b],
                "ceiling": ceil,
                "ceiling_batch": ceil_batch,
                "slo": sim_max("slo", **run),
                "fixed 8/5": sim_max("fixed", max_batch=8, wait_ms=5.0, **run),
                "fixed 4/2": sim_max("fixed", max_batch=4, wait_ms=2.0, **run),
                "best greedy cap": max(
                    (sim_max("greedy", max_batch=c, **run), c) for c in range(1, 13)
                ),
            }
            if replicas == 1:
                row["exact bound"] = exact_bound(a, b, objective)
            print(json.dumps(row), flush=True)
            rows.append(row)
    out = pathlib.Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(rows, indent=2))
    pathlib.Path(args.md).write_text(render(rows, args))


def render(rows: list[dict[str, Any]], args: argparse.Namespace) -> str:
    lines = [
        f"Virtual time, Poisson arrivals, {args.seconds:g} s x {args.seeds} seeds per probe, "
        f"batch time a + b n ms x lognormal({NOISE}) + {2 * HANDOVER_MS:g} ms hand-over; highest "
        "rate with p99 <= objective and < 1% shed (req/s, and % of the raw ceiling).",
        "",
        "| split | objective | raw ceiling (batch) | SLO policy | fixed 8 / 5 ms | fixed 4 / 2 ms "
        "| best greedy cap | exact greedy bound |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        c = r["ceiling"]

        def pct(v: float, c: float = c) -> str:
            return f"{v:.0f} ({v / c:.0%})"

        greedy, cap = r["best greedy cap"]
        exact = r.get("exact bound")
        lines.append(
            f"| {r['split']} | {r['objective_ms']:g} ms | {c:.0f} ({r['ceiling_batch']}) | "
            f"{pct(r['slo'])} | {pct(r['fixed 8/5'])} | {pct(r['fixed 4/2'])} | "
            f"{pct(greedy)} (cap {cap}) | "
            + (f"{pct(exact[0])} (cap {exact[1]})" if exact else "-")
            + " |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
