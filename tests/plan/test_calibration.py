"""Predicted vs measured: the record, its error, and the front cost that would reconcile them."""

from __future__ import annotations

import dataclasses

import pytest

from modelscale.errors import InvalidInput
from modelscale.plan import (
    Overheads,
    ServerConfig,
    ServiceModel,
    compare_with_measurement,
    fit_front_costs,
    implied_front_ms,
    max_rate,
    measured_overheads,
)
from modelscale.store import open_store


def test_record_and_error(service: ServiceModel) -> None:
    cfg = ServerConfig(2, 1)
    predicted = max_rate(service, cfg, cores=2, p99_ms=40.0).rate_rps
    res = compare_with_measurement(
        service, cfg, cores=2, p99_ms=40.0, measured_rps=predicted / 1.1,
        model={"name": "m"}, load_run_id=7, plan_run_id=3,
    )  # fmt: skip
    assert res.kind == "plan"
    assert res.predicted_rps == pytest.approx(predicted)
    assert res.error == pytest.approx(0.10, rel=1e-6)
    assert res.within_tolerance
    assert "+10.0%" in res.summary and "within" in res.summary
    far = compare_with_measurement(service, cfg, cores=2, p99_ms=40.0, measured_rps=predicted / 2)
    assert not far.within_tolerance
    run_id = open_store().record(res)
    stored = open_store().run(run_id)
    assert stored.results["measured_rps"] == pytest.approx(predicted / 1.1)
    assert stored.results["config"]["replicas"] == 2


def test_implied_front_cost_reconciles(service: ServiceModel) -> None:
    cfg = ServerConfig(2, 1)
    ov = Overheads(front_ms=0.0, front_batch_ms=0.0, batch_ms=0.0)
    truth = dataclasses.replace(ov, front_ms=1.5)
    measured = max_rate(service, cfg, cores=2, p99_ms=40.0, overheads=truth).rate_rps
    front = implied_front_ms(
        service, cfg, cores=2, p99_ms=40.0, measured_rps=measured, overheads=ov
    )
    assert front == pytest.approx(1.5, rel=0.05)
    # Faster than the model allows even with a free front: no front cost explains it.
    assert (
        implied_front_ms(service, cfg, cores=2, p99_ms=40.0, measured_rps=1e6, overheads=ov) is None
    )


def test_bad_measurement(service: ServiceModel) -> None:
    with pytest.raises(InvalidInput, match="measured_rps"):
        compare_with_measurement(service, ServerConfig(1, 1), cores=2, p99_ms=40.0, measured_rps=0)


def test_calibrated_prediction_uses_the_measured_front_cost(service: ServiceModel) -> None:
    cfg = ServerConfig(2, 1)
    truth = Overheads(front_ms=1.5, front_batch_ms=0.0)
    measured = max_rate(service, cfg, cores=2, p99_ms=40.0, overheads=truth).rate_rps
    res = compare_with_measurement(
        service, cfg, cores=2, p99_ms=40.0, measured_rps=measured,
        overheads=Overheads(front_ms=0.1, front_batch_ms=0.0), measured_cpu_ms={"front": 1.5, "client": 0.0},
    )  # fmt: skip
    assert res.error > 0.05  # the assumed front is too cheap: the plain prediction is too high
    assert res.calibrated_rps == pytest.approx(measured, rel=1e-6)
    assert res.calibrated_error == pytest.approx(0.0, abs=1e-6)
    assert "with the overheads measured" in res.summary
    plain = compare_with_measurement(service, cfg, cores=2, p99_ms=40.0, measured_rps=measured)
    assert plain.calibrated_rps is None and plain.calibrated_error is None


def test_front_costs_split_into_per_request_and_per_batch() -> None:
    p, q = fit_front_costs([(1.0, 0.16), (8.0, 0.09), (4.0, 0.10)])
    assert p == pytest.approx(0.08, abs=0.002) and q == pytest.approx(0.08, abs=0.003)
    assert fit_front_costs([(3.0, 0.2), (3.0, 0.3)]) == pytest.approx((0.25, 0.0))  # one batch size
    with pytest.raises(InvalidInput, match="points"):
        fit_front_costs([])


def test_the_front_per_batch_cost_is_spread_over_the_batch(service: ServiceModel) -> None:
    from modelscale.plan.capacity import front_cost_ms, mean_batch

    ov = Overheads(front_ms=0.1, front_batch_ms=0.4)
    solo = ServerConfig(2, 1)
    batched = ServerConfig(2, 1, 8, 5.0)
    assert mean_batch(service, solo, rate_rps=500.0, overheads=ov) == 1.0
    b = mean_batch(service, batched, rate_rps=500.0, overheads=ov)
    assert b == pytest.approx(1 + 0.5 * 5.0)  # the requests arriving during the 5 ms wait
    assert front_cost_ms(solo, cores=8, rate_rps=500.0, overheads=ov) == pytest.approx(0.5)
    cost = front_cost_ms(batched, cores=8, rate_rps=500.0, overheads=ov, mean_batch=b)
    assert cost == pytest.approx(0.1 + 0.4 / b)
    busy = mean_batch(service, batched, rate_rps=1e6, overheads=ov)
    assert busy == 8.0  # past the replicas' capacity batches are full


