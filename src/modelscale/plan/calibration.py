"""Predicted vs measured: the calibration math of plan validation.

A load test of a planned configuration (``modelscale.workflow.validate_server``) measures its max
rate at the p99 bound; ``compare_with_measurement`` sets the plan's prediction beside it and
returns the record stored as a ``plan`` run. The same record calibrates the serving overheads:
``implied_front_ms`` is the front CPU per request that would make prediction and measurement
agree, ``fit_front_costs`` splits measured front CPU into per-request and per-batch costs, and
``measured_overheads`` reads them back from the knowledge base for the next plan. A measurement
taken while other processes kept cores busy is inconclusive: it is neither within nor outside the
tolerance, and no overheads are learnt from it.
``server_config`` reads the configuration a modelscale server publishes in its V2 metadata.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
from scipy import optimize

from modelscale.errors import InvalidInput, invalid_parameter
from modelscale.plan.capacity import max_rate
from modelscale.plan.server import Overheads, ServerConfig
from modelscale.plan.service import ServiceModel
from modelscale.result import Result, RunLinks

if TYPE_CHECKING:
    from modelscale.store import Store

__all__ = [
    "DEFAULT_CLIENT_MS",
    "MAX_OTHER_CORES",
    "ValidationResult",
    "compare_with_measurement",
    "fit_front_costs",
    "implied_front_ms",
    "measured_overheads",
    "server_config",
]

DEFAULT_CLIENT_MS = 0.15
"""CPU per request of the load generator on the server's machine, until measured (this box: 0.15)."""

MAX_OTHER_CORES = 0.5
"""The CPU (cores) other processes may keep busy during a probe window before a local validation
counts as disturbed. A quiet machine measured 0.02-0.1 here; a build or a benchmark beside the test
takes whole cores, and moved the measured max rate by 50-180%."""


@dataclass(frozen=True)
class ValidationResult(Result):
    """A planned configuration's predicted and measured max rate at the p99 bound, side by side.

    Attributes:
        model: Name and sha256 of the model.
        config: Replicas, threads and batch policy that ran.
        cores: Cores of the machine it ran on.
        p99_ms: The bound.
        predicted_rps: The plan's max rate at the bound.
        measured_rps: The load test's max rate at the bound.
        error: predicted / measured - 1.
        tolerance: The accepted |error|.
        within_tolerance: Whether |error| <= tolerance.
        method: What produced the prediction.
        implied_front_ms: Front CPU per request that would make the two agree (None if none does).
        load_run_id: The load run the measurement came from.
        plan_run_id: The plan run the prediction came from.
        summary: One line.
        params: The overheads the prediction assumed.
        measured_cpu_ms: CPU per request measured during the load test, by part ('front',
            'replicas', 'client'); empty when the server ran elsewhere.
        measured_handover_ms: Mean time per batch a replica was held beyond its inference (IPC,
            wake-ups), from the server's metrics over the search; None when not available.
        mean_batch: Mean rows per batch over the search (server metrics).
        infer_ratio: Mean inference time per batch in the replicas over the search, divided by
            the profile's time for a batch of ``mean_batch``: how much sharing the cores slowed
            the model itself (the capacity model's slowdown factor predicts it).
        calibrated_rps: The prediction again with the serving overheads measured during the test
            (front CPU and hand-over) in place of the assumed ones (None when neither was
            measured): the queueing model's own error, with the overheads known.
        calibrated_error: calibrated_rps / measured - 1.
        speed_ratio: The model's time in a short re-measurement just before the load test over
            the profile's time (> 1: this machine runs it slower now than when it was profiled);
            None when not checked (a remote server). A diagnostic: the predictions do not use
            it (see ``modelscale.workflow.ValidationOptions.speed_check``).
        other_cpu_cores: Per probe window, in the order they ran, the cores that processes other
            than the server and the load generator kept busy; empty when not metered (a server
            elsewhere, or not Linux).
        max_other_cores: The most ``other_cpu_cores`` may reach before the measurement counts as
            disturbed.
        inconclusive: Whether it was disturbed: then ``within_tolerance`` is False, the summary
            says by how much, and ``measured_overheads`` learns nothing from it.
    """

    kind: ClassVar[str] = "plan"

    model: dict[str, Any]
    config: ServerConfig
    cores: int
    p99_ms: float
    predicted_rps: float
    measured_rps: float
    error: float
    tolerance: float
    within_tolerance: bool
    method: str
    implied_front_ms: float | None
    load_run_id: int | None
    plan_run_id: int | None
    summary: str
    params: dict[str, Any]
    measured_cpu_ms: dict[str, float] = field(default_factory=dict)
    measured_handover_ms: float | None = None
    mean_batch: float | None = None
    infer_ratio: float | None = None
    calibrated_rps: float | None = None
    calibrated_error: float | None = None
    speed_ratio: float | None = None
    other_cpu_cores: tuple[float, ...] = ()
    max_other_cores: float = MAX_OTHER_CORES
    inconclusive: bool = False

    @property
    def verdict(self) -> str:
        """'within', 'outside' (the tolerance) or 'inconclusive' (disturbed)."""
        if self.inconclusive:
            return "inconclusive"
        return "within" if self.within_tolerance else "outside"

    def links(self) -> RunLinks:
        """Filed under the validated model's version."""
        sha = self.model.get("sha256")
        return RunLinks(str(sha) if sha else None)


