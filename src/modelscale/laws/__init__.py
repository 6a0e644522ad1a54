"""Scaling laws: fit L(N, D) (or a single-variable law) to training runs; compute-optimal N and D.

    fit = fit_scaling_law("runs.csv", options=FitOptions(form="chinchilla", bootstrap=200))
    table = compute_optimal(fit, flops=[1e21, 5.76e23])

See ``docs/laws.md`` for the method and ``modelscale laws --help`` for the command line.
"""

from __future__ import annotations

from modelscale.laws.data import RunsTable, load_runs, parse_columns, reduce_best_per_point
from modelscale.laws.fit import fit_scaling_law
from modelscale.laws.forms import FORMS, ExtrapolationWarning, ScalingLaw
from modelscale.laws.optimal import (
    Allocation,
    ComputeOptimal,
    budget_for_loss,
    budget_for_params,
    compute_optimal,
    load_fitted_law,
    optimal_allocation,
    optimal_loss,
)
from modelscale.laws.options import FitOptions
from modelscale.laws.plot import plot_scaling_law
from modelscale.laws.results import HoldoutCheck, ParameterEstimate, ScalingLawFit

__all__ = [
    "FORMS",
    "Allocation",
    "ComputeOptimal",
    "ExtrapolationWarning",
    "FitOptions",
    "HoldoutCheck",
    "ParameterEstimate",
    "RunsTable",
    "ScalingLaw",
    "ScalingLawFit",
    "budget_for_loss",
    "budget_for_params",
    "compute_optimal",
    "fit_scaling_law",
    "load_fitted_law",
    "load_runs",
    "optimal_allocation",
    "optimal_loss",
    "parse_columns",
    "plot_scaling_law",
    "reduce_best_per_point",
]
