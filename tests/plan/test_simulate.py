"""The batcher simulation: Little's law, closed forms, batch waits, the front, determinism."""

from __future__ import annotations

import numpy as np
import pytest

from modelscale.errors import InvalidInput
from modelscale.plan import MGcQueue, simulate_batcher
from modelscale.plan.simulate import _front


@pytest.mark.parametrize(
    ("replicas", "max_wait", "service"),
    [(1, 0.0, [1.0]), (2, 0.0, [1.0, 1.6, 2.2, 2.8]), (3, 2.0, [1.0, 1.5, 2.0, 2.5, 3.0, 3.5])],
)
def test_littles_law(replicas: int, max_wait: float, service: list[float]) -> None:
    r = simulate_batcher(
        rate=replicas * 0.7, service=service, replicas=replicas, max_wait=max_wait,
        requests=40_000, seed=1,
    )  # fmt: skip
    assert r.stable
    assert r.little_in_system == pytest.approx(r.little_rate_x_mean, rel=0.03)
    assert r.throughput == pytest.approx(r.rate, rel=0.03)


@pytest.mark.parametrize(("servers", "rho"), [(1, 0.6), (1, 0.85), (2, 0.8), (4, 0.8)])
def test_matches_mgc_without_batching(servers: int, rho: float) -> None:
    mean, scv = 8.0, 0.05
    rate = rho * servers / mean
    q = MGcQueue(rate=rate, servers=servers, mean=mean, scv=scv)
    r = simulate_batcher(
        rate=rate, service=[mean], replicas=servers, scv=scv, requests=120_000, seed=2
    )
    assert r.p99 == pytest.approx(q.quantile(0.99), rel=0.10)
    assert r.mean == pytest.approx(q.mean_latency(), rel=0.05)


def test_mm1_with_exponential_noise() -> None:
    r = simulate_batcher(rate=0.5, service=[1.0], scv=1.0, requests=150_000, seed=3)
    assert r.p99 == pytest.approx(np.log(100) / 0.5, rel=0.08)


def test_batch_wait_at_light_load() -> None:
    # Requests rarely meet: each waits max_wait for company, then runs alone.
    r = simulate_batcher(rate=0.001, service=[1.0, 1.5], max_wait=5.0, requests=2_000, seed=0)
    assert r.p50 == pytest.approx(6.0, rel=0.01)
    assert r.mean_batch == pytest.approx(1.0, abs=0.02)


def test_full_batches_close_early() -> None:
    # Far more requests than one replica can take one by one: batches fill before max_wait.
    r = simulate_batcher(rate=2.0, service=[1.0, 1.1, 1.2, 1.3], max_wait=50.0, requests=5_000)
    assert r.mean_batch > 3.5
    assert r.p99 < 10.0


def test_front_is_a_fifo_queue() -> None:
    rng = np.random.default_rng(0)
    a = np.cumsum(rng.exponential(1.0, 500))
    d, prev = [], 0.0
    for t in a:
        prev = max(t, prev) + 0.8
        d.append(prev)
    assert np.allclose(_front(a, 0.8), d)


def test_seeded_and_bad_input() -> None:
    a = simulate_batcher(rate=0.5, service=[1.0, 1.2], replicas=2, scv=0.2, requests=3_000, seed=9)
    b = simulate_batcher(rate=0.5, service=[1.0, 1.2], replicas=2, scv=0.2, requests=3_000, seed=9)
    assert a == b
    assert not simulate_batcher(rate=3.0, service=[1.0], requests=20_000).stable
    with pytest.raises(InvalidInput, match="rate"):
        simulate_batcher(rate=0.0, service=[1.0])
    with pytest.raises(InvalidInput, match="replicas"):
        simulate_batcher(rate=1.0, service=[1.0], replicas=0)


def test_noise_spares_the_fixed_hand_over() -> None:
    # Exponential noise on a 0.01 ms model, a fixed 1 ms hand-over: latency stays near 1 ms.
    r = simulate_batcher(rate=0.001, service=[0.01], fixed=1.0, scv=1.0, requests=5_000)
    assert 1.0 < r.p99 < 1.06


def test_the_slo_policy_meets_the_objective_below_capacity_and_sheds_beyond_it() -> None:
    # MiniLM-like batches on two replicas: 3.4 + 9.4 n ms, p99 objective 100 ms, cap 5 rows.
    svc = [3.4 + 9.4 * n for n in range(1, 6)]
    kw = {"service": svc, "replicas": 2, "scv": 0.0064, "fixed": 1.5, "requests": 8_000}
    light = simulate_batcher(rate=0.08, bound=100.0, objective=100.0, **kw)
    assert light.shed == 0.0 and light.p99 < 100.0 and light.stable
    # Far past capacity (~2 x 5 rows / 51 ms = 196 req/s): the greedy queue grows without end,
    # the policy refuses what it predicts late and keeps what it answers within the objective.
    greedy = simulate_batcher(rate=0.3, bound=100.0, **kw)
    policy = simulate_batcher(rate=0.3, bound=100.0, objective=100.0, **kw)
    assert not greedy.stable and greedy.sf_at is not None and greedy.sf_at > 0.5
    assert 0.2 < policy.shed < 0.6 and policy.stable
    assert policy.p99 == float("inf")  # over 1% shed: the 99th percentile is a refused request
    assert policy.sf_at is not None and policy.sf_at >= policy.shed
    assert policy.mean < 100.0  # what it answered, it answered in time
    assert policy.mean_batch > 2.5  # it batches up to its cap to keep up


def test_the_slo_policy_batches_only_what_the_rate_needs() -> None:
    svc = [3.4 + 9.4 * n for n in range(1, 6)]
    kw = {"service": svc, "replicas": 2, "fixed": 1.5, "requests": 6_000, "objective": 100.0}
    # At 40 req/s one replica keeps up with batches of 1: nothing waits for a batch to fill.
    assert simulate_batcher(rate=0.04, **kw).mean_batch < 1.1
    assert simulate_batcher(rate=0.16, **kw).mean_batch > 1.5


@pytest.mark.parametrize("objective", [0.0, -5.0, float("nan"), float("inf")])
def test_a_bad_objective_is_refused(objective: float) -> None:
    with pytest.raises(InvalidInput, match="objective"):
        simulate_batcher(rate=0.1, service=[1.0, 1.5], objective=objective)
