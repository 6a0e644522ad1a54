"""Compute-optimal allocation under C = 6 N D, its predicted loss, and the inverse questions.

For L(N, D) = E + A / N^alpha + B / D^beta and a budget C = 6 N D, minimising L gives

    G = (alpha A / (beta B))^(1 / (alpha + beta)),   a = beta / (alpha + beta)
    N_opt = G (C / 6)^a,   D_opt = (C / 6)^(1 - a) / G
    L_opt(C) = E + K (C / 6)^(-alpha beta / (alpha + beta)),   K = A G^-alpha + B G^beta

so the budget that reaches a target loss L is C = 6 (K / (L - E))^((alpha + beta) / (alpha beta)),
and the budget for which a model of N parameters is compute-optimal is C = 6 (N / G)^(1 / a).
Intervals come from applying the same closed forms to every bootstrap fit.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from modelscale.errors import InvalidInput, invalid_parameter
from modelscale.laws.forms import FAR_FACTOR, ExtrapolationWarning, ScalingLaw, get_form
from modelscale.result import Result

__all__ = [
    "Allocation",
    "ComputeOptimal",
    "budget_for_loss",
    "budget_for_params",
    "compute_optimal",
    "frontier",
    "load_fitted_law",
    "optimal_allocation",
    "optimal_loss",
]

Interval = tuple[float, float]


@dataclass(frozen=True)
class Allocation:
    """One row of a budget table.

    Attributes:
        given: What was asked: ``flops`` (a budget), ``params`` (a size) or ``loss`` (a target).
        flops: The budget in FLOPs.
        n_opt: Compute-optimal parameters (None for a loss-vs-compute law).
        d_opt: Compute-optimal training tokens (None for a loss-vs-compute law).
        loss: Predicted loss at the optimum.
        tokens_per_param: ``d_opt / n_opt``.
        flops_ci: Bootstrap interval of ``flops`` (for a target loss or model size).
        n_opt_ci: Bootstrap interval of ``n_opt``.
        d_opt_ci: Bootstrap interval of ``d_opt``.
        loss_ci: Bootstrap interval of ``loss``.
        warnings: Extrapolation notes for this row.
    """

    given: str
    flops: float
    n_opt: float | None
    d_opt: float | None
    loss: float
    tokens_per_param: float | None = None
    flops_ci: Interval | None = None
    n_opt_ci: Interval | None = None
    d_opt_ci: Interval | None = None
    loss_ci: Interval | None = None
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class ComputeOptimal(Result):
    """Compute-optimal allocations (and the inverse questions) under a fitted law."""

    kind: ClassVar[str] = "laws"

    law: ScalingLaw
    allocations: tuple[Allocation, ...]
    confidence: float
    n_bootstrap: int
    warnings: tuple[str, ...]
    summary: str
    params: dict[str, Any] = field(default_factory=dict)
    analysis: str = "optimal"


def _chinchilla_params(law: ScalingLaw) -> tuple[float, float, float, float, float]:
    if law.form != "chinchilla":
        raise InvalidInput(
            f"A compute-optimal N and D needs the chinchilla form L(N, D); this law is {law.form}. "
            "Refit with form 'chinchilla'.",
            field="form",
        )
    assert law.B is not None and law.beta is not None  # a Chinchilla law always has them
    if law.alpha <= 0 or law.beta <= 0:
        raise InvalidInput(
            f"The law has a zero exponent (alpha={law.alpha:g}, beta={law.beta:g}), so no budget "
            "has a finite optimum; the fit flagged this.",
            field="law",
        )
    return law.E, law.A, law.B, law.alpha, law.beta


def frontier(p: np.ndarray, flops: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """N_opt, D_opt and L_opt for parameter rows ``p`` = (E, A, B, alpha, beta) and budgets.

    ``p`` and ``flops`` broadcast, so bootstrap rows against a grid of budgets give whole bands.
    """
    E, A, B, alpha, beta = (p[..., j] for j in range(5))
    G = (alpha * A / (beta * B)) ** (1.0 / (alpha + beta))
    a = beta / (alpha + beta)
    n = G * (flops / 6.0) ** a
    d = (flops / 6.0) ** (1.0 - a) / G
    return n, d, E + A / n**alpha + B / d**beta


def _k(p: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    E, A, B, alpha, beta = (p[..., j] for j in range(5))
    G = (alpha * A / (beta * B)) ** (1.0 / (alpha + beta))
    return E, A * G**-alpha + B * G**beta, alpha * beta / (alpha + beta)


def optimal_allocation(law: ScalingLaw, flops: Any) -> tuple[Any, Any]:
    """Compute-optimal (N, D) for budgets ``flops`` under C = 6 N D (closed form)."""
    p = np.array(_chinchilla_params(law))
    n, d, _ = frontier(p, np.asarray(flops, dtype=float))
    return n, d


def optimal_loss(law: ScalingLaw, flops: Any) -> Any:
    """Predicted loss of the compute-optimal model at budgets ``flops``."""
    c = np.asarray(flops, dtype=float)
    if law.form == "power-c":
        return law.E + law.A / c**law.alpha
    p = np.array(_chinchilla_params(law))
    return frontier(p, c)[2]


def budget_for_loss(law: ScalingLaw, target: float) -> float:
    """The smallest budget (FLOPs) whose compute-optimal model reaches loss ``target``."""
    if not (math.isfinite(target) and target > 0):
        raise invalid_parameter("target_loss", "a positive number", target, where="laws optimal")
    if target <= law.E:
        raise InvalidInput(
            f"A loss of {target:g} is unreachable: it is not above the law's irreducible loss "
            f"E = {law.E:.4g}.",
            field="target_loss",
        )
    if law.form == "power-c":
        return float((law.A / (target - law.E)) ** (1.0 / law.alpha))
    E, K, expo = _k(np.array(_chinchilla_params(law)))
    return float(6.0 * (K / (target - E)) ** (1.0 / expo))


def budget_for_params(law: ScalingLaw, n_params: float) -> float:
    """The budget (FLOPs) for which a model of ``n_params`` parameters is compute-optimal."""
    if not (math.isfinite(n_params) and n_params > 0):
        raise invalid_parameter("params", "a positive number", n_params, where="laws optimal")
    _, A, B, alpha, beta = _chinchilla_params(law)
    G = (alpha * A / (beta * B)) ** (1.0 / (alpha + beta))
    return float(6.0 * (n_params / G) ** ((alpha + beta) / beta))


def load_fitted_law(fit: Any) -> tuple[ScalingLaw, np.ndarray, float]:
    """The law, its bootstrap parameter rows (E, A, B, alpha, beta order) and their confidence.

    Args:
        fit: A ``ScalingLawFit``, a ``ScalingLaw``, or the results dict of a stored fit run.
    """
    if isinstance(fit, ScalingLaw):
        return fit, np.empty((0, len(get_form(fit.form).param_names))), 0.95
    if isinstance(fit, Mapping):
        if fit.get("analysis") not in (None, "fit") or "law" not in fit:
            raise InvalidInput(
                "That stored run is not a scaling-law fit; pick a run made by "
                "`modelscale laws fit`.",
                field="fit",
            )
        law = ScalingLaw.from_dict(fit["law"])
        rows = fit.get("bootstrap_samples") or []
        confidence = float(fit.get("confidence") or 0.95)
    else:
        found = getattr(fit, "law", None)
        if not isinstance(found, ScalingLaw):
            raise invalid_parameter("fit", "a ScalingLawFit, a ScalingLaw or a stored fit", fit)
        law = found
        rows = list(getattr(fit, "bootstrap_samples", ()))
        confidence = float(getattr(fit, "confidence", 0.95))
    names = get_form(law.form).param_names
    samples = np.array(rows, dtype=float) if rows else np.empty((0, len(names)))
    if samples.ndim != 2 or samples.shape[1] != len(names):
        raise InvalidInput("The stored bootstrap samples do not match the law's form.", field="fit")
    # Rows are in ``param_names`` order, (E, A, B, alpha, beta) or (E, A, alpha): what the closed
    # forms below index.
    return law, samples, confidence


def _interval(values: np.ndarray, confidence: float) -> Interval | None:
    values = values[~np.isnan(values)]
    if values.shape[0] < 2:
        return None
    tail = (1 - confidence) / 2 * 100
    # Budgets for a target loss can be infinite (a bootstrap fit whose E is above the target);
    # "nearest" picks an order statistic instead of interpolating towards infinity.
    method = "linear" if np.all(np.isfinite(values)) else "nearest"
    lo, hi = np.percentile(values, [tail, 100 - tail], method=method)  # type: ignore[call-overload]
    return float(lo), float(hi)


def _as_list(name: str, values: float | Sequence[float] | None) -> list[float]:
    if values is None:
        return []
    seq = [values] if isinstance(values, int | float) else list(values)
    out = []
    for v in seq:
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) or v <= 0:
            raise invalid_parameter(name, "positive numbers", v, where="laws optimal")
        out.append(float(v))
    return out


def compute_optimal(
    fit: Any,
    *,
    flops: float | Sequence[float] | None = None,
    params: float | Sequence[float] | None = None,
    target_loss: float | Sequence[float] | None = None,
    far: float = FAR_FACTOR,
    warn: bool = True,
) -> ComputeOptimal:
    """Compute-optimal N and D (and loss) per budget; or the budget a model size or loss needs.

    Args:
        fit: A ``ScalingLawFit``, a ``ScalingLaw``, or a stored fit's results dict.
        flops: Budgets in FLOPs.
        params: Model sizes; each row gives the budget for which that size is compute-optimal.
        target_loss: Target losses; each row gives the smallest budget that reaches it.
        far: Ratio beyond the fitted range at which a row is flagged as an extrapolation.
        warn: Also raise an ``ExtrapolationWarning`` per flagged row.

    Returns:
        One allocation per requested value, with bootstrap intervals when the fit has them.
    """
    law, samples, confidence = load_fitted_law(fit)
    budgets = _as_list("flops", flops)
    sizes = _as_list("params", params)
    targets = _as_list("target_loss", target_loss)
    if not (budgets or sizes or targets):
        raise InvalidInput(
            "Give at least one of 'flops', 'params' or 'target_loss'.", field="flops"
        )
    if not (isinstance(far, int | float) and far >= 1):
        raise invalid_parameter("far", "a number >= 1", far, where="laws optimal")
    if law.form not in ("chinchilla", "power-c"):
        _chinchilla_params(law)  # raises the message that explains which form is needed
    if sizes and law.form != "chinchilla":
        _chinchilla_params(law)
    asked: list[tuple[str, float, float]] = [("flops", c, c) for c in budgets]
    asked += [("params", n, budget_for_params(law, n)) for n in sizes]
    asked += [("loss", t, budget_for_loss(law, t)) for t in targets]

    rows: list[Allocation] = []
    all_notes: list[str] = []
    for given, value, c in asked:
        with np.errstate(all="ignore"):
            sample_c = _sample_budget(law, samples, given, value, c)
            n: float | None
            d: float | None
            if law.form == "chinchilla":
                n, d = (float(v) for v in optimal_allocation(law, c))
                loss = float(optimal_loss(law, c))
                sn, sd, sl = frontier(samples, sample_c) if samples.shape[0] else (np.empty(0),) * 3
            else:
                n = d = None
                loss = float(optimal_loss(law, c))
                sn = sd = np.empty(0)
                sl = samples[:, 0] + samples[:, 1] / sample_c ** samples[:, 2]
        checks: dict[str, Any] = {"C": c}
        if n is not None:
            checks.update(N=n, D=d)
        notes = [
            m if m.startswith("C =") else f"At C = {c:.3g}: {m}"
            for m in law.extrapolation(far, **checks)
        ]
        if warn:
            for note in notes:
                warnings.warn(note, ExtrapolationWarning, stacklevel=2)
        all_notes += notes
        rows.append(
            Allocation(
                given=given,
                flops=c,
                n_opt=n,
                d_opt=d,
                loss=loss if given != "loss" else value,
                tokens_per_param=(d / n) if n and d else None,
                flops_ci=_interval(sample_c, confidence) if given != "flops" else None,
                n_opt_ci=_interval(sn, confidence) if n is not None and given != "params" else None,
                d_opt_ci=_interval(sd, confidence) if d is not None else None,
                loss_ci=_interval(sl, confidence) if given != "loss" else None,
                warnings=tuple(notes),
            )
        )
    first = rows[0]
    summary = (
        f"C={first.flops:.3g}: "
        + (f"N_opt={first.n_opt:.3g} D_opt={first.d_opt:.3g} " if first.n_opt else "")
        + f"L={first.loss:.4g}"
        + (f" (+{len(rows) - 1} more)" if len(rows) > 1 else "")
    )
    return ComputeOptimal(
        law=law,
        allocations=tuple(rows),
        confidence=confidence,
        n_bootstrap=int(samples.shape[0]),
        warnings=tuple(all_notes),
        summary=summary,
        params={"flops": budgets, "params": sizes, "target_loss": targets, "far": far},
    )


def _sample_budget(
    law: ScalingLaw, samples: np.ndarray, given: str, value: float, c: float
) -> np.ndarray:
    """Per bootstrap fit, the budget the question implies (the same budget when one was given)."""
    m = samples.shape[0]
    if given == "flops" or m == 0:
        return np.full(m, c)
    if law.form == "power-c":
        E, A, alpha = samples[:, 0], samples[:, 1], samples[:, 2]
        return np.where(value > E, (A / (value - E)) ** (1.0 / alpha), np.inf)
    if given == "params":
        _, A, B, alpha, beta = (samples[:, j] for j in range(5))
        G = (alpha * A / (beta * B)) ** (1.0 / (alpha + beta))
        return 6.0 * (value / G) ** ((alpha + beta) / beta)
    E, K, expo = _k(samples)
    return np.where(value > E, 6.0 * (K / (value - E)) ** (1.0 / expo), np.inf)
