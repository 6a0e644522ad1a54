"""The planner: cheapest option meeting the SLO with headroom, phases, marking, GPU and Arm rows."""

from __future__ import annotations

import json
import math
import pathlib
from collections.abc import Callable

import pytest

from modelscale.errors import InvalidInput
from modelscale.machine import MachineInfo
from modelscale.plan import (
    BatchPolicy,
    CapacitySearch,
    Overheads,
    PlanOptions,
    PlanResult,
    ServiceModel,
    fit_service_model,
    load_catalog,
    plan_capacity,
)
from modelscale.plan.catalog import Catalog
from tests.plan.conftest import linear_points

# A light front: with the default 0.4 ms per request one front process caps any machine at
# 2,500 req/s, which would hide what these tests look at.
OV = Overheads(front_ms=0.05, batch_ms=0.1)
FAST = {"sim_requests": 5_000, "policies": (BatchPolicy(1), BatchPolicy(4)), "overheads": OV}
P99 = 40.0


def _plan(
    service: ServiceModel, here: MachineInfo, catalog: Catalog | None, rps: float, **options
) -> PlanResult:
    opts = PlanOptions(**{**FAST, **options})
    return plan_capacity(
        service, rps=rps, p99_ms=P99, catalog=catalog, options=opts, machine=here,
        replica_bytes=100 * 2**20, model={"name": "synthetic", "sha256": "ab" * 32},
    )  # fmt: skip


@pytest.fixture(scope="module")
def rates() -> dict[int, float]:
    """Best max rate at the bound per machine size, from the same search the planner uses."""
    search = CapacitySearch(fit_service_model(linear_points()), p99_ms=P99, **FAST)
    return {c: max(s.estimate.rate_rps for s in search.evaluate(c)) for c in (2, 4, 8)}


@pytest.fixture
def catalog(write_catalog: Callable[..., pathlib.Path]) -> Catalog:
    return load_catalog(
        write_catalog(
            [
                ("p1", "small.2", 2, 8, 0.10),
                ("p1", "big.8", 8, 32, 0.30),
                ("p2", "mid.4", 4, 16, 0.25),
                ("p2", "gpu.4", 4, 16, 0.50, "T4", 1),
                ("p2", "c7g.large", 2, 4, 0.05),  # Arm: cheapest, but not planned from x86
            ]
        )
    )


def test_picks_the_cheapest_option_that_meets_the_slo(
    service: ServiceModel, two_core_machine: MachineInfo, catalog: Catalog, rates: dict[int, float]
) -> None:
    assert rates[8] >= 3.9 * rates[2]  # 8 replicas pool at least as well as 4 machines of 2
    low, high = 0.3 * rates[2], 0.7 * rates[8] * 0.95
    plan = _plan(service, two_core_machine, catalog, high, phases=(low,))
    first, second = plan.phases
    assert first.rate_rps == pytest.approx(low)
    assert first.recommended is not None and second.recommended is not None
    assert (first.recommended.instance_type, first.recommended.machines) == ("small.2", 1)
    assert (second.recommended.instance_type, second.recommended.machines) == ("big.8", 1)
    for ph in plan.phases:
        priced = [o for o in ph.options if o.usd_per_month is not None]
        assert ph.recommended.usd_per_month == min(o.usd_per_month for o in priced)
        for o in ph.options:
            assert o.max_rate_rps * 0.7 >= ph.rate_rps * (1 - 1e-9)  # SLO with headroom
            assert o.usd_per_month is None or o.usd_per_month == pytest.approx(o.usd_per_hour * 730)
        assert "cheapest" in ph.why and "big.8" in plan.phases[1].why
    assert plan.phases[0].next_step.startswith("Move to the next phase")
    assert "add one more big.8" in plan.phases[1].next_step
    json.dumps(plan.to_dict())


def test_headroom_buys_spare_capacity(
    service: ServiceModel, two_core_machine: MachineInfo, rates: dict[int, float]
) -> None:
    rate = 0.65 * rates[2]
    loose = _plan(service, two_core_machine, None, rate, headroom=1.0, machine="local")
    tight = _plan(service, two_core_machine, None, rate, headroom=0.5, machine="local")
    assert loose.phases[0].recommended.machines == 1
    assert tight.phases[0].recommended.machines == 2
    assert tight.phases[0].recommended.utilisation < loose.phases[0].recommended.utilisation
    with pytest.raises(InvalidInput, match="headroom"):
        _plan(service, two_core_machine, None, rate, headroom=0.0)
    with pytest.raises(InvalidInput, match="headroom"):
        _plan(service, two_core_machine, None, rate, headroom=1.2)


