"""Plots: PNG and self-contained HTML for fits and budget tables; bad paths."""

from __future__ import annotations

import pathlib

import pytest

from modelscale.errors import InvalidInput
from modelscale.laws import (
    FitOptions,
    ScalingLawFit,
    compute_optimal,
    fit_scaling_law,
    plot_scaling_law,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_fit_png_and_html(synthetic_fit: ScalingLawFit, tmp_path: pathlib.Path) -> None:
    optimal = compute_optimal(synthetic_fit, flops=[1e20], warn=False)
    png = plot_scaling_law(synthetic_fit, tmp_path / "fit.png", optimal=optimal)
    assert png.read_bytes().startswith(PNG_MAGIC)
    page = plot_scaling_law(synthetic_fit, tmp_path / "fit.html", optimal=optimal).read_text()
    assert "data:image/png;base64," in page and "<table>" in page
    assert "alpha" in page and "Budgets" in page
    assert "http://" not in page and "https://" not in page  # nothing fetched from a CDN


def test_budget_plot_from_a_stored_fit(
    synthetic_fit: ScalingLawFit, tmp_path: pathlib.Path
) -> None:
    stored = synthetic_fit.results_dict()
    optimal = compute_optimal(stored, flops=[1e19, 1e21], warn=False)
    page = plot_scaling_law(optimal, tmp_path / "opt.html", fit=stored).read_text()
    assert "Compute-optimal allocation" in page and "data:image/png;base64," in page
    assert plot_scaling_law(optimal, tmp_path / "opt.svg").read_text().lstrip().startswith("<?xml")


def test_single_variable_plot(tmp_path: pathlib.Path) -> None:
    fit = fit_scaling_law(
        {"flops": [1e17, 1e18, 1e19, 1e20, 1e21], "loss": [4.0, 3.4, 3.0, 2.75, 2.6]},
        options=FitOptions(form="power-c", bootstrap=5, holdout=0.0),
    )
    assert plot_scaling_law(fit, tmp_path / "c.png").read_bytes().startswith(PNG_MAGIC)


def test_bad_plot_paths(synthetic_fit: ScalingLawFit, tmp_path: pathlib.Path) -> None:
    with pytest.raises(InvalidInput, match="must end in one of"):
        plot_scaling_law(synthetic_fit, tmp_path / "fit.jpg2")
    with pytest.raises(InvalidInput, match="does not exist"):
        plot_scaling_law(synthetic_fit, tmp_path / "missing" / "fit.png")
