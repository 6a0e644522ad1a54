"""Fitting: exact recovery of a known law, the Epoch acceptance figures, reduction, flags."""

from __future__ import annotations

import json
import pathlib

import numpy as np
import pytest

from modelscale.errors import InvalidInput
from modelscale.laws import FitOptions, ScalingLawFit, fit_scaling_law
from modelscale.laws import optimize as optimize_module
from modelscale.progress import ProgressEvent

from .conftest import TRUE_LAW, synthetic_runs

# Besiroglu et al. (2024), Chinchilla replication: grid fit and 95% bootstrap intervals.
PUBLISHED_GRID = {"E": 1.8172, "A": 477.8, "B": 2143.9, "alpha": 0.3473, "beta": 0.3672}
PUBLISHED_CI = {
    "E": (1.769, 1.871),
    "A": (285.2, 743.6),
    "B": (1042.0, 5810.0),
    "alpha": (0.317, 0.373),
    "beta": (0.331, 0.415),
}


def _power_c_runs(noise: float = 0.02, n: int = 30) -> dict[str, np.ndarray]:
    c = np.geomspace(1e17, 1e21, n)
    loss = (2.0 + 5.0e3 / c**0.2) * np.exp(np.random.default_rng(7).normal(0, noise, n))
    return {"flops": c, "loss": loss}


def test_recovers_a_known_law(synthetic_fit: ScalingLawFit) -> None:
    got = {e.name: e.value for e in synthetic_fit.estimates}
    assert got == pytest.approx(TRUE_LAW, rel=1e-5)
    assert synthetic_fit.converged and synthetic_fit.objective < 1e-12
    assert synthetic_fit.n_points == 30 and synthetic_fit.flags == ()
    for est in synthetic_fit.estimates:
        assert est.ci_low is not None and est.ci_high is not None
        assert est.ci_low <= est.value * (1 + 1e-6) and est.ci_high >= est.value * (1 - 1e-6)


def test_leave_largest_out_on_exact_data(synthetic_fit: ScalingLawFit) -> None:
    check = synthetic_fit.holdout
    assert check is not None and check.by == "C" and check.n_held_out == 3
    c = np.sort(synthetic_runs()["params"] * synthetic_runs()["tokens"] * 6)
    assert check.threshold == pytest.approx(c[-3])
    assert check.mean_abs_rel_error < 1e-6
    assert all(p["C"] >= check.threshold for p in check.points)
    assert check.law.ranges["C"][1] < check.threshold


@pytest.mark.slow
def test_epoch_acceptance(epoch_fit: ScalingLawFit) -> None:
    est = {e.name: e for e in epoch_fit.estimates}
    for name in ("E", "alpha", "beta"):
        assert abs(est[name].value - PUBLISHED_GRID[name]) <= 0.01, name
    for name in ("A", "B"):
        lo, hi = PUBLISHED_CI[name]
        assert lo < est[name].value < hi, name
    for name, (lo, hi) in PUBLISHED_CI.items():
        ours = est[name]
        assert ours.ci_low is not None and ours.ci_high is not None
        assert ours.ci_low <= hi and ours.ci_high >= lo, f"{name}: no overlap with ({lo}, {hi})"
    assert epoch_fit.n_rows == 245 and epoch_fit.n_points == 240
    assert epoch_fit.dropped_rows == (1, 2, 3, 4, 5)  # the five highest losses lead the file
    assert epoch_fit.converged and epoch_fit.n_starts == 4500
    assert epoch_fit.holdout is not None and epoch_fit.holdout.n_held_out == 24


@pytest.mark.slow
def test_misfitting_reduced_to_best_per_point(misfitting_csv: pathlib.Path) -> None:
    fit = fit_scaling_law(misfitting_csv, options=FitOptions(bootstrap=0, holdout=0.0))
    assert (fit.n_rows, fit.n_points, fit.n_reduced) == (261, 81, 180)
    assert fit.converged and min(fit.points["L"]) > fit.law.E
    everything = fit_scaling_law(
        misfitting_csv,
        options=FitOptions(form="power-c", group_best=False, bootstrap=0, holdout=0.0),
    )
    assert everything.n_points == 261 and everything.n_reduced == 0