def test_phases_grow_the_fleet(
    service: ServiceModel, two_core_machine: MachineInfo, catalog: Catalog, rates: dict[int, float]
) -> None:
    r = rates[2]
    plan = _plan(service, two_core_machine, catalog, r, phases=(10 * r, 0.5 * r), machine="small.2")
    assert [p.rate_rps for p in plan.phases] == sorted(p.rate_rps for p in plan.phases)
    counts = [p.recommended.machines for p in plan.phases]
    assert counts == sorted(counts) and counts[-1] >= 14
    assert {o.instance_type for p in plan.phases for o in p.options} == {"small.2"}
    with pytest.raises(InvalidInput, match="phases"):
        _plan(service, two_core_machine, catalog, r, phases=(-5.0,))


def test_extrapolation_gpu_and_arm_marking(
    service: ServiceModel, two_core_machine: MachineInfo, catalog: Catalog, rates: dict[int, float]
) -> None:
    plan = _plan(service, two_core_machine, catalog, 0.5 * rates[2], core_factor=1.5)
    for o in plan.phases[0].options:
        if o.provider == "local":
            assert not o.extrapolated and not o.notes
        else:
            assert o.extrapolated and "x 1.5" in o.notes[0]
    assert any("core factor of 1.5" in a for a in plan.assumptions)
    skipped = {n.instance_type: n for n in plan.not_planned}
    assert set(skipped) == {"gpu.4", "c7g.large"}
    assert "no profile of this model measured on a T4" in skipped["gpu.4"].reason
    assert skipped["gpu.4"].usd_per_hour == 0.50
    assert skipped["c7g.large"].reason.startswith("arm64 CPU")
    planned = {o.instance_type for p in plan.phases for o in p.options}
    assert not planned & {"gpu.4", "c7g.large"}


def test_gpu_rows_are_planned_from_a_gpu_profile(
    service: ServiceModel, two_core_machine: MachineInfo, catalog: Catalog
) -> None:
    gpu = service.with_core_factor(20.0)  # stands in for a profile measured on the T4
    plan = plan_capacity(
        service, rps=100.0, p99_ms=P99, catalog=catalog, machine=two_core_machine,
        options=PlanOptions(**FAST, machine="gpu.4"), gpu_services={"T4": gpu},
    )  # fmt: skip
    rec = plan.phases[0].recommended
    assert rec is not None and rec.instance_type == "gpu.4" and rec.replicas == 1
    assert not plan.not_planned


def test_local_only_and_machine_choice(
    service: ServiceModel, two_core_machine: MachineInfo, catalog: Catalog, rates: dict[int, float]
) -> None:
    plan = _plan(service, two_core_machine, None, 0.5 * rates[2], machine="local")
    rec = plan.phases[0].recommended
    assert rec is not None and rec.provider == "local" and rec.usd_per_month is None
    assert plan.local is not None and plan.local.per_machine_rps == pytest.approx(rates[2])
    assert "this machine" in plan.phases[0].why
    only = _plan(service, two_core_machine, catalog, 0.5 * rates[2], machine="mid.4")
    assert {o.instance_type for o in only.phases[0].options} == {"mid.4"}
    with pytest.raises(InvalidInput, match="Unknown machine type 'nope'"):
        _plan(service, two_core_machine, catalog, 10.0, machine="nope")


def test_vertical_limits_are_reported(
    service: ServiceModel, two_core_machine: MachineInfo, catalog: Catalog, rates: dict[int, float]
) -> None:
    plan = _plan(service, two_core_machine, catalog, 3 * rates[8])
    ph = plan.phases[0]
    assert not any(o.category == "vertical" for o in ph.options)
    assert ph.not_possible and ph.not_possible[0].startswith("vertical: no single machine")
    assert {o.category for o in ph.options} >= {"horizontal", "mixed"}


def test_spot_prices(service: ServiceModel, two_core_machine: MachineInfo) -> None:
    cat = load_catalog()
    plan = _plan(service, two_core_machine, cat, 50.0, machine="m7i.large", spot=True)
    rec = plan.phases[0].recommended
    assert rec.usd_per_hour == pytest.approx(0.0316 * rec.machines)
    assert plan.catalog["prices"] == "spot"


def test_impossible_bound_says_why(service: ServiceModel, two_core_machine: MachineInfo) -> None:
    with pytest.raises(InvalidInput, match=r"A p99 of 2 ms is impossible: one request alone takes"):
        plan_capacity(service, rps=10.0, p99_ms=2.0, catalog=None, machine=two_core_machine)
    for rps in (0.0, -3.0, math.inf):
        with pytest.raises(InvalidInput, match="rps"):
            plan_capacity(service, rps=rps, p99_ms=50.0, catalog=None, machine=two_core_machine)


def test_replicas_stay_within_what_deploy_yaml_allows(service: ServiceModel) -> None:
    search = CapacitySearch(service, p99_ms=P99, **FAST)
    configs = search.configs(96)
    assert configs and max(c.replicas for c in configs) <= 64
    assert all(c.replicas * c.threads <= 96 for c in configs)
