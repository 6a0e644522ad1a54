"""Predicted vs measured: a planned configuration's max rate next to what a load test found.

``plan --validate`` runs the load generator's find-max search against the server in the planned
configuration and hands the measured rate to ``compare_with_measurement``, which returns the record
stored as a ``plan`` run (linked to the plan run and the load run). The same record calibrates the
serving overheads: ``implied_front_ms`` is the front CPU per request that would make prediction
and measurement agree.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, ClassVar

from scipy import optimize

from modelscale.errors import invalid_parameter
from modelscale.plan.capacity import max_rate
from modelscale.plan.server import Overheads, ServerConfig
from modelscale.plan.service import ServiceModel
from modelscale.result import Result

__all__ = ["ValidationResult", "compare_with_measurement", "implied_front_ms"]


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
    """
    if not (
        isinstance(measured_rps, int | float) and math.isfinite(measured_rps) and measured_rps > 0
    ):
        raise invalid_parameter("measured_rps", "a rate > 0", measured_rps, where="plan validation")
    if not 0 < tolerance < 1:
        raise invalid_parameter(
            "tolerance", "a share in (0, 1)", tolerance, where="plan validation"
        )
    ov = overheads or Overheads()
    est = max_rate(service, config, cores=cores, p99_ms=p99_ms, overheads=ov)
    error = est.rate_rps / measured_rps - 1.0
    within = abs(error) <= tolerance
    front = implied_front_ms(
        service, config, cores=cores, p99_ms=p99_ms, measured_rps=measured_rps, overheads=ov
    )
    summary = (
        f"{config.label()} on {cores} cores at p99 <= {p99_ms:g} ms: predicted "
        f"{est.rate_rps:,.0f} req/s ({est.method}), measured {measured_rps:,.0f} req/s, error "
        f"{error:+.1%} ({'within' if within else 'outside'} +-{tolerance:.0%})."
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
    )
