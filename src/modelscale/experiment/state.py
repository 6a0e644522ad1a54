"""One live experiment: who gets which arm, what each arm did, and what the tests decide.

Everything here runs in the server's event loop (the routing stage, the recorder, the outcome
route), so nothing needs a lock: one event at a time, each O(1) (running sums per arm).

Units and steps. Outcome metrics (clicks, revenue) are per *unit* (the experiment's ``unit``:
a user header, a request parameter, or the request itself): a unit's value is the sum of its
outcomes (``mean`` metrics) or whether it had any (``proportion``), and units without outcomes
count as 0, as experiment platforms do. Operational metrics (errors, latency, the p99
objective, output agreement, accuracy from feedback) are per request. A canary runs in steps
(its ramp); each step is tested on its own (fresh sums and sequential tests), because the
treatment's share changes between steps and pooling them would weight the arms' periods
differently (Simpson's paradox).

Decisions (``evaluate``), by always-valid tests (``modelscale.experiment.stats``), so looking
every second is safe:
- harm: a guardrail's confidence sequence lies wholly on the harmful side of its tolerance ->
  a canary rolls back at once, an A/B test stops (``stop_on_harm``), a shadow only says so;
- a canary step advances once its treatment has ``step_min_units`` requests, it has lasted
  ``step_min_s`` and no guardrail shows harm; reaching 100% promotes the treatment;
- an A/B test names a winner when the primary metric's sequence excludes no difference.
"""

from __future__ import annotations

import enum
import hashlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from datasketches import kll_floats_sketch

from modelscale.config import ExperimentSpec, GuardrailSpec, OutcomeMetricSpec
from modelscale.errors import InvalidInput
from modelscale.experiment.assign import Assigner
from modelscale.experiment.stats import (
    Comparison,
    Moments,
    SequentialSrm,
    SequentialTest,
    mean_sequence,
)

__all__ = ["ARMS", "Experiment", "ExperimentEvent", "State", "remember"]

ARMS = ("control", "treatment")
CONTROL, TREATMENT = 0, 1
_EVENTS_KEPT = 50
_P99_FROM = 1000
"""Control requests that set the p99 guardrail's threshold when the model has no p99 objective."""


class State(enum.Enum):
    """Where an experiment stands."""

    RUNNING = "running"
    PROMOTED = "promoted"
    """Finished: every unit goes to the treatment."""
    ROLLED_BACK = "rolled_back"
    """Finished: a guardrail showed harm (or a person rolled it back); every unit to control."""
    STOPPED = "stopped"
    """Finished: stopped by a person or by harm in an A/B test; every unit to control."""


def remember(table: dict[Any, Any], key: Any, value: Any, cap: int) -> None:
    """``table[key] = value``, forgetting the oldest entry first when ``table`` holds ``cap``."""
    if len(table) >= cap:
        del table[next(iter(table))]
    table[key] = value


class _Sums:
    """Running sums of one metric in one arm (and its pre-period covariate, for CUPED)."""

    __slots__ = ("n", "total", "total_sq", "x_total", "x_total_sq", "xy_total")

    def __init__(self) -> None:
        self.n = 0
        self.total = self.total_sq = 0.0
        self.x_total = self.x_total_sq = self.xy_total = 0.0

    def add(self, value: float) -> None:
        self.n += 1
        self.total += value
        self.total_sq += value * value

    def moments(self) -> Moments:
        return Moments(
            n=self.n,
            total=self.total,
            total_sq=self.total_sq,
            x_total=self.x_total,
            x_total_sq=self.x_total_sq,
            xy_total=self.xy_total,
        )


class _Unit:
    """What the experiment remembers of one unit: its arm and step, and its outcome sums."""

    __slots__ = ("arm", "pre", "seen", "step", "values")

    def __init__(self, arm: int, step: int, seen: float, metrics: int) -> None:
        self.arm = arm
        self.step = step
        self.seen = seen
        self.values = [0.0] * metrics
        self.pre: list[float] | None = None


