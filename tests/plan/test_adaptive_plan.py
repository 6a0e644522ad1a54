"""plan models the server's batching from the objective: its search, simulation, deploy.yaml and
the configuration a server publishes."""

from __future__ import annotations

import math
import pathlib

import pytest
import yaml

from modelscale.errors import InvalidInput
from modelscale.machine import MachineInfo
from modelscale.plan import (
    ADAPTIVE,
    BatchPolicy,
    CapacitySearch,
    Overheads,
    PlanOptions,
    ServerConfig,
    ServiceModel,
    chosen_option,
    emit,
    max_rate,
    plan_capacity,
    predict,
)
from modelscale.plan.calibration import server_config

OV = Overheads(front_ms=0.05, batch_ms=0.1)
P99 = 40.0


def test_the_search_offers_batches_from_the_objective_capped_at_half_the_bound(
    service: ServiceModel,
) -> None:
    search = CapacitySearch(service, p99_ms=P99, overheads=OV, sim_requests=4_000)
    configs = search.configs(2)
    adaptive = [c for c in configs if c.adaptive]
    assert {(c.replicas, c.threads) for c in adaptive} == {(c.replicas, c.threads) for c in configs}
    for c in adaptive:
        assert c.objective_ms == P99 and c.max_wait_ms == 0.0
        # The largest batch is the policy's own cap: one batch within half the bound.
        fits = [
            b for b in range(1, 65) if float(service.time_ms(b, c.threads)) + OV.batch_ms <= P99 / 2
        ]
        assert c.max_batch == max(fits, default=1)
        assert "batches from the p99" in c.label()


def test_the_simulated_policy_sustains_what_the_best_fixed_policy_does(
    service: ServiceModel,
) -> None:
    # One shape, the policy against greedy batches of the same cap and a fixed 8 / 5 ms: the
    # server's own policy, simulated, keeps up with the best of them within a few percent.
    search = CapacitySearch(service, p99_ms=P99, overheads=OV, sim_requests=6_000)
    cap = next(c for c in search.configs(2) if c.adaptive and c.replicas == 2).max_batch
    kw = {"cores": 2, "p99_ms": P99, "overheads": OV, "sim_requests": 6_000}
    slo = max_rate(service, ServerConfig(2, 1, cap, objective_ms=P99), **kw)
    greedy = max_rate(service, ServerConfig(2, 1, cap), **kw)
    fixed = max_rate(service, ServerConfig(2, 1, 8, 5.0), **kw)
    assert slo.method == "simulation"
    assert slo.rate_rps >= 0.95 * max(greedy.rate_rps, fixed.rate_rps)
    at = predict(service, ServerConfig(2, 1, cap, objective_ms=P99), rate_rps=0.8 * slo.rate_rps,
                 cores=2, overheads=OV, sim_requests=6_000)  # fmt: skip
    assert at.p99_ms <= P99


def test_plan_emits_deploy_yaml_with_only_the_objective(
    service: ServiceModel,
    two_core_machine: MachineInfo,
    mlp_path: pathlib.Path,
    tmp_path: pathlib.Path,
) -> None:
    opts = PlanOptions(sim_requests=4_000, policies=(BatchPolicy(1), ADAPTIVE), overheads=OV)
    plan = plan_capacity(
        service, rps=300.0, p99_ms=P99, catalog=None, machine=two_core_machine, options=opts,
        model={"name": "mlp", "sha256": "cd" * 32, "path": str(mlp_path)},
        replica_bytes=100 * 2**20,
    )  # fmt: skip
    opt = chosen_option(plan)
    assert opt.objective_ms == P99 and opt.config.adaptive  # batching beats none here
    data = yaml.safe_load(emit(plan, "deploy", tmp_path).read_text(encoding="utf-8"))
    m = data["models"]["mlp"]
    assert m["slo"]["p99_ms"] == P99
    # No batch size or wait: the server finds them from the objective on whatever machine.
    assert m["batching"]["max_batch"] is None and m["batching"]["max_wait_ms"] is None
    assert m["batching"]["adaptive"] is True
    assert plan.to_dict()["phases"][0]["recommended"]["objective_ms"] == P99


def test_a_fixed_policy_is_emitted_fixed(
    service: ServiceModel,
    two_core_machine: MachineInfo,
    mlp_path: pathlib.Path,
    tmp_path: pathlib.Path,
) -> None:
    opts = PlanOptions(sim_requests=4_000, policies=(BatchPolicy(4, 1.0),), overheads=OV)
    plan = plan_capacity(
        service, rps=300.0, p99_ms=P99, catalog=None, machine=two_core_machine, options=opts,
        model={"name": "mlp", "sha256": "cd" * 32, "path": str(mlp_path)},
        replica_bytes=100 * 2**20,
    )  # fmt: skip
    m = yaml.safe_load(emit(plan, "deploy", tmp_path).read_text(encoding="utf-8"))["models"]["mlp"]
    # With an objective in the file the server would choose its own batches: the planned fixed
    # policy says so, so that what runs is what was predicted.
    assert m["batching"]["adaptive"] is False
    assert (m["batching"]["max_batch"], m["batching"]["max_wait_ms"]) == (4, 1.0)


def test_validation_reads_the_configuration_of_a_server_batching_from_its_objective() -> None:
    meta = {
        "name": "mlp",
        "parameters": {
            "replicas": 2, "threads": 1, "max_batch_size": 64, "batching": "slo", "p99_ms": 100.0,
        },
    }  # fmt: skip
    assert server_config(meta, url="http://x") == ServerConfig(2, 1, 64, objective_ms=100.0)
    del meta["parameters"]["p99_ms"]
    with pytest.raises(InvalidInput, match="lacks parameters p99_ms"):
        server_config(meta, url="http://x")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"objective_ms": 0.0}, "objective_ms"),
        ({"objective_ms": -5.0}, "objective_ms"),
        ({"objective_ms": math.inf}, "objective_ms"),
        ({"objective_ms": 100.0, "max_wait_ms": 5.0}, "max_wait_ms"),
    ],
)
def test_bad_adaptive_configurations_are_refused(kwargs: dict[str, float], match: str) -> None:
    with pytest.raises(InvalidInput, match=match):
        ServerConfig(2, 1, 8, **kwargs)


def test_an_adaptive_policy_with_a_wait_is_refused() -> None:
    with pytest.raises(InvalidInput, match="max_wait_ms"):
        BatchPolicy(8, 5.0, adaptive=True)


def test_a_front_bound_shape_is_not_offered_batches_from_the_objective(
    service: ServiceModel,
) -> None:
    # A front that costs far more per request than the model: the replicas never limit the rate,
    # and the policy (which sizes batches from the replicas' time) is left out.
    heavy = Overheads(front_ms=5.0, batch_ms=0.1)
    search = CapacitySearch(service, p99_ms=P99, overheads=heavy, sim_requests=3_000)
    assert not any(r.config.adaptive for r in search.evaluate(2))
    light = CapacitySearch(service, p99_ms=P99, overheads=OV, sim_requests=3_000)
    assert any(r.config.adaptive for r in light.evaluate(2))
