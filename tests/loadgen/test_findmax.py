"""find_max_rate: bracketing then bisection, repeats that must all pass."""

from __future__ import annotations

import math

from modelscale.loadgen.findmax import find_max_rate
from modelscale.loadgen.stats import LoadStats


def window(rate: float, p99: float, errors: int = 0) -> LoadStats:
    return LoadStats(
        offered_rps=rate,
        duration_s=1.0,
        sent=100,
        ok=100 - errors,
        errors={"503": errors} if errors else {},
        achieved_rps=rate,
        p50_ms=p99 / 2,
        p90_ms=p99,
        p99_ms=p99,
        p999_ms=p99,
        max_ms=p99,
        mean_ms=p99 / 2,
        late=0,
        max_lag_ms=0.0,
    )


def server(capacity: float):
    """p99 grows like an M/M/1 queue's and explodes past capacity."""

    def measure(rate: float) -> LoadStats:
        if rate >= capacity:
            return window(rate, 5000.0)
        return window(rate, 10.0 / (1 - rate / capacity))

    return measure


def test_brackets_up_then_bisects_to_the_tolerance() -> None:
    best, probes = find_max_rate(server(300), start_rps=20, p99_ms=100, tolerance=0.05)
    true_max = 300 * (1 - 10 / 100)  # p99 = 100 ms at 270/s
    assert best is not None and true_max / 1.05 <= best <= true_max
    rates = [p.rate for p in probes]
    assert rates[:4] == [20, 30, 45, 67.5]  # bracketing by x1.5
    failing = [p.rate for p in probes if not p.passed]
    assert min(failing) / best <= 1.05 + 1e-9


def test_brackets_down_from_a_start_that_fails() -> None:
    best, probes = find_max_rate(server(100), start_rps=1000, p99_ms=100, tolerance=0.1)
    assert best is not None and 81 <= best <= 90
    assert not probes[0].passed


def test_every_repeat_must_pass() -> None:
    calls: list[float] = []

    def flaky(rate: float) -> LoadStats:
        calls.append(rate)
        bad = rate > 50 and len(calls) % 2 == 0  # the second window at a high rate fails
        return window(rate, 500.0 if bad else 10.0)

    best, probes = find_max_rate(flaky, start_rps=40, p99_ms=100, repeats=2, tolerance=0.1)
    assert best is not None and best <= 50
    assert all(len(p.windows) == 2 for p in probes)


def test_errors_fail_a_probe() -> None:
    best, _ = find_max_rate(
        lambda r: window(r, 1.0, errors=2 if r > 64 else 0), start_rps=16, p99_ms=100
    )
    assert best is not None and best <= 64


def test_nothing_passes() -> None:
    best, probes = find_max_rate(lambda r: window(r, 1e6), start_rps=8, p99_ms=100, floor_rps=1)
    assert best is None and probes[-1].rate >= 1 and math.isclose(probes[1].rate, 8 / 1.5)
