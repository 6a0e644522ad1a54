"""Fixtures for the scaling-law tests: the public data sets, synthetic runs from a known law."""

from __future__ import annotations

import csv
import pathlib

import numpy as np
import pytest

from modelscale.laws import FitOptions, ScalingLawFit, fit_scaling_law

# The repository's parent holds shared/, both in a checkout and in CI.
SCALING_DATA = pathlib.Path(__file__).parents[2] / ".." / "shared" / "data" / "scaling"
EPOCH_CSV = SCALING_DATA / "epoch_chinchilla_svg_extracted_data.csv"
MISFITTING_CSV = SCALING_DATA / "misfitting_scaling_results_last_ckpt_only.csv"

# A law to generate runs from, so a fit can be checked against parameters known exactly.
TRUE_LAW = {"E": 1.7, "A": 400.0, "B": 1500.0, "alpha": 0.34, "beta": 0.30}


def _need(path: pathlib.Path) -> pathlib.Path:
    if not path.exists():
        pytest.skip(f"public scaling data not found at {path.resolve()} (expected ../shared/data)")
    return path


@pytest.fixture(scope="session")
def epoch_csv() -> pathlib.Path:
    """Epoch AI's extraction of the Chinchilla Figure 4 runs."""
    return _need(EPOCH_CSV)


@pytest.fixture(scope="session")
def misfitting_csv() -> pathlib.Path:
    """The (Mis)Fitting runs: several learning rates per (N, D)."""
    return _need(MISFITTING_CSV)


@pytest.fixture(scope="session")
def epoch_fit(epoch_csv: pathlib.Path) -> ScalingLawFit:
    """The published configuration (5 highest-loss rows dropped), with a small bootstrap."""
    return fit_scaling_law(epoch_csv, options=FitOptions(drop_highest_loss=5, bootstrap=40, seed=0))


def synthetic_runs(
    law: dict[str, float] = TRUE_LAW, *, noise: float = 0.0, seed: int = 0
) -> dict[str, np.ndarray]:
    """30 runs (6 sizes x 5 token counts) whose losses follow ``law`` exactly, or with noise."""
    n, d = np.meshgrid(np.geomspace(5e7, 5e9, 6), np.geomspace(1e9, 1e11, 5))
    n, d = n.ravel(), d.ravel()
    loss = law["E"] + law["A"] / n ** law["alpha"] + law["B"] / d ** law["beta"]
    if noise:
        loss = loss * np.exp(np.random.default_rng(seed).normal(0.0, noise, loss.shape))
    return {"params": n, "tokens": d, "loss": loss}


def write_csv(path: pathlib.Path, columns: dict[str, object]) -> pathlib.Path:
    """Write columns (name -> values) as a CSV with a header row."""
    names = list(columns)
    rows = zip(*(list(map(str, np.asarray(columns[k]).tolist())) for k in names), strict=True)
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(names)
        writer.writerows(rows)
    return path


@pytest.fixture(scope="session")
def synthetic_fit() -> ScalingLawFit:
    """A Chinchilla fit to noise-free runs from ``TRUE_LAW``."""
    return fit_scaling_law(synthetic_runs(), options=FitOptions(bootstrap=10, seed=1, workers=2))
