"""One configuration's max rate: analytic vs simulated, oversubscription, the method named."""

from __future__ import annotations

import math

import pytest

from modelscale.errors import InvalidInput
from modelscale.plan import (
    Overheads,
    ServerConfig,
    ServiceModel,
    ServicePoint,
    fit_service_model,
    max_rate,
    predict,
)
from modelscale.plan.capacity import batch_times_ms, capacity_rps, slowdown

NO_OVERHEAD = Overheads(front_ms=0.0, front_batch_ms=0.0, batch_ms=0.0)


@pytest.mark.parametrize(
    ("config", "method"),
    [
        (ServerConfig(1, 2), "analytic:M/G/c"),
        (ServerConfig(2, 1), "analytic:M/G/c"),
        (ServerConfig(1, 2, 8, 0.0), "analytic:batch-queue"),
    ],
)
def test_analytic_and_simulation_agree_within_10_percent(
    service: ServiceModel, config: ServerConfig, method: str
) -> None:
    analytic = max_rate(service, config, cores=2, p99_ms=40.0)
    simulated = max_rate(
        service, config, cores=2, p99_ms=40.0, method="simulation", sim_requests=40_000
    )
    assert analytic.method == method
    assert simulated.method == "simulation"
    assert analytic.rate_rps == pytest.approx(simulated.rate_rps, rel=0.10)
    assert analytic.p99_ms <= 40.0 + 1e-6


def test_batching_on_several_replicas_is_simulated(service: ServiceModel) -> None:
    est = max_rate(service, ServerConfig(2, 1, 8, 0.0), cores=2, p99_ms=40.0)
    assert est.method == "simulation"
    with pytest.raises(InvalidInput, match="simulation"):
        max_rate(service, ServerConfig(2, 1, 8, 0.0), cores=2, p99_ms=40.0, method="analytic")


def test_max_rate_meets_the_bound_and_is_tight(service: ServiceModel) -> None:
    cfg = ServerConfig(2, 1, 4, 2.0)
    est = max_rate(service, cfg, cores=2, p99_ms=40.0)
    assert 0 < est.rate_rps < est.capacity_rps
    above = predict(service, cfg, cores=2, rate_rps=est.rate_rps * 1.05)
    assert above.p99_ms > 40.0


def test_oversubscription_slows_everything(service: ServiceModel) -> None:
    fits = ServerConfig(2, 1)
    over = ServerConfig(4, 1)
    assert slowdown(fits, cores=2, rate_rps=0.0, overheads=NO_OVERHEAD) == 1.0
    assert slowdown(over, cores=2, rate_rps=0.0, overheads=NO_OVERHEAD) == 2.0
    # The front's CPU counts too: 500 req/s x 1 ms = half a core.
    assert (
        slowdown(
            fits, cores=2, rate_rps=500.0, overheads=Overheads(front_ms=1.0, front_batch_ms=0.0)
        )
        == 1.25
    )
    t_fit = batch_times_ms(service, fits, cores=2, rate_rps=0.0, overheads=NO_OVERHEAD)
    t_over = batch_times_ms(service, over, cores=2, rate_rps=0.0, overheads=NO_OVERHEAD)
    assert t_over[0] == pytest.approx(2 * t_fit[0])
    # Twice the replicas on the same cores buy no capacity.
    cap_fit = capacity_rps(service, fits, cores=2, overheads=NO_OVERHEAD)
    cap_over = capacity_rps(service, over, cores=2, overheads=NO_OVERHEAD)
    assert cap_over == pytest.approx(cap_fit, rel=1e-6)


def test_the_front_limits_capacity(service: ServiceModel) -> None:
    ov = Overheads(front_ms=2.0, front_batch_ms=0.0)
    cap = capacity_rps(service, ServerConfig(2, 1, 32), cores=64, overheads=ov)
    assert cap == pytest.approx(500.0, rel=1e-6)


def test_a_bound_below_one_request_gives_zero(service: ServiceModel) -> None:
    est = max_rate(service, ServerConfig(1, 1, 8, 10.0), cores=2, p99_ms=10.0)
    assert est.rate_rps == 0.0  # 10 ms batch wait + 3 ms service > 10 ms
    assert "no rate" in est.notes[0]


def test_predict_light_load(service: ServiceModel) -> None:
    est = predict(service, ServerConfig(1, 1), cores=2, rate_rps=1.0, overheads=NO_OVERHEAD)
    assert est.p99_ms == pytest.approx(3.0, rel=0.02)  # S(1, 1) = 1 + 2 ms, hardly any queueing
    assert est.utilisation == pytest.approx(0.003, rel=0.01)
    unstable = predict(service, ServerConfig(1, 1), cores=2, rate_rps=1000.0)
    assert math.isinf(unstable.p99_ms)


def test_bad_configs() -> None:
    with pytest.raises(InvalidInput, match="replicas"):
        ServerConfig(0, 1)
    with pytest.raises(InvalidInput, match="max_wait_ms"):
        ServerConfig(1, 1, 8, -1.0)
    with pytest.raises(InvalidInput, match="front_ms"):
        Overheads(front_ms=-0.1)


def test_a_busy_front_is_simulated() -> None:
    from modelscale.plan import fit_service_model
    from tests.plan.conftest import linear_points

    fast = fit_service_model(linear_points(fixed=0.01, per_item=0.002))  # a model of microseconds
    cfg = ServerConfig(2, 1)
    ov = Overheads(front_ms=0.4, batch_ms=0.05)
    assert max_rate(fast, cfg, cores=2, p99_ms=10.0, overheads=ov).method == "simulation"
    with pytest.raises(InvalidInput, match="front"):
        max_rate(fast, cfg, cores=2, p99_ms=10.0, overheads=ov, method="analytic")
    quiet = Overheads(front_ms=0.0, front_batch_ms=0.0, batch_ms=0.05)
    assert max_rate(fast, cfg, cores=2, p99_ms=10.0, overheads=quiet).method == "analytic:M/G/c"