def test_measured_overheads_fit_the_latest_run_of_each_configuration(service: ServiceModel) -> None:
    from modelscale.machine import machine_info

    kb = open_store()
    sha = "a" * 64
    kb.register_model(sha, name="m", path="/nowhere/m.onnx")
    base = Overheads(client_ms=0.0)
    assert measured_overheads(kb, sha, base) is None

    def record(cfg: ServerConfig, batch: float, front: float, handover: float, **kw: object) -> int:
        res = compare_with_measurement(
            service, cfg, cores=2, p99_ms=40.0, measured_rps=100.0, model={"sha256": sha},
            measured_cpu_ms={"front": front, "client": 0.2}, measured_handover_ms=handover,
            mean_batch=batch,
        )  # fmt: skip
        return kb.record(res, model_version=sha, **kw)  # type: ignore[arg-type]

    record(ServerConfig(2, 1), 1.0, 9.9, 9.9)  # superseded by the next run of the same config
    record(ServerConfig(2, 1), 1.0, 0.16, 0.4)
    record(ServerConfig(2, 1, 8, 5.0), 8.0, 0.09, 0.9)
    record(ServerConfig(1, 2, 8, 5.0), 4.0, 0.10, 0.5)
    elsewhere = {**machine_info().to_dict(), "cpu_model": "Some Other CPU"}
    record(ServerConfig(1, 2), 1.0, 5.0, 5.0, machine=elsewhere)  # another machine: not used
    found = measured_overheads(kb, sha, base)
    assert found is not None
    ov, run_id = found
    assert ov.front_ms == pytest.approx(0.08, abs=0.002)
    assert ov.front_batch_ms == pytest.approx(0.08, abs=0.003)
    assert ov.batch_ms == pytest.approx(0.5)  # the median hand-over of the three configurations
    assert ov.client_ms == 0.0  # the load generator's CPU belongs to the test, not the server
    assert kb.run(run_id).results["mean_batch"] == 4.0  # the newest run on this machine


def test_a_disturbed_measurement_is_inconclusive_not_outside(service: ServiceModel) -> None:
    cfg = ServerConfig(2, 1)
    predicted = max_rate(service, cfg, cores=2, p99_ms=40.0).rate_rps
    quiet = compare_with_measurement(
        service, cfg, cores=2, p99_ms=40.0, measured_rps=predicted / 1.5,
        other_cpu_cores=[0.05, 0.2],
    )  # fmt: skip
    assert quiet.verdict == "outside" and not quiet.inconclusive
    assert "outside +-15%" in quiet.summary
    busy = compare_with_measurement(
        service, cfg, cores=2, p99_ms=40.0, measured_rps=predicted / 1.5,
        other_cpu_cores=[0.1, 1.3, 0.9], max_other_cores=0.5,
    )  # fmt: skip
    assert busy.inconclusive and busy.verdict == "inconclusive" and not busy.within_tolerance
    assert "+50.0% (inconclusive: other processes kept up to 1.3 of 2 cores busy" in busy.summary
    assert "in 2 of 3 probe windows" in busy.summary and "outside" not in busy.summary
    close = compare_with_measurement(
        service, cfg, cores=2, p99_ms=40.0, measured_rps=predicted, other_cpu_cores=[2.0]
    )
    assert close.verdict == "inconclusive"  # even an agreeing one says nothing when disturbed
    stored = open_store().run(open_store().record(busy)).results
    assert stored["inconclusive"] is True and stored["other_cpu_cores"] == [0.1, 1.3, 0.9]
    with pytest.raises(InvalidInput, match="max_other_cores"):
        compare_with_measurement(
            service, cfg, cores=2, p99_ms=40.0, measured_rps=1.0, max_other_cores=-1
        )


def test_no_overheads_are_learnt_from_an_inconclusive_validation(service: ServiceModel) -> None:
    kb = open_store()
    sha = "b" * 64
    kb.register_model(sha, name="m")

    def record(front: float, others: list[float]) -> None:
        res = compare_with_measurement(
            service, ServerConfig(2, 1), cores=2, p99_ms=40.0, measured_rps=100.0,
            model={"sha256": sha}, measured_cpu_ms={"front": front}, mean_batch=1.0,
            other_cpu_cores=others,
        )  # fmt: skip
        kb.record(res, model_version=sha)

    record(0.2, [0.1])
    record(3.0, [1.5])  # newer, but disturbed: a neighbour's CPU is not the front's
    found = measured_overheads(kb, sha, Overheads())
    assert found is not None and found[0].front_ms == pytest.approx(0.2)
    record(5.0, [0.8])
    assert measured_overheads(kb, sha, Overheads()) == found  # still nothing learnt
