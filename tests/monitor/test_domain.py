"""The domain-classifier test: a change in how features move together that per-feature tests
cannot see."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from modelscale.monitor.domain import MIN_DOMAIN_ROWS, domain_test
from modelscale.monitor.drift import compare_profiles
from modelscale.monitor.sketch import NUMERIC, Profile


def gaussian(seed: int, n: int, rho: float = 0.0) -> np.ndarray:
    """Rows of a 4-d standard Gaussian whose features 0 and 1 have correlation ``rho``."""
    cov = np.eye(4)
    cov[0, 1] = cov[1, 0] = rho
    return np.random.default_rng(seed).multivariate_normal(np.zeros(4), cov, size=n)


def hanley_mcneil(auc: float, n_neg: int, n_pos: int, level: float) -> tuple[float, float]:
    """The textbook interval: Q1 goes with the positives (window rows), Q2 with the negatives."""
    q1, q2 = auc / (2 - auc), 2 * auc**2 / (1 + auc)
    se = math.sqrt(
        (auc * (1 - auc) + (n_pos - 1) * (q1 - auc**2) + (n_neg - 1) * (q2 - auc**2))
        / (n_neg * n_pos)
    )
    z = stats.norm.ppf(0.5 + level / 2)
    return max(0.0, auc - z * se), min(1.0, auc + z * se)


def test_under_50_rows_a_side_there_is_no_test() -> None:
    assert MIN_DOMAIN_ROWS == 50
    big, small = gaussian(0, 500), gaussian(1, 49)
    assert domain_test(big, small) is None
    assert domain_test(small, big) is None
    result = domain_test(gaussian(2, 50), gaussian(3, 50))
    assert result is not None and result["rows"] == [50, 50]


def test_two_samples_of_one_gaussian_do_not_drift() -> None:
    result = domain_test(gaussian(4, 1_000), gaussian(5, 800))
    assert result is not None
    assert result["lo"] <= 0.5 <= result["hi"]
    assert result["drift"] is False
    assert result["rows"] == [1_000, 800] and result["level"] == 0.95
    assert (result["lo"], result["hi"]) == pytest.approx(
        hanley_mcneil(result["auc"], 1_000, 800, 0.95), abs=1e-12
    )
    # Seeded: the same answer again.
    assert domain_test(gaussian(4, 1_000), gaussian(5, 800)) == result


def test_a_flipped_correlation_drifts_jointly_but_not_per_feature() -> None:
    ref, cur = gaussian(6, 1_000, rho=0.9), gaussian(7, 600, rho=-0.9)
    # The same marginals: the per-feature tests see nothing.
    kinds = {f"f{i}": NUMERIC for i in range(4)}
    profiles = []
    for rows in (ref, cur):
        p = Profile.empty(kinds)
        p.update({f"f{i}": rows[:, i] for i in range(4)}, {}, rows=rows.shape[0])
        profiles.append(p)
    w = compare_profiles(profiles[0], profiles[1])
    assert w.tested and w.drifted == [] and w.verdict == "ok"
    # The classifier tells them apart.
    result = domain_test(ref, cur)
    assert result is not None
    assert result["drift"] is True and result["auc"] > 0.6 and result["p_value"] < 0.01
    assert result["lo"] > 0.5
    assert (result["lo"], result["hi"]) == pytest.approx(
        hanley_mcneil(result["auc"], 1_000, 600, 0.95), abs=1e-12
    )
    # A stricter min_auc than the classifier reaches turns the verdict off.
    assert domain_test(ref, cur, min_auc=0.999)["drift"] is False  # type: ignore[index]


def test_missing_values_do_not_break_the_classifier() -> None:
    ref, cur = gaussian(8, 300), gaussian(9, 300)
    ref[::7, 2] = np.nan
    cur[::5, 3] = np.inf
    result = domain_test(ref, cur)
    assert result is not None and 0.0 <= result["auc"] <= 1.0


def test_rows_repeated_in_the_window_are_not_read_as_drift() -> None:
    # Live traffic repeats inputs: 60 rows of the reference's distribution, each sent 10 times.
    # With a repeated row in both a training and a test fold the classifier would recognise it
    # (an out-of-fold AUC of 0.99 here), not generalise.
    rng = np.random.default_rng(0)
    ref = rng.normal(size=(1_000, 4))
    cur = np.repeat(rng.normal(size=(60, 4)), 10, axis=0)
    result = domain_test(ref, cur)
    assert result is not None
    assert result["drift"] is False and result["auc"] < 0.6


def test_a_window_of_one_repeated_row_is_not_classified() -> None:
    # Synthetic load sends one request over and over: a single distinct row cannot fill folds
    # that keep identical rows together.
    ref = np.random.default_rng(0).standard_normal((500, 4))
    same = np.repeat(ref[:1], 500, axis=0)
    assert domain_test(ref, same) is None