def test_bootstrap_is_seeded() -> None:
    runs = _power_c_runs()
    first = fit_scaling_law(
        runs, options=FitOptions(form="power-c", bootstrap=20, seed=3, holdout=0.0)
    )
    again = fit_scaling_law(
        runs, options=FitOptions(form="power-c", bootstrap=20, seed=3, holdout=0.0)
    )
    other = fit_scaling_law(
        runs, options=FitOptions(form="power-c", bootstrap=20, seed=4, holdout=0.0)
    )
    assert first.bootstrap_samples == again.bootstrap_samples
    assert first.bootstrap_samples != other.bootstrap_samples
    assert first.bootstrap_succeeded == 20


def test_noisy_intervals_cover_the_truth() -> None:
    fit = fit_scaling_law(
        _power_c_runs(noise=0.01), options=FitOptions(form="power-c", bootstrap=60, seed=0)
    )
    truth = {"E": 2.0, "A": 5.0e3, "alpha": 0.2}
    for est in fit.estimates:
        assert est.ci_low is not None and est.ci_high is not None
        assert est.ci_low < truth[est.name] < est.ci_high, est


def test_fewer_points_than_parameters() -> None:
    runs = {k: v[:4] for k, v in synthetic_runs().items()}
    with pytest.raises(InvalidInput, match=r"5 parameters but .* gives 4 point"):
        fit_scaling_law(runs, options=FitOptions(bootstrap=0))


def test_form_needs_its_variables() -> None:
    with pytest.raises(InvalidInput, match="needs D \\(tokens\\)"):
        fit_scaling_law(
            {"params": [1e8, 2e8, 3e8, 4e8], "loss": [3, 2.9, 2.8, 2.7]},
            options=FitOptions(form="power-d"),
        )


def test_parameter_on_its_bound_is_flagged() -> None:
    # Losses that do not fall with compute: no power law, so A or alpha goes to its bound.
    fit = fit_scaling_law(
        {"flops": np.geomspace(1e17, 1e20, 12), "loss": np.full(12, 3.0)},
        options=FitOptions(form="power-c", bootstrap=0, holdout=0.0),
    )
    assert any(e.at_bound for e in fit.estimates)
    assert any("optimisation bound" in f for f in fit.flags)


def test_non_convergence_is_flagged(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(optimize_module.TIGHT_OPTIONS, "maxiter", 1)
    fit = fit_scaling_law(
        _power_c_runs(), options=FitOptions(form="power-c", bootstrap=0, holdout=0.0)
    )
    assert not fit.converged
    assert any("did not converge" in f for f in fit.flags)


def test_holdout_skipped_with_too_few_points() -> None:
    runs = _power_c_runs(n=4)
    fit = fit_scaling_law(runs, options=FitOptions(form="power-c", bootstrap=0, holdout=0.5))
    assert fit.holdout is None
    assert any("check skipped" in f for f in fit.flags)


@pytest.mark.parametrize(
    ("option", "value"),
    [("bootstrap", -1), ("seed", -2), ("confidence", 1.5), ("holdout", 1.0), ("delta", 0.0)],
)
def test_options_are_validated(option: str, value: float) -> None:
    with pytest.raises(InvalidInput, match=f"'{option}' parameter"):
        fit_scaling_law(_power_c_runs(), options=FitOptions(form="power-c", **{option: value}))


def test_progress_and_json() -> None:
    seen: dict[str, tuple[int, int | None]] = {}

    def on_progress(event: ProgressEvent) -> None:
        seen[event.stage] = (event.done, event.total)

    fit = fit_scaling_law(
        _power_c_runs(), options=FitOptions(form="power-c", bootstrap=10), on_progress=on_progress
    )
    assert seen == {"fit": (150, 150), "holdout": (150, 150), "bootstrap": (10, 10)}
    data = json.loads(json.dumps(fit.to_dict(), allow_nan=False))
    assert data["analysis"] == "fit" and data["law"]["form"] == "power-c"
    assert fit.params["bootstrap"] == 10 and "bootstrap" not in fit.results_dict().get("params", {})