class _Step:
    """One step's sums per arm and metric, its sequential tests and its SRM test."""

    def __init__(self, index: int, share: float, metrics: list[str], exp: Experiment) -> None:
        self.index = index
        self.share = share
        self.started = exp.clock()
        self.sums = {m: (_Sums(), _Sums()) for m in metrics}
        self.units = [0, 0]
        self.requests = [0, 0]
        self.tests = {
            m: SequentialTest(
                alpha=exp.spec.alpha,
                planned_units=exp.spec.planned_units,
                min_units=exp.spec.min_units,
                cuped=exp.spec.cuped and m in exp.outcome_index,
                horizon=exp.spec.planned_units
                if exp.spec.sequential == "horizon" and exp.kind == "ab" and m == exp.primary
                else None,
            )
            for m in metrics
            if m != "agreement"
        }
        self.srm = SequentialSrm((1 - share, share), alpha=exp.srm_alpha) if 0 < share < 1 else None


@dataclass(frozen=True)
class ExperimentEvent:
    """Something an experiment did or found: started, advanced, promoted, rolled back, stopped,
    a winner, harm, a sample-ratio mismatch. Sent through the server's alert path (log,
    knowledge base as a run of kind ``experiment``, webhooks)."""

    model: str
    experiment: str
    event: str
    state: str
    """'firing' for harm and mismatches, 'info' for the rest (the alert path's level)."""
    at: float
    detail: str
    status: dict[str, Any] = field(default_factory=dict)
    sha256: str | None = None
    """The treatment version's id (the run is filed under it)."""

    @property
    def message(self) -> str:
        """One line for the server log."""
        return f"experiment {self.experiment} ({self.model}): {self.event}: {self.detail}"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields (the webhook's body)."""
        return {
            "kind": "experiment",
            "model": self.model,
            "experiment": self.experiment,
            "event": self.event,
            "state": self.state,
            "at": self.at,
            "detail": self.detail,
            "message": self.message,
        }

    def as_result(self) -> Any:
        """The run the knowledge base keeps (kind ``experiment``): the event and the status."""
        from modelscale.experiment.results import ExperimentRun

        return ExperimentRun(
            params={"model": self.model, "experiment": self.experiment, "event": self.event},
            event=self.to_dict(),
            status=self.status,
        )


def _harm(
    g: GuardrailSpec,
    c: Comparison | None,
    agree: tuple[float, float, float] | None,
    outcome: OutcomeMetricSpec | None,
) -> str | None:
    """Why guardrail ``g`` shows harm now (None when it does not)."""
    tol = g.limit()
    if g.metric == "agreement":
        if agree is None:
            return None
        mean, _, hi = agree
        if hi < tol:
            return f"output agreement {mean:.1%} (at most {hi:.1%}) < {tol:.0%}"
        return None
    if c is None or not c.ready:
        return None
    lo, hi = c.ci
    m = g.metric
    if m in ("errors", "p99"):
        if lo > tol:
            what = "error rate" if m == "errors" else "share over the p99 objective"
            return f"{what} +{c.difference:.2%} (at least +{lo:.2%}) > +{tol:.2%}"
    elif m == "latency":
        if lo > math.log1p(tol):
            return (
                f"latency x{math.exp(c.difference):.2f} (at least x{math.exp(lo):.2f}) > "
                f"x{1 + tol:.2f}"
            )
    elif m == "accuracy":
        if hi < -tol:
            return f"accuracy {c.difference:+.2%} (at most {hi:+.2%}) < -{tol:.2%}"
    elif c.lift_ci is not None and c.lift is not None:
        llo, lhi = c.lift_ci
        worse_up = m == "mae" or (outcome is not None and outcome.direction == "decrease")
        if worse_up and llo > tol:
            return f"{m} {c.lift:+.1%} (at least {llo:+.1%}) > +{tol:.0%}"
        if not worse_up and lhi < -tol:
            return f"{m} {c.lift:+.1%} (at most {lhi:+.1%}) < -{tol:.0%}"
    return None


class Experiment:
    """The live state of one model's experiment."""

    def __init__(
        self,
        model: str,
        spec: ExperimentSpec,
        *,
        p99_ms: float | None = None,
        sha256: str | None = None,
        clock: Callable[[], float] = time.time,
        srm_alpha: float = 0.001,
    ) -> None:
        self.model = model
        self.spec = spec
        self.kind = spec.kind
        self.versions = (spec.arms["control"], spec.arms["treatment"])
        self.name = spec.name or f"{model}-{self.versions[0]}-vs-{self.versions[1]}-{spec.kind}"
        self.identity = hashlib.sha256(
            f"{self.name}\0{spec.kind}\0{self.versions}\0{spec.unit}".encode()
        ).hexdigest()[:16]
        """What makes two runs of a server the same experiment (resumed from the knowledge
        base): its name, kind, arms and unit. Other settings may change between runs."""
        self.sha256 = sha256
        self.clock = clock
        self.srm_alpha = srm_alpha
        self.assigner = Assigner(self.name)
        self.outcomes = spec.outcome_metrics()
        self.outcome_index = {m.name: i for i, m in enumerate(self.outcomes)}
        self.guardrails = spec.guardrail_specs()
        names = [m if isinstance(m, str) else m.name for m in spec.metrics]
        self.primary = names[0] if names else None
        ops = {"errors", "latency", "p99", "agreement", "accuracy", "mae"}
        wanted = [g.metric for g in self.guardrails] + names
        self.metrics = list(dict.fromkeys(["errors", "latency", *wanted]))
        self.wants_agreement = "agreement" in wanted or spec.kind == "shadow"
        if self.wants_agreement and "agreement" not in self.metrics:
            self.metrics.append("agreement")
        self.ops = [m for m in self.metrics if m in ops]
        self.p99_s = p99_ms / 1000 if p99_ms else None
        self.p99_from_control = p99_ms is None
        self.state = State.RUNNING
        self.step_index = 0
        self.steps: list[_Step] = []
        self.units: dict[str, _Unit] = {}
        self.ids: dict[str, str] = {}
        """Request id -> unit key (for outcomes by id)."""
        self.latency = (kll_floats_sketch(200), kll_floats_sketch(200))
        self.requests = [0, 0]
        self.errors = [0, 0]
        self.missing_unit = 0
        self.outcome_counts = {"accepted": 0, "unknown": 0, "expired": 0, "invalid": 0}
        self.shadow = {"sent": 0, "dropped": 0, "failed": 0, "compared": 0}
        self.max_abs_error = 0.0
        self.decision = "continue"
        self.reasons: list[str] = []
        self.winner_said = False
        self.srm_said = False
        self.events: list[ExperimentEvent] = []
        """Every event, oldest first (the last ``_EVENTS_KEPT``)."""
        self.outbox: list[ExperimentEvent] = []
        """Events not yet handed to the alert path."""
        self.last: dict[str, Any] = {}
        self._new_step(0)

    # -- routing -------------------------------------------------------------------------

    def share(self) -> float:
        """The treatment's share of units now (0-1)."""
        if self.state is State.PROMOTED:
            return 1.0
        if self.state is not State.RUNNING or self.kind == "shadow":
            return 0.0
        if self.kind == "canary":
            return self.spec.ramp[self.step_index] / 100
        return self.spec.treatment_share()

    def _new_step(self, index: int) -> None:
        self.step_index = index
        self.steps.append(_Step(index, self.share(), self.metrics, self))

    @property
    def step(self) -> _Step:
        """The step running now."""
        return self.steps[-1]

    def assign(self, key: str | None, request_id: str | None) -> int:
        """The arm (0 control, 1 treatment) for a request of unit ``key`` (None: by request),
        counting the unit's exposure in this step."""
        share = self.share()
        arm = TREATMENT if self.assigner.position(key) < share else CONTROL
        if self.state is not State.RUNNING:
            return arm
        step = self.step
        step.requests[arm] += 1
        unit_key = key if key is not None else request_id
        if unit_key is None:
            step.units[arm] += 1
            self._expose(step, arm, None)
            return arm
        unit = self.units.get(unit_key)
        now = self.clock()
        if unit is None or unit.step != step.index or unit.arm != arm:
            if unit is None:
                unit = _Unit(arm, step.index, now, len(self.outcomes))
                remember(self.units, unit_key, unit, self.spec.max_units)
            else:
                unit.arm, unit.step, unit.seen = arm, step.index, now
                unit.values = [0.0] * len(self.outcomes)
            step.units[arm] += 1
            self._expose(step, arm, unit)
        if key is not None and request_id is not None:
            remember(self.ids, request_id, key, self.spec.max_units)
        return arm

    def _expose(self, step: _Step, arm: int, unit: _Unit | None) -> None:
        """A unit enters ``step`` in ``arm``: it counts for every outcome metric, with 0 so far."""
        for m in self.outcomes:
            s = step.sums[m.name][arm]
            s.n += 1
            if unit is not None and unit.pre is not None:
                x = unit.pre[self.outcome_index[m.name]]
                s.x_total += x
                s.x_total_sq += x * x

    # -- what happened to requests -------------------------------------------------------

    def served(
        self, arm: int, step: int, status: int, latency_s: float, service_s: float | None = None
    ) -> None:
        """A request of ``arm`` in step ``step`` was answered in ``latency_s``, ``service_s`` of
        it after its batch closed.

        The latency guardrail tests ``service_s`` (the version's own cost: waiting for a replica
        and running the batch) when given: at a small share the treatment's batches fill slowly
        and wait out the batching delay alone, so end-to-end latency would blame the treatment
        for its share rather than for its speed. The quantiles shown and the p99 objective are
        end to end, as users see them.
        """
        if step >= len(self.steps):
            return
        self.requests[arm] += 1
        st = self.steps[step]
        error = status >= 500
        self.errors[arm] += error
        st.sums["errors"][arm].add(1.0 if error else 0.0)
        if status != 200 or latency_s <= 0:
            return
        self.latency[arm].update(latency_s * 1000)
        own = service_s if service_s is not None and service_s > 0 else latency_s
        st.sums["latency"][arm].add(math.log(own))
        if "p99" in st.sums:
            if self.p99_s is None and arm == CONTROL and self.latency[0].n >= _P99_FROM:
                self.p99_s = self.latency[0].get_quantile(0.99) / 1000
            if self.p99_s is not None:
                st.sums["p99"][arm].add(1.0 if latency_s > self.p99_s else 0.0)

    def compared(self, step: int, agreement: Any, *, latency_s: float | None, ok: bool) -> None:
        """A copy of a request ran on the other arm (shadow, or the agreement guardrail)."""
        if step >= len(self.steps):
            return
        st = self.steps[step]
        if not ok:
            self.shadow["failed"] += 1
            if self.kind == "shadow":
                st.sums["errors"][TREATMENT].add(1.0)
                self.errors[TREATMENT] += 1
                self.requests[TREATMENT] += 1
            return
        self.shadow["compared"] += 1
        if agreement.rows and "agreement" in st.sums:
            st.sums["agreement"][TREATMENT].add(agreement.share)
        self.max_abs_error = max(self.max_abs_error, agreement.max_abs_error)
        if self.kind == "shadow" and latency_s is not None and latency_s > 0:
            self.requests[TREATMENT] += 1
            st.sums["errors"][TREATMENT].add(0.0)
            self.latency[TREATMENT].update(latency_s * 1000)
            st.sums["latency"][TREATMENT].add(math.log(latency_s))

    def labelled(
        self,
        request_id: str,
        arm: int,
        step: int,
        *,
        correct: float | None,
        abs_error: float | None,
    ) -> None:
        """Feedback scored a request of ``arm`` (the monitor's labels)."""
        if step >= len(self.steps):
            return
        st = self.steps[step]
        if correct is not None and "accuracy" in st.sums:
            st.sums["accuracy"][arm].add(correct)
        if abs_error is not None and "mae" in st.sums:
            st.sums["mae"][arm].add(abs_error)

    def outcome(
        self,
        *,
        request_id: str | None,
        unit: str | None,
        metric: str,
        value: float,
        pre: float | None = None,
    ) -> str:
        """Record an outcome; 'accepted', 'unknown' or 'expired' (InvalidInput for a metric
        that is not declared)."""
        index = self.outcome_index.get(metric)
        if index is None:
            self.outcome_counts["invalid"] += 1
            declared = ", ".join(self.outcome_index) or "none"
            raise InvalidInput(
                f"metric {metric!r} is not an outcome metric of experiment {self.name}; its "
                f"outcome metrics are: {declared} (experiment.metrics in deploy.yaml).",
                field="metric",
            )
        key = unit
        if key is None and request_id is not None:
            key = self.ids.get(request_id, request_id)
        u = self.units.get(key) if key is not None else None
        if u is None:
            self.outcome_counts["unknown"] += 1
            return "unknown"
        if self.clock() - u.seen > self.spec.outcome_ttl_s:
            self.outcome_counts["expired"] += 1
            return "expired"
        if u.step >= len(self.steps):
            self.outcome_counts["unknown"] += 1
            return "unknown"
        s = self.steps[u.step].sums[metric][u.arm]
        if pre is not None:
            if u.pre is None:
                u.pre = [0.0] * len(self.outcomes)
            old_x = u.pre[index]
            u.pre[index] = pre
            s.x_total += pre - old_x
            s.x_total_sq += pre * pre - old_x * old_x
            s.xy_total += (pre - old_x) * u.values[index]
        old = u.values[index]
        new = old + value
        if self.outcomes[index].kind == "proportion":
            new = 1.0 if (old > 0 or value > 0) else 0.0
        u.values[index] = new
        s.total += new - old
        s.total_sq += new * new - old * old
        if u.pre is not None:
            s.xy_total += u.pre[index] * (new - old)
        self.outcome_counts["accepted"] += 1
        return "accepted"

    # -- decisions -----------------------------------------------------------------------

    def evaluate(self) -> None:
        """Run the tests on the step's sums; act on harm, a finished step or a winner."""
        if self.state is not State.RUNNING:
            return
        st = self.step
        comps: dict[str, Comparison] = {}
        for m, test in st.tests.items():
            c, t = st.sums[m]
            comps[m] = test.update(c.moments(), t.moments())
        agree = None
        if "agreement" in st.sums:
            a = st.sums["agreement"][TREATMENT].moments()
            if a.n >= 30:
                agree = mean_sequence(
                    a, alpha=self.spec.alpha, planned_units=self.spec.planned_units
                )
        srm = st.srm.update(st.units) if st.srm is not None else None
        harms = []
        for g in self.guardrails:
            why = _harm(
                g,
                comps.get(g.metric),
                agree,
                self.outcomes[self.outcome_index[g.metric]]
                if g.metric in self.outcome_index
                else None,
            )
            if why:
                harms.append(f"{g.metric}: {why}")
        self.last = {"comparisons": comps, "agreement": agree, "srm": srm, "harm": harms}
        if srm is not None and srm.flagged and not self.srm_said:
            self.srm_said = True
            self._event(
                "sample ratio mismatch",
                f"units per arm {list(st.units)} against the expected "
                f"{1 - st.share:.0%}/{st.share:.0%} split (p = {srm.p_value:.2g}): the arms "
                "do not get the traffic they should; their comparison is not trustworthy",
                firing=True,
            )
        if harms:
            self.decision = "guardrail breached"
            self.reasons = harms
            if self.kind == "canary":
                self._finish(State.ROLLED_BACK, "rolled back", "; ".join(harms), firing=True)
            elif self.kind == "ab" and self.spec.stop_on_harm:
                self._finish(State.STOPPED, "stopped", "; ".join(harms), firing=True)
            elif not self.winner_said:
                self.winner_said = True
                self._event("guardrail breached", "; ".join(harms), firing=True)
            return
        if self.kind == "canary":
            self._maybe_advance()
        elif self.kind == "ab" and self.primary is not None:
            self._judge(comps.get(self.primary), agree)

    def _judge(self, c: Comparison | None, agree: Any) -> None:
        if c is None or not c.ready or self.primary is None:
            return
        lo, hi = c.ci
        spec = (
            self.outcomes[self.outcome_index[self.primary]]
            if (self.primary in self.outcome_index)
            else None
        )
        better_down = self.primary in ("errors", "latency", "p99", "mae") or (
            spec is not None and spec.direction == "decrease"
        )
        decision = "continue"
        if lo > 0:
            decision = "control wins" if better_down else "treatment wins"
        elif hi < 0:
            decision = "treatment wins" if better_down else "control wins"
        elif c.final:
            # The horizon test has spent its alpha: no more looks can find a difference.
            decision = "no difference"
        self.decision = decision
        if decision != "continue" and not self.winner_said:
            self.winner_said = True
            if decision == "no difference":
                detail = (
                    f"{self.primary}: the planned {self.spec.planned_units} units found no "
                    f"difference ({c.difference:+.4g}, CI {lo:+.4g} .. {hi:+.4g}); the split "
                    "stays until the experiment is stopped or promoted"
                )
            else:
                detail = (
                    f"{self.primary}: {c.difference:+.4g} (always-valid CI {lo:+.4g} .. "
                    f"{hi:+.4g}, p = {c.p_value:.2g})"
                )
            self._event(decision, detail)

    def _maybe_advance(self) -> None:
        st = self.step
        now = self.clock()
        if (
            st.requests[TREATMENT] < self.spec.step_min_units
            or now - st.started < self.spec.step_min_s
        ):
            return
        nxt = self.step_index + 1
        share = self.spec.ramp[nxt] / 100
        if share >= 1:
            self._finish(
                State.PROMOTED,
                "promoted",
                f"every step of the ramp passed its guardrails; the treatment (version "
                f"{self.versions[1]}) takes all traffic",
            )
            return
        self._new_step(nxt)
        self._event(
            "advanced",
            f"step {nxt + 1} of {len(self.spec.ramp)}: treatment at {share:.0%} (the previous "
            f"step: {st.requests[TREATMENT]} treatment requests in {now - st.started:.0f} s, "
            "no harm)",
        )

    def _finish(self, state: State, event: str, detail: str, *, firing: bool = False) -> None:
        self.state = state
        if state is State.PROMOTED:
            self.decision = "treatment wins" if self.decision == "continue" else self.decision
        self._event(event, detail, firing=firing)

    def act(self, action: str, *, by: str | None = None) -> str:
        """A person's ``stop``, ``promote`` or ``rollback``; the new state (InvalidInput when the
        experiment has finished or the action is unknown)."""
        states = {"stop": State.STOPPED, "promote": State.PROMOTED, "rollback": State.ROLLED_BACK}
        if action not in states:
            raise InvalidInput(
                f"action must be one of stop, promote, rollback. Got {action!r}.", field="action"
            )
        if self.state is not State.RUNNING:
            raise InvalidInput(
                f"experiment {self.name} has finished ({self.state.value}); nothing to "
                f"{action}. Start a new one under a new experiment.name.",
                field="action",
            )
        who = f" by key {by}" if by else ""
        self._finish(
            states[action],
            {"stop": "stopped", "promote": "promoted", "rollback": "rolled back"}[action],
            f"{action}{who}",
        )
        return self.state.value

    def _event(self, event: str, detail: str, *, firing: bool = False) -> None:
        e = ExperimentEvent(
            model=self.model,
            experiment=self.name,
            event=event,
            state="firing" if firing else "info",
            at=self.clock(),
            detail=detail,
            status=self.status(),
            sha256=self.sha256,
        )
        self.events.append(e)
        del self.events[:-_EVENTS_KEPT]
        self.outbox.append(e)

    def started(self) -> None:
        """Note the start (the first event, which the knowledge base keeps)."""
        self._event(
            "started",
            f"{self.kind}: control version {self.versions[0]}, treatment version "
            f"{self.versions[1]}, unit {self.spec.unit}, treatment share {self.share():.0%}",
        )

    def resume(self, saved: dict[str, Any]) -> None:
        """Continue from the state a previous server run left in the knowledge base."""
        state = State(saved.get("state", "running"))
        step = int(saved.get("step", 0))
        if state is State.RUNNING and self.kind == "canary":
            step = min(max(step, 0), len(self.spec.ramp) - 2)
            self.steps.clear()
            self._new_step(step)
        self.state = state
        self.decision = str(saved.get("decision", "continue"))
        self.reasons = [str(r) for r in saved.get("reasons", ())]
        self._event(
            "resumed",
            f"{state.value} at step {self.step_index + 1} (treatment at {self.share():.0%}), as "
            "the knowledge base had it",
        )

    # -- views ---------------------------------------------------------------------------

    def _arm_view(self, arm: int) -> dict[str, Any]:
        sk = self.latency[arm]
        n = self.requests[arm]
        return {
            "version": self.versions[arm],
            "requests": n,
            "units": sum(s.units[arm] for s in self.steps),
            "errors": self.errors[arm],
            "error_rate": self.errors[arm] / n if n else None,
            "p50_ms": sk.get_quantile(0.5) if not sk.is_empty() else None,
            "p99_ms": sk.get_quantile(0.99) if not sk.is_empty() else None,
        }

    def status(self) -> dict[str, Any]:
        """Everything ``experiment status`` shows (JSON-ready)."""
        st = self.step
        last = self.last
        comps: dict[str, Comparison] = last.get("comparisons", {})
        metrics = []
        guard = {g.metric: g for g in self.guardrails}
        for m in self.metrics:
            entry: dict[str, Any] = {
                "metric": m,
                "role": "guardrail"
                if m in guard
                else ("primary" if m == self.primary else "metric"),
                "tolerance": guard[m].limit() if m in guard else None,
            }
            if m == "agreement":
                a = st.sums["agreement"][TREATMENT]
                ag = last.get("agreement")
                entry["agreement"] = {
                    "n": a.n,
                    "mean": a.total / a.n if a.n else None,
                    "ci": [ag[1], ag[2]] if ag else None,
                }
            elif m in comps:
                entry["comparison"] = view = comps[m].to_dict()
                if m == "latency" and view["difference"] is not None:
                    # Compared on log seconds: the lift is the ratio of geometric means.
                    view["lift"] = math.expm1(view["difference"])
                    view["lift_ci"] = [
                        None if b is None else math.expm1(min(b, 700.0)) for b in view["ci"]
                    ]
            metrics.append(entry)
        srm = last.get("srm")
        return {
            "model": self.model,
            "experiment": self.name,
            "identity": self.identity,
            "kind": self.kind,
            "state": self.state.value,
            "decision": self.decision,
            "reasons": list(self.reasons),
            "unit": self.spec.unit,
            "treatment_share": self.share(),
            "step": self.step_index,
            "ramp": list(self.spec.ramp) if self.kind == "canary" else None,
            "step_started": st.started,
            "step_requests": {ARMS[a]: st.requests[a] for a in (0, 1)},
            "step_units": {ARMS[a]: st.units[a] for a in (0, 1)},
            "arms": {ARMS[a]: self._arm_view(a) for a in (0, 1)},
            "metrics": metrics,
            "srm": srm.to_dict() if srm is not None else None,
            "shadow": {**self.shadow, "max_abs_error": self.max_abs_error},
            "outcomes": dict(self.outcome_counts),
            "missing_unit": self.missing_unit,
            "p99_threshold_ms": self.p99_s * 1000 if self.p99_s else None,
            "events": [
                {"event": e.event, "at": e.at, "detail": e.detail, "state": e.state}
                for e in self.events[-20:]
            ],
        }
