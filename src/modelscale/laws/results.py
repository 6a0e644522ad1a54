"""What a scaling-law fit returns: parameters with intervals, the extrapolation check, the data."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from modelscale.errors import invalid_parameter
from modelscale.laws.forms import ScalingLaw
from modelscale.result import Result

__all__ = ["HoldoutCheck", "ParameterEstimate", "ScalingLawFit"]


@dataclass(frozen=True)
class ParameterEstimate:
    """One fitted parameter with its bootstrap interval.

    Attributes:
        name: ``E``, ``A``, ``B``, ``alpha`` or ``beta``.
        value: The point estimate (fit on all points).
        ci_low: Lower end of the bootstrap percentile interval, None without bootstrap.
        ci_high: Upper end of the interval.
        at_bound: ``"lower"`` or ``"upper"`` when the estimate sits on its optimisation bound.
    """

    name: str
    value: float
    ci_low: float | None = None
    ci_high: float | None = None
    at_bound: str | None = None


@dataclass(frozen=True)
class HoldoutCheck:
    """Leave-largest-out: fit without the largest runs, then predict them.

    Attributes:
        by: The role the runs were ranked by (``C`` where known).
        n_held_out: Runs held out.
        threshold: Smallest held-out value of ``by``; the fit saw only runs below it.
        mean_abs_rel_error: Mean |predicted - observed| / observed over the held-out runs.
        max_abs_rel_error: Largest such error.
        in_sample_mean_abs_rel_error: The same runs' mean error under the fit on all points.
        law: The law fitted without the held-out runs.
        points: Per held-out run: source row, its ``by`` value, observed and predicted loss.
    """

    by: str
    n_held_out: int
    threshold: float
    mean_abs_rel_error: float
    max_abs_rel_error: float
    in_sample_mean_abs_rel_error: float
    law: ScalingLaw
    points: tuple[dict[str, float], ...] = ()


@dataclass(frozen=True)
class ScalingLawFit(Result):
    """A fitted scaling law with intervals, data bookkeeping and honesty checks."""

    kind: ClassVar[str] = "laws"

    form: str
    law: ScalingLaw
    estimates: tuple[ParameterEstimate, ...]
    objective: float
    converged: bool
    optimizer_message: str
    source: str
    n_rows: int
    n_points: int
    n_reduced: int
    dropped_rows: tuple[int, ...]
    columns: Mapping[str, str]
    derived: Mapping[str, str]
    n_starts: int
    bootstrap_requested: int
    bootstrap_succeeded: int
    confidence: float
    bootstrap_samples: tuple[tuple[float, ...], ...]
    holdout: HoldoutCheck | None
    flags: tuple[str, ...]
    points: Mapping[str, list[float]]
    workers: int
    wall_s: float
    summary: str
    params: dict[str, Any] = field(default_factory=dict)
    analysis: str = "fit"

    def estimate(self, name: str) -> ParameterEstimate:
        """The estimate of parameter ``name``."""
        for est in self.estimates:
            if est.name == name:
                return est
        raise invalid_parameter("name", f"one of {[e.name for e in self.estimates]}", name)

    def loss(self, **values: Any) -> Any:
        """Predicted loss (see ``ScalingLaw.loss``); warns when far outside the fitted range."""
        return self.law.loss(**values)