def implied_front_ms(
    service: ServiceModel,
    config: ServerConfig,
    *,
    cores: int,
    p99_ms: float,
    measured_rps: float,
    overheads: Overheads,
) -> float | None:
    """The front CPU per request (ms) at which the predicted max rate equals the measured one."""

    def gap(front: float) -> float:
        ov = dataclasses.replace(overheads, front_ms=front)
        return (
            max_rate(service, config, cores=cores, p99_ms=p99_ms, overheads=ov).rate_rps
            - measured_rps
        )

    lo, hi = 0.0, 1000.0 / max(measured_rps, 1e-9)  # a front slower than this alone caps below
    try:
        if gap(lo) < 0 or gap(hi) > 0:
            return None
        return float(optimize.brentq(gap, lo, hi, xtol=1e-3, rtol=1e-3))
    except ValueError:
        return None


def compare_with_measurement(
    service: ServiceModel,
    config: ServerConfig,
    *,
    cores: int,
    p99_ms: float,
    measured_rps: float,
    overheads: Overheads | None = None,
    model: dict[str, Any] | None = None,
    tolerance: float = 0.15,
    load_run_id: int | None = None,
    plan_run_id: int | None = None,
    measured_cpu_ms: Mapping[str, float] | None = None,
    measured_handover_ms: float | None = None,
    mean_batch: float | None = None,
    mean_infer_ms: float | None = None,
    other_cpu_cores: Sequence[float] = (),
    max_other_cores: float = MAX_OTHER_CORES,
) -> ValidationResult:
    """Predict ``config``'s max rate at ``p99_ms`` and set it beside ``measured_rps``.

    Args:
        service: The performance model the plan used (measured on this machine).
        config: The configuration the server ran.
        cores: Cores of the machine the server ran on.
        p99_ms: The bound the load test searched under.
        measured_rps: The load test's max rate at that bound.
        overheads: Serving overheads the prediction assumes (a load generator on the same machine
            belongs in ``client_ms``).
        model: Name and sha256 of the model.
        tolerance: Accepted relative error.
        load_run_id: The load run, for the record.
        plan_run_id: The plan run, for the record.
        measured_cpu_ms: CPU per request measured during the load test, by part.
        measured_handover_ms: Hand-over per batch measured during the load test.
        mean_batch: Mean rows per batch during the load test.
        mean_infer_ms: Mean inference time per batch in the replicas during the load test.
        other_cpu_cores: Per probe window, the cores other processes kept busy (empty: not
            metered). Past ``max_other_cores`` in any window the result is inconclusive.
        max_other_cores: The threshold.
    """
    if not (
        isinstance(measured_rps, int | float) and math.isfinite(measured_rps) and measured_rps > 0
    ):
        raise invalid_parameter("measured_rps", "a rate > 0", measured_rps, where="plan validation")
    if not 0 < tolerance < 1:
        raise invalid_parameter(
            "tolerance", "a share in (0, 1)", tolerance, where="plan validation"
        )
    if not (math.isfinite(max_other_cores) and max_other_cores >= 0):
        raise invalid_parameter(
            "max_other_cores", "a number of cores >= 0", max_other_cores, where="plan validation"
        )
    ov = overheads or Overheads()
    est = max_rate(service, config, cores=cores, p99_ms=p99_ms, overheads=ov)
    error = est.rate_rps / measured_rps - 1.0
    others = tuple(float(c) for c in other_cpu_cores)
    worst = max(others, default=0.0)
    disturbed = worst > max_other_cores
    within = abs(error) <= tolerance and not disturbed
    front = implied_front_ms(
        service, config, cores=cores, p99_ms=p99_ms, measured_rps=measured_rps, overheads=ov
    )
    cpu = dict(measured_cpu_ms or {})
    calibrated = None
    if cpu.get("front") or measured_handover_ms is not None:
        cal = dataclasses.replace(
            ov,
            # The front's measured CPU per request at this run's batches: per-batch work included.
            front_ms=cpu.get("front") or ov.front_ms,
            front_batch_ms=0.0 if cpu.get("front") else ov.front_batch_ms,
            batch_ms=ov.batch_ms if measured_handover_ms is None else measured_handover_ms,
        )
        calibrated = max_rate(service, config, cores=cores, p99_ms=p99_ms, overheads=cal).rate_rps
    if disturbed:
        busy = sum(c > max_other_cores for c in others)
        verdict = (
            f"inconclusive: other processes kept up to {worst:.1f} of {cores} cores busy "
            f"(more than {max_other_cores:g} in {busy} of {len(others)} probe windows), so the "
            "measurement shared its CPU; run it again on a quiet machine"
        )
    else:
        verdict = f"{'within' if within else 'outside'} +-{tolerance:.0%}"
    summary = (
        f"{config.label()} on {cores} cores at p99 <= {p99_ms:g} ms: predicted "
        f"{est.rate_rps:,.0f} req/s ({est.method}), measured {measured_rps:,.0f} req/s, error "
        f"{error:+.1%} ({verdict})"
        + (
            ""
            if calibrated is None
            else f"; with the overheads measured: predicted {calibrated:,.0f} req/s, error "
            f"{calibrated / measured_rps - 1:+.1%}"
        )
        + "."
    )
    return ValidationResult(
        model=dict(model or {}),
        config=config,
        cores=cores,
        p99_ms=p99_ms,
        predicted_rps=est.rate_rps,
        measured_rps=float(measured_rps),
        error=error,
        tolerance=tolerance,
        within_tolerance=within,
        method=est.method,
        implied_front_ms=front,
        load_run_id=load_run_id,
        plan_run_id=plan_run_id,
        summary=summary,
        params={"overheads": dataclasses.asdict(ov), "tolerance": tolerance},
        measured_cpu_ms=cpu,
        measured_handover_ms=measured_handover_ms,
        mean_batch=mean_batch,
        infer_ratio=None
        if mean_infer_ms is None or mean_batch is None
        else mean_infer_ms / float(service.time_ms(np.asarray(mean_batch), config.threads)),
        calibrated_rps=calibrated,
        calibrated_error=None if calibrated is None else calibrated / measured_rps - 1.0,
        other_cpu_cores=others,
        max_other_cores=max_other_cores,
        inconclusive=disturbed,
    )


