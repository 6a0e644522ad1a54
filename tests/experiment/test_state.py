"""One experiment's state without a server: canary steps and rollback, per-unit outcomes,
outcome expiry, CUPED, actions and resuming; a clock the tests move."""

from __future__ import annotations

import math

import numpy as np
import pytest

from modelscale.config import ExperimentSpec
from modelscale.errors import InvalidInput
from modelscale.experiment.state import CONTROL, TREATMENT, Experiment, State


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def _exp(clock: Clock, **spec: object) -> Experiment:
    full = {"arms": {"control": "1", "treatment": "2"}, "min_units": 30, **spec}
    return Experiment("m", ExperimentSpec.model_validate(full), clock=clock)


def _serve(exp: Experiment, rng: np.random.Generator, n: int, slow: float = 1.0) -> None:
    for i in range(n):
        arm = exp.assign(None, f"r{rng.integers(1 << 60)}-{i}")
        latency = rng.lognormal(math.log(0.01), 0.2) * (slow if arm == TREATMENT else 1.0)
        exp.served(arm, exp.step_index, 200, latency)


def test_a_canary_steps_through_its_ramp_and_promotes() -> None:
    clock = Clock()
    exp = _exp(
        clock,
        kind="canary",
        ramp=[10, 50, 100],
        step_min_units=50,
        step_min_s=60,
        guardrails=["errors", "latency"],
    )
    rng = np.random.default_rng(0)
    _serve(exp, rng, 1000)
    exp.evaluate()
    assert exp.step_index == 0  # enough requests, but the step has not lasted 60 s
    clock.now += 61
    exp.evaluate()
    assert exp.step_index == 1 and exp.share() == 0.5
    _serve(exp, rng, 200)
    clock.now += 61
    exp.evaluate()
    assert exp.state is State.PROMOTED and exp.share() == 1.0
    assert [e.event for e in exp.events] == ["advanced", "promoted"]
    assert exp.status()["arms"]["treatment"]["requests"] > 100


def test_a_canary_that_is_three_times_slower_rolls_back_within_its_first_step() -> None:
    clock = Clock()
    exp = _exp(clock, kind="canary", ramp=[20, 100], step_min_units=10**6)
    rng = np.random.default_rng(1)
    for _ in range(50):
        _serve(exp, rng, 20, slow=3.0)
        exp.evaluate()
        if exp.state is not State.RUNNING:
            break
    assert exp.state is State.ROLLED_BACK and exp.share() == 0.0
    assert exp.reasons[0].startswith("latency: latency x")
    assert exp.outbox[-1].state == "firing" and exp.outbox[-1].event == "rolled back"
    assert exp.requests[TREATMENT] < 200


def test_outcomes_are_per_unit_a_proportion_counts_a_unit_once() -> None:
    clock = Clock()
    exp = _exp(
        clock,
        kind="ab",
        unit="header:X-User",
        metrics=[{"name": "converted", "kind": "proportion"}, "revenue"],
    )
    arms = {f"u{i}": exp.assign(f"u{i}", f"r{i}") for i in range(200)}
    for _ in range(3):  # three conversions of one user are one converted user
        assert exp.outcome(request_id=None, unit="u1", metric="converted", value=1) == "accepted"
    assert exp.outcome(request_id="r2", unit=None, metric="revenue", value=4.0) == "accepted"
    assert exp.outcome(request_id="r2", unit=None, metric="revenue", value=1.0) == "accepted"
    sums = exp.step.sums
    conv = sums["converted"][arms["u1"]]
    assert (conv.total, conv.total_sq) == (1.0, 1.0)
    rev = sums["revenue"][arms["u2"]]
    assert (rev.total, rev.total_sq) == (5.0, 25.0)  # one unit's sum, squared once
    assert sums["revenue"][CONTROL].n + sums["revenue"][TREATMENT].n == 200
    assert exp.outcome(request_id=None, unit="nobody", metric="revenue", value=1) == "unknown"
    clock.now += 8 * 86_400
    assert exp.outcome(request_id=None, unit="u3", metric="revenue", value=1) == "expired"
    with pytest.raises(InvalidInput, match="its outcome metrics are: converted, revenue"):
        exp.outcome(request_id="r1", unit=None, metric="clicks", value=1)
    assert exp.outcome_counts == {"accepted": 5, "unknown": 1, "expired": 1, "invalid": 1}


def test_cuped_uses_the_pre_period_value_and_narrows_the_interval() -> None:
    rng = np.random.default_rng(2)

    def run(cuped: bool) -> float:
        clock = Clock()
        exp = _exp(clock, kind="ab", unit="header:u", metrics=["spend"], cuped=cuped)
        for i in range(2000):
            key = f"u{i}"
            arm = exp.assign(key, None)
            pre = rng.normal(10, 3)
            value = pre + rng.normal(0, 1) + (0.2 if arm == TREATMENT else 0.0)
            exp.outcome(request_id=None, unit=key, metric="spend", value=value, pre=pre)
        exp.evaluate()
        c = exp.last["comparisons"]["spend"]
        assert c.ready and c.ci[0] < 0.2 < c.ci[1]
        return c.ci[1] - c.ci[0]

    assert run(cuped=True) < 0.5 * run(cuped=False)


def test_actions_finish_a_running_experiment_once() -> None:
    exp = _exp(Clock(), kind="ab")
    with pytest.raises(InvalidInput, match="stop, promote, rollback"):
        exp.act("pause")
    assert exp.act("promote", by="abcd1234") == "promoted"
    assert exp.events[-1].detail == "promote by key abcd1234"
    with pytest.raises(InvalidInput, match="has finished"):
        exp.act("stop")


def test_resuming_restores_the_step_and_the_state() -> None:
    exp = _exp(Clock(), kind="canary", ramp=[1, 5, 25, 100])
    exp.resume({"state": "running", "step": 2, "decision": "continue"})
    assert exp.step_index == 2 and exp.share() == 0.25
    done = _exp(Clock(), kind="canary")
    why = "agreement: output agreement 0.0% (at most 48.7%) < 90%"
    done.resume(
        {"state": "rolled_back", "step": 1, "decision": "guardrail breached", "reasons": [why]}
    )
    assert done.state is State.ROLLED_BACK and done.share() == 0.0
    assert done.status()["reasons"] == [why]  # the resumed status still says why
    assert done.identity == exp.identity  # same name, kind, arms and unit
    other = _exp(Clock(), kind="canary", name="another")
    assert other.identity != exp.identity


def test_an_ab_test_with_a_horizon_says_no_difference_at_its_planned_size() -> None:
    clock = Clock()
    exp = _exp(clock, kind="ab", sequential="horizon", planned_units=400, metrics=["revenue"])
    rng = np.random.default_rng(4)
    for i in range(500):
        unit = f"u{i}"
        exp.assign(unit, f"r{i}")
        exp.outcome(request_id=None, unit=unit, metric="revenue", value=float(rng.normal(5, 1)))
        if i % 50 == 49:
            exp.evaluate()
    assert exp.decision == "no difference" and exp.state is State.RUNNING
    assert [e.event for e in exp.events] == ["no difference"]
    assert "planned 400 units found no difference" in exp.events[0].detail
    comparison = exp.step.tests["revenue"]
    assert comparison.horizon == 400
    # The guardrails stay open-ended.
    assert exp.step.tests["errors"].horizon is None
