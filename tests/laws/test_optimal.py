"""Compute-optimal allocation: closed form vs numeric, inverse round trips, intervals, warnings."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.optimize import minimize_scalar

from modelscale.errors import InvalidInput
from modelscale.laws import (
    ExtrapolationWarning,
    ScalingLaw,
    ScalingLawFit,
    budget_for_loss,
    budget_for_params,
    compute_optimal,
    optimal_allocation,
    optimal_loss,
)

# The published Epoch grid fit, and the ranges of the Chinchilla runs it was fitted on.
EPOCH = ScalingLaw(
    form="chinchilla",
    E=1.8172,
    A=477.8,
    alpha=0.3473,
    B=2143.9,
    beta=0.3672,
    ranges={"N": (5.7e7, 1.6e10), "D": (8e8, 2e11), "C": (1.4e18, 1.3e22)},
)
GOPHER_BUDGET = 5.76e23


def _published_n_opt(c: float) -> float:
    law = EPOCH
    assert law.B is not None and law.beta is not None
    g = (law.alpha * law.A / (law.beta * law.B)) ** (1 / (law.alpha + law.beta))
    return g * (c / 6) ** (law.beta / (law.alpha + law.beta))


@pytest.mark.parametrize("flops", [1e19, 1e21, 1e22])
def test_closed_form_matches_numeric_minimisation(flops: float) -> None:
    def loss_at(log_n: float) -> float:
        n = math.exp(log_n)
        return EPOCH.loss(warn=False, N=n, D=flops / (6 * n))

    numeric = minimize_scalar(
        loss_at, bounds=(math.log(1e5), math.log(1e14)), method="bounded", options={"xatol": 1e-10}
    )
    n_opt, d_opt = optimal_allocation(EPOCH, flops)
    assert n_opt == pytest.approx(math.exp(numeric.x), rel=1e-4)
    assert 6 * n_opt * d_opt == pytest.approx(flops)
    assert optimal_loss(EPOCH, flops) == pytest.approx(numeric.fun, rel=1e-9)


def test_inverse_budgets_round_trip() -> None:
    for target in (2.3, 2.0, 1.95):
        c = budget_for_loss(EPOCH, target)
        assert optimal_loss(EPOCH, c) == pytest.approx(target, rel=1e-10)
    for n in (1e9, 7e10):
        c = budget_for_params(EPOCH, n)
        assert optimal_allocation(EPOCH, c)[0] == pytest.approx(n, rel=1e-10)
    with pytest.raises(InvalidInput, match="unreachable"):
        budget_for_loss(EPOCH, 1.8)


def test_published_fit_implies_about_70b_at_gopher_budget() -> None:
    n_opt, _ = optimal_allocation(EPOCH, GOPHER_BUDGET)
    assert n_opt == pytest.approx(_published_n_opt(GOPHER_BUDGET))
    assert 6.0e10 < n_opt < 8.0e10


@pytest.mark.slow
def test_epoch_fit_n_opt_within_15_percent(epoch_fit: ScalingLawFit) -> None:
    with pytest.warns(ExtrapolationWarning, match="44x the largest fitted"):
        result = compute_optimal(epoch_fit, flops=GOPHER_BUDGET)
    row = result.allocations[0]
    assert row.n_opt is not None and row.n_opt_ci is not None
    assert row.n_opt == pytest.approx(_published_n_opt(GOPHER_BUDGET), rel=0.15)
    assert row.n_opt_ci[0] < row.n_opt < row.n_opt_ci[1]
    assert result.warnings and result.n_bootstrap == epoch_fit.bootstrap_succeeded


def test_budget_table_and_inverse_rows() -> None:
    result = compute_optimal(EPOCH, flops=[1e20, 1e21], params=[1e9], target_loss=[2.3])
    given = [a.given for a in result.allocations]
    assert given == ["flops", "flops", "params", "loss"]
    by_params, by_loss = result.allocations[2], result.allocations[3]
    assert by_params.n_opt == pytest.approx(1e9) and by_params.n_opt_ci is None
    assert by_loss.loss == 2.3 and optimal_loss(EPOCH, by_loss.flops) == pytest.approx(2.3)
    assert result.warnings == () and result.allocations[0].n_opt_ci is None  # no bootstrap
    assert result.analysis == "optimal" and result.kind == "laws"


def test_far_budget_warns_and_is_recorded() -> None:
    with pytest.warns(ExtrapolationWarning):
        result = compute_optimal(EPOCH, flops=1e25)
    assert any(w.startswith("C = 1e+25 (FLOPs) is 769x") for w in result.allocations[0].warnings)
    assert any(w.startswith("At C = 1e+25: N = ") for w in result.allocations[0].warnings)
    quiet = compute_optimal(EPOCH, flops=1e25, warn=False)
    assert quiet.warnings == result.warnings


def test_single_variable_laws() -> None:
    power_c = ScalingLaw(form="power-c", E=2.0, A=5e3, alpha=0.2, ranges={"C": (1e17, 1e21)})
    result = compute_optimal(power_c, flops=1e20, target_loss=2.5)
    assert result.allocations[0].n_opt is None
    assert result.allocations[0].loss == pytest.approx(2.0 + 5e3 / 1e20**0.2)
    assert power_c.loss(C=result.allocations[1].flops) == pytest.approx(2.5)
    with pytest.raises(InvalidInput, match="chinchilla form"):
        compute_optimal(power_c, params=1e9)
    power_n = ScalingLaw(form="power-n", E=2.0, A=5e3, alpha=0.2)
    with pytest.raises(InvalidInput, match="chinchilla form"):
        compute_optimal(power_n, flops=1e20)


def test_bad_requests() -> None:
    with pytest.raises(InvalidInput, match="at least one of"):
        compute_optimal(EPOCH)
    with pytest.raises(InvalidInput, match="'flops' parameter"):
        compute_optimal(EPOCH, flops=[-1.0])
    with pytest.raises(InvalidInput, match="not a scaling-law fit"):
        compute_optimal({"analysis": "optimal"}, flops=1e20)


def test_intervals_from_bootstrap_rows(synthetic_fit: ScalingLawFit) -> None:
    result = compute_optimal(synthetic_fit, flops=[1e19], target_loss=[2.6])
    row, inverse = result.allocations
    assert row.n_opt_ci is not None and row.loss_ci is not None and inverse.flops_ci is not None
    assert row.n_opt_ci[0] <= row.n_opt * (1 + 1e-9) and row.n_opt_ci[1] >= row.n_opt * (1 - 1e-9)
    assert np.isfinite(inverse.flops_ci).all()
