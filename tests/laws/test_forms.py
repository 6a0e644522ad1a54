"""Forms, the Huber objective, and the fitted law as a value (prediction, extrapolation)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import approx_fprime

from modelscale.errors import InvalidInput
from modelscale.laws.forms import ExtrapolationWarning, ScalingLaw, get_form, huber_objective

LAW = ScalingLaw(
    form="chinchilla",
    E=1.8,
    A=480.0,
    alpha=0.35,
    B=2100.0,
    beta=0.37,
    ranges={"N": (1e8, 1e10), "D": (1e9, 1e11), "C": (1e18, 1e22)},
)


def test_layout_of_forms() -> None:
    chin = get_form("chinchilla")
    assert chin.raw_names == ("a", "b", "e", "alpha", "beta")
    assert chin.param_names == ("E", "A", "B", "alpha", "beta")
    assert chin.grid().shape == (4500, 5)
    single = get_form("power-c")
    assert single.variables == ("C",) and single.n_params == 3 and single.grid().shape == (150, 3)
    raw = np.array([np.log(480.0), np.log(2100.0), np.log(1.8), 0.35, 0.37])
    assert chin.to_public(raw) == pytest.approx(
        {"E": 1.8, "A": 480.0, "B": 2100.0, "alpha": 0.35, "beta": 0.37}
    )
    with pytest.raises(InvalidInput, match="'form' parameter"):
        get_form("power-x")


@pytest.mark.parametrize("delta", [1e-3, 10.0])
def test_gradient_matches_finite_differences(delta: float) -> None:
    rng = np.random.default_rng(3)
    logx = np.log(rng.uniform(1e8, 1e10, (2, 25)))
    log_loss = np.log(rng.uniform(2.0, 4.0, 25))
    theta = np.array([6.0, 7.5, 0.6, 0.33, 0.36])
    value, grad = huber_objective(theta, logx, log_loss, delta)
    numeric = approx_fprime(theta, lambda t: huber_objective(t, logx, log_loss, delta)[0], 1e-7)
    np.testing.assert_allclose(grad, numeric, rtol=1e-4, atol=1e-7)
    assert value > 0


def test_objective_is_zero_on_exact_data() -> None:
    n, d = np.array([1e8, 1e9]), np.array([1e10, 1e11])
    loss = LAW.loss(N=n, D=d)
    theta = np.array([np.log(480.0), np.log(2100.0), np.log(1.8), 0.35, 0.37])
    value, grad = huber_objective(theta, np.log(np.vstack([n, d])), np.log(loss), 1e-3)
    assert value == pytest.approx(0.0, abs=1e-25)
    np.testing.assert_allclose(grad, 0.0, atol=1e-12)


def test_loss_prediction() -> None:
    expected = 1.8 + 480.0 / 1e9**0.35 + 2100.0 / 2e10**0.37
    assert LAW.loss(N=1e9, D=2e10) == pytest.approx(expected)
    assert LAW.loss(N=1e9, C=6 * 1e9 * 2e10) == pytest.approx(expected)
    with pytest.raises(InvalidInput, match="needs N and D"):
        LAW.loss(N=1e9)
    with pytest.raises(InvalidInput, match="'N' parameter"):
        LAW.loss(N=-1.0, D=1e9)


def test_far_outside_the_fitted_range_warns() -> None:
    with pytest.warns(ExtrapolationWarning, match="N = 1e\\+12 .* 100x the largest fitted"):
        LAW.loss(N=1e12, D=1e11)
    with pytest.warns(ExtrapolationWarning, match="below the smallest fitted"):
        LAW.loss(N=1e9, D=1e7)
    # Inside, or within the factor, there is no warning (warnings are errors in this suite).
    LAW.loss(N=5e10, D=1e11)
    assert LAW.extrapolation(N=2e11) and not LAW.extrapolation(100, N=2e11)


def test_round_trip_through_dict() -> None:
    assert ScalingLaw.from_dict(LAW.to_dict()) == LAW
    with pytest.raises(InvalidInput, match="malformed"):
        ScalingLaw.from_dict({"form": "chinchilla", "E": 1.0})