def server_config(meta: Mapping[str, Any], *, url: str) -> ServerConfig:
    """The configuration a modelscale server publishes in its V2 model metadata ``parameters``."""
    params = meta.get("parameters") or {}
    adaptive = params.get("batching") == "slo"
    needed = ("replicas", "threads", "max_batch_size") + (
        ("p99_ms",) if adaptive else ("max_wait_ms",)
    )
    missing = [k for k in needed if k not in params]
    if missing:
        raise InvalidInput(
            f"The server at {url} does not say how it runs {meta.get('name', 'the model')!r}: its "
            f"V2 model metadata lacks parameters {', '.join(missing)}. Validation needs a "
            "modelscale server (it publishes replicas, threads and its batch policy there).",
            field="url",
        )
    try:
        max_batch = max(1, int(params["max_batch_size"]))
        if adaptive:
            return ServerConfig(
                int(params["replicas"]),
                int(params["threads"]),
                max_batch,
                objective_ms=float(params["p99_ms"]),
            )
        return ServerConfig(
            int(params["replicas"]),
            int(params["threads"]),
            max_batch,
            float(params["max_wait_ms"]) if max_batch > 1 else 0.0,
        )
    except (TypeError, ValueError, InvalidInput) as exc:
        raise InvalidInput(
            f"The server at {url} publishes a configuration that is not valid ({exc}).",
            field="url",
        ) from None