def test_variable_batches_are_simulated() -> None:
    from modelscale.plan import ServicePoint, fit_service_model

    pts = [ServicePoint(b, 1, 2.0 * b, p50_ms=2.0 * b, p99_ms=2.0 * b * 2.5) for b in (1, 2, 4, 8)]
    noisy = fit_service_model(pts)
    assert noisy.scv > 0.1
    est = max_rate(noisy, ServerConfig(1, 1, 8), cores=2, p99_ms=60.0, overheads=NO_OVERHEAD)
    assert est.method == "simulation"
    unbatched = max_rate(noisy, ServerConfig(1, 1), cores=2, p99_ms=60.0, overheads=NO_OVERHEAD)
    assert unbatched.method == "analytic:M/G/c"  # M/G/c takes the variability into account


def test_a_front_bound_server_saturates_below_one_over_its_cost_when_sharing_cores() -> None:
    # A model that takes ~nothing: the front (0.1 ms CPU per request) is the limit.
    tiny = fit_service_model(
        [ServicePoint(b, t, 0.001 * b, 0.001 * b, 0.0011 * b) for b in (1, 8) for t in (1, 2)]
    )
    ov = Overheads(front_ms=0.1, front_batch_ms=0.0, batch_ms=0.0)
    # Alone on its cores the front would reach 1 / 0.1 ms = 10,000 req/s; sharing 2 cores with 2
    # busy replicas it runs slower by (2 + r x 0.1 ms) / 2, so r x 0.1 x (1 + r x 0.05e-3) = 1000.
    a, b = 0.1 * 0.05e-3, 0.1  # a r^2 + b r = 1000
    expected = (-b + (b * b + 4 * a * 1000) ** 0.5) / (2 * a)  # 7,320 req/s
    got = capacity_rps(tiny, ServerConfig(2, 1), cores=2, overheads=ov)
    assert got == pytest.approx(expected, rel=1e-3)
    # With cores to spare (8), nothing is slowed: the front's own limit.
    assert capacity_rps(tiny, ServerConfig(2, 1), cores=8, overheads=ov) == pytest.approx(
        10_000, rel=1e-3
    )


def test_per_batch_front_work_does_not_cap_capacity_at_batch_one_cost() -> None:
    # Front: 0.05 ms per request + 0.4 ms per batch. Idle, a batch holds 1 request (0.45 ms,
    # 2,222 req/s); saturated, batches are full (0.05 + 0.4 / 8 = 0.1 ms): the capacity is the
    # latter's, found past the batch-of-one figure.
    tiny = fit_service_model(
        [ServicePoint(b, t, 0.001 * b, 0.001 * b, 0.0011 * b) for b in (1, 8) for t in (1, 2)]
    )
    ov = Overheads(front_ms=0.05, front_batch_ms=0.4, batch_ms=0.0)
    got = capacity_rps(tiny, ServerConfig(2, 1, 8, 5.0), cores=8, overheads=ov)
    assert got == pytest.approx(10_000, rel=0.01)
    assert capacity_rps(tiny, ServerConfig(2, 1), cores=8, overheads=ov) == pytest.approx(
        1000 / 0.45, rel=0.01
    )


def test_replicas_lose_more_than_the_stolen_time() -> None:
    from modelscale.plan.capacity import replica_slowdown

    # 0.2 cores of front work on 2 cores full of replicas: the shared slowdown is 1.1.
    shared = slowdown(
        ServerConfig(2, 1),
        cores=2,
        rate_rps=1000.0,
        overheads=Overheads(front_ms=0.2, front_batch_ms=0.0),
    )
    assert shared == pytest.approx(1.1)
    one = replica_slowdown(ServerConfig(2, 1), cores=2, shared=shared, interference=2.0)
    two = replica_slowdown(ServerConfig(1, 2), cores=2, shared=shared, interference=2.0)
    assert one == pytest.approx(1.2) and two == pytest.approx(1.2)
    # Replicas oversubscribing the cores by themselves share them plainly.
    assert replica_slowdown(ServerConfig(4, 1), cores=2, shared=2.0, interference=2.0) == 2.0
    assert replica_slowdown(ServerConfig(1, 1), cores=2, shared=1.0, interference=2.0) == 1.0
    with pytest.raises(InvalidInput, match=r"interference.*a factor >= 0"):
        Overheads(interference=-1.0)


def test_a_busy_front_keeps_a_finished_replica_waiting() -> None:
    # One replica of a 1 ms model, no batching: alone it serves 1,000 req/s less its hand-over.
    # A front costing 0.3 ms per request makes each finished replica wait rho x 0.3 ms for the
    # reply to be read and the next request sent, so it serves fewer.
    model = fit_service_model(
        [ServicePoint(b, t, 1.0 * b, 1.0 * b, 1.05 * b) for b in (1, 8) for t in (1, 2)]
    )
    cfg = ServerConfig(1, 1)
    quiet = capacity_rps(model, cfg, cores=8, overheads=NO_OVERHEAD)
    busy = capacity_rps(
        model, cfg, cores=8, overheads=Overheads(front_ms=0.3, front_batch_ms=0.0, batch_ms=0.0)
    )
    assert quiet == pytest.approx(1000, rel=1e-3)
    # r = 1000 / (1 + (r / 1000 x 0.3) x 0.3): r = 923.
    assert busy == pytest.approx(923, rel=0.005)
