"""Fit a scaling law to training runs, with bootstrap intervals and a leave-largest-out check.

``fit_scaling_law`` reads the runs, reduces repeated runs to the best per point, fits the chosen
form from the grid of starting points (see ``modelscale.laws.optimize``), refits seeded bootstrap
resamples for confidence intervals, and refits without the largest runs to measure how well the
law predicts runs beyond those it saw. Everything that makes the result less trustworthy (no
convergence, parameters on their bounds, a poor extrapolation check) is listed in ``flags``.
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np

from modelscale.errors import InvalidInput
from modelscale.laws import data as _data
from modelscale.laws.data import RunsTable, load_runs, reduce_best_per_point
from modelscale.laws.forms import Form, ScalingLaw, get_form
from modelscale.laws.optimize import MultiStart, Problem, Runner, bootstrap_fits, choose_workers
from modelscale.laws.optimize import multistart as run_multistart
from modelscale.laws.options import FitOptions
from modelscale.laws.results import HoldoutCheck, ParameterEstimate, ScalingLawFit
from modelscale.progress import OnProgress

__all__ = ["fit_scaling_law"]

_ROLE_TEXT = {"N": "parameters", "D": "tokens", "C": "FLOPs", "L": "loss"}


def _variables(table: RunsTable, form: Form) -> np.ndarray:
    found = [r for r in ("N", "D", "C") if table.role(r) is not None]
    missing = [v for v in form.variables if table.role(v) is None]
    if missing:
        needs = " and ".join(f"{v} ({_ROLE_TEXT[v]})" for v in form.variables)
        raise InvalidInput(
            f"The {form.name} form needs {needs}, but {table.source} gives "
            f"{', '.join(found) or 'none of N, D, C'} (columns: {dict(table.columns)}). Map the "
            "missing columns in 'columns' (D or N is derived from C = 6ND when the other is "
            "given).",
            field=missing[0],
        )
    return np.log(np.vstack([_role(table, v) for v in form.variables]))


def _role(table: RunsTable, role: str) -> np.ndarray:
    values = table.role(role)
    if values is None:  # C = 6ND is derived for the Chinchilla form, so only a misuse gets here
        raise InvalidInput(f"No {role} ({_ROLE_TEXT[role]}) values in {table.source}.", field=role)
    return values


def _ranges(table: RunsTable) -> dict[str, tuple[float, float]]:
    out = {}
    for role in ("N", "D", "C"):
        values = table.role(role)
        if values is not None and len(values):
            out[role] = (float(np.min(values)), float(np.max(values)))
    return out


def _law(form: Form, x: np.ndarray, ranges: dict[str, tuple[float, float]]) -> ScalingLaw:
    public = form.to_public(x)
    return ScalingLaw(form=form.name, ranges=ranges, **public)


def _at_bound(form: Form, x: np.ndarray, bounds: tuple[tuple[float, float], ...]) -> dict[str, str]:
    out: dict[str, str] = {}
    public_of_raw = {"a": "A", "b": "B", "e": "E", "alpha": "alpha", "beta": "beta"}
    for name, value, (lo, hi) in zip(form.raw_names, x, bounds, strict=True):
        span = hi - lo
        if value <= lo + 1e-6 * span:
            out[public_of_raw[name]] = "lower"
        elif value >= hi - 1e-6 * span:
            out[public_of_raw[name]] = "upper"
    return out


def _holdout(
    table: RunsTable,
    form: Form,
    problem: Problem,
    full_law: ScalingLaw,
    runner: Runner,
    fraction: float,
    on_progress: OnProgress | None,
) -> tuple[HoldoutCheck | None, str | None]:
    # Compute is what a budget extrapolates in; a single-variable law extrapolates in its variable.
    by = "C" if form.name == "chinchilla" else form.variables[0]
    ranking = _role(table, by)
    n = len(table)
    k = max(1, round(fraction * n))
    if n - k < form.n_params:
        return None, (
            f"Leave-largest-out check skipped: holding out {k} of {n} points leaves fewer than the "
            f"{form.n_params} parameters."
        )
    order = np.argsort(ranking, kind="stable")
    train, test = np.sort(order[: n - k]), np.sort(order[n - k :])
    sub = problem.subset(train)
    fit = run_multistart(sub, form.grid(), runner, on_progress=on_progress, stage="holdout")
    law = _law(form, fit.x, _ranges(table.take(train)))
    values = {v: _role(table, v)[test] for v in form.variables}
    observed = table.L[test]
    predicted = np.asarray(law.loss(warn=False, **values), dtype=float)
    in_sample = np.asarray(full_law.loss(warn=False, **values), dtype=float)
    err = np.abs(predicted - observed) / observed
    points = tuple(
        {
            "row": int(table.rows[i]),
            by: float(ranking[i]),
            "loss": float(table.L[i]),
            "predicted": float(p),
        }
        for i, p in zip(test, predicted, strict=True)
    )
    check = HoldoutCheck(
        by=by,
        n_held_out=k,
        threshold=float(np.min(ranking[test])),
        mean_abs_rel_error=float(np.mean(err)),
        max_abs_rel_error=float(np.max(err)),
        in_sample_mean_abs_rel_error=float(np.mean(np.abs(in_sample - observed) / observed)),
        law=law,
        points=points,
    )
    return check, None


def _flags(
    form: Form,
    best: MultiStart,
    bounds_hit: dict[str, str],
    n_points: int,
    boot_raw: np.ndarray,
    boot_ok: np.ndarray,
    bounds: tuple[tuple[float, float], ...],
    holdout: HoldoutCheck | None,
    confidence: float,
) -> list[str]:
    flags: list[str] = []
    if not best.success:
        flags.append(
            f"The best fit did not converge (L-BFGS-B: {best.message}); treat it as approximate."
        )
    for name, side in bounds_hit.items():
        flags.append(
            f"{name} sits on its {side} optimisation bound: the data do not pin it down "
            "(for E: no evidence of an irreducible loss; for an exponent: no dependence)."
        )
    if n_points < 2 * form.n_params:
        flags.append(
            f"Only {n_points} points for {form.n_params} parameters: the fit is weakly determined."
        )
    for x, fun in best.alternatives:
        if fun <= best.fun * 1.01:
            alt = ", ".join(f"{k}={v:.4g}" for k, v in form.to_public(x).items())
            flags.append(f"Another optimum fits almost as well (objective within 1%): {alt}.")
            break
    if boot_raw.shape[0]:
        failed = int(np.sum(~boot_ok))
        if failed:
            flags.append(f"{failed} of {boot_raw.shape[0]} bootstrap fits did not converge.")
        lows = np.array([b[0] for b in bounds])
        highs = np.array([b[1] for b in bounds])
        span = highs - lows
        on_edge = np.any(
            (boot_raw <= lows + 1e-6 * span) | (boot_raw >= highs - 1e-6 * span), axis=1
        )
        # Once more resamples than one tail of the interval sit on a bound, that end is the bound.
        if np.mean(on_edge) > (1 - confidence) / 2:
            flags.append(
                f"{np.mean(on_edge):.0%} of bootstrap fits hit an optimisation bound; the "
                "intervals are cut off there."
            )
    if holdout is not None and holdout.mean_abs_rel_error > max(
        0.01, 2 * holdout.in_sample_mean_abs_rel_error
    ):
        flags.append(
            f"Leave-largest-out: predicting the {holdout.n_held_out} largest runs is off by "
            f"{holdout.mean_abs_rel_error:.1%} on average (in-sample: "
            f"{holdout.in_sample_mean_abs_rel_error:.1%}); extrapolations are less certain than "
            "the intervals suggest."
        )
    return flags


def fit_scaling_law(
    runs: Any,
    *,
    options: FitOptions | None = None,
    on_progress: OnProgress | None = None,
) -> ScalingLawFit:
    """Fit a scaling law to training runs.

    Args:
        runs: A CSV path, a mapping of column -> values, or a ``RunsTable``.
        options: Form, columns, bootstrap, holdout and workers (default: ``FitOptions()``, the
            Chinchilla form with 200 bootstrap resamples).
        on_progress: Told as the stages move on: 'fit' (starts done), 'holdout' (the refit
            without the largest runs) and 'bootstrap' (resamples done).

    Returns:
        The fitted law, its intervals, the checks and the data bookkeeping.
    """
    started = time.perf_counter()
    o = options or FitOptions()
    form, columns, bootstrap, seed = o.form, o.columns, o.bootstrap, o.seed
    confidence, holdout, delta = o.confidence, o.holdout, o.delta
    spec = get_form(form)
    table = load_runs(runs, columns=columns)
    _variables(table, spec)  # a missing column is reported before any reduction
    n_rows = table.n_rows or len(table)
    if o.group_best:
        table = reduce_best_per_point(table)
    table = _data.drop_highest_loss(table, o.drop_highest_loss)
    if len(table) < spec.n_params:
        raise InvalidInput(
            f"The {spec.name} form has {spec.n_params} parameters but {table.source} gives "
            f"{len(table)} point(s) (from {n_rows} rows); expected at least {spec.n_params}. "
            "Add runs or choose a form with fewer parameters (e.g. form 'power-c').",
            field="runs",
        )
    logx = _variables(table, spec)
    log_loss = np.log(table.L)
    problem = Problem(logx, log_loss, float(delta), tuple(spec.bounds(log_loss)))
    grid = spec.grid()
    n_workers = choose_workers(o.workers, grid.shape[0] * len(table))

    ranges = _ranges(table)
    with Runner(n_workers) as runner:
        best = run_multistart(problem, grid, runner, on_progress=on_progress, stage="fit")
        if not math.isfinite(best.fun):
            raise InvalidInput(
                f"Every start of the {spec.name} fit failed on {table.source}; check the losses.",
                field="runs",
            )
        law = _law(spec, best.x, ranges)
        check, skipped = (None, None)
        if holdout > 0:
            check, skipped = _holdout(table, spec, problem, law, runner, holdout, on_progress)
        # Resamples start at the point estimate, like the published bootstrap, and also at any
        # near-equal alternative optimum so a resample can move to the other basin.
        near = [x for x, f in best.alternatives if f <= best.fun * 1.25][:3]
        starts = np.vstack([best.x, *near])
        rng = np.random.default_rng(seed)
        index_sets = rng.integers(0, len(table), size=(bootstrap, len(table)))
        boot_raw, _, boot_ok = bootstrap_fits(
            problem, starts, index_sets, runner, on_progress=on_progress, stage="bootstrap"
        )

    bounds_hit = _at_bound(spec, best.x, problem.bounds)
    samples = (
        spec.public_matrix(boot_raw[boot_ok]) if boot_ok.any() else np.empty((0, spec.n_params))
    )
    tail = (1 - confidence) / 2 * 100
    public = spec.to_public(best.x)
    estimates = []
    for j, name in enumerate(spec.param_names):
        lo = hi = None
        if samples.shape[0] >= 2:
            lo, hi = (float(v) for v in np.percentile(samples[:, j], [tail, 100 - tail]))
        estimates.append(ParameterEstimate(name, public[name], lo, hi, bounds_hit.get(name)))
    flags = _flags(
        spec, best, bounds_hit, len(table), boot_raw, boot_ok, problem.bounds, check, confidence
    )
    if skipped:
        flags.append(skipped)
    points: dict[str, list[float]] = {"row": [float(r) for r in table.rows]}
    for role in ("N", "D", "C", "L"):
        values = table.role(role)
        if values is not None:
            points[role] = values.tolist()
    summary = (
        f"{spec.name}: "
        + " ".join(f"{k}={v:.4g}" for k, v in public.items())
        + f" ({len(table)} points"
        + (f", {bootstrap} bootstrap" if bootstrap else "")
        + ")"
    )
    return ScalingLawFit(
        form=spec.name,
        law=law,
        estimates=tuple(estimates),
        objective=best.fun,
        converged=best.success,
        optimizer_message=best.message,
        source=table.source,
        n_rows=n_rows,
        n_points=len(table),
        n_reduced=table.n_reduced,
        dropped_rows=table.dropped_rows,
        columns=dict(table.columns),
        derived=dict(table.derived),
        n_starts=best.n_starts,
        bootstrap_requested=bootstrap,
        bootstrap_succeeded=int(samples.shape[0]),
        confidence=float(confidence),
        bootstrap_samples=tuple(tuple(float(v) for v in row) for row in samples),
        holdout=check,
        flags=tuple(flags),
        points=points,
        workers=n_workers,
        wall_s=time.perf_counter() - started,
        summary=summary,
        params={
            "runs": table.source,
            "form": spec.name,
            "columns": dict(table.columns),
            "bootstrap": bootstrap,
            "seed": seed,
            "confidence": confidence,
            "group_best": o.group_best,
            "drop_highest_loss": o.drop_highest_loss,
            "holdout": holdout,
            "delta": delta,
        },
    )