def fit_front_costs(points: Sequence[tuple[float, float]]) -> tuple[float, float]:
    """(front CPU per request, per batch) from (mean batch, front CPU per request) measurements.

    A request costs the front ``front_ms + front_batch_ms / mean_batch``: its own parsing and
    encoding, and its share of handing its batch to a replica and splitting the reply. Fitted by
    non-negative least squares; one batch size alone cannot separate the two, so it all goes to
    ``front_ms`` then.
    """
    pts = [(b, f) for b, f in points if b >= 1 and f > 0]
    if not pts:
        raise invalid_parameter("points", "(mean batch >= 1, front ms > 0) pairs", points)
    inv = np.array([1.0 / b for b, _ in pts])
    front = np.array([f for _, f in pts])
    if np.ptp(inv) < 0.05:
        return float(np.mean(front)), 0.0
    coef, _ = optimize.nnls(np.column_stack([np.ones_like(inv), inv]), front)
    return float(coef[0]), float(coef[1])


def measured_overheads(store: Store, sha256: str, base: Overheads) -> tuple[Overheads, int] | None:
    """``base`` with the serving overheads local validations of this model on this machine
    measured, and the latest such run's id (None: none measured).

    The front's per-request and per-batch costs are fitted over the latest validation of each
    configuration, and the hand-over per batch is their median (it varies by configuration: 0.4 ms
    on one MiniLM replica here, 0.9 ms on two). The load generator's CPU is not carried over: it
    belongs to the test, not to the server. Inconclusive validations (other processes shared the
    CPU) are skipped: what they measured is the neighbours' as much as the server's.
    """
    from modelscale.machine import machine_info

    here = machine_info()
    latest: dict[str, Any] = {}
    for run in store.runs(model=sha256, kind="plan"):  # newest first
        res = run.results
        front = (res.get("measured_cpu_ms") or {}).get("front")
        m = run.machine or {}
        if (
            run.model_version == sha256
            and not res.get("inconclusive")
            and front
            and res.get("mean_batch")
            and m.get("cpu_model") == here.cpu_model
            and m.get("usable_cores") == here.usable_cores
        ):
            latest.setdefault(json.dumps(res.get("config"), sort_keys=True), run)
    if not latest:
        return None
    runs = list(latest.values())
    newest = runs[0]
    per_request, per_batch = fit_front_costs(
        [(r.results["mean_batch"], r.results["measured_cpu_ms"]["front"]) for r in runs]
    )
    handovers = [float(h) for r in runs if (h := r.results.get("measured_handover_ms")) is not None]
    return dataclasses.replace(
        base,
        front_ms=per_request,
        front_batch_ms=per_batch,
        batch_ms=float(np.median(handovers)) if handovers else base.batch_ms,
    ), newest.id
