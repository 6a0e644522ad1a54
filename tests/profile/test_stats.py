from __future__ import annotations

import numpy as np
import pytest

from modelscale.profile.stats import median_ci, percentiles


def test_median_ci_covers_at_least_95_percent() -> None:
    rng = np.random.default_rng(42)
    trials, covered = 3000, 0
    for _ in range(trials):
        sample = rng.lognormal(0.0, 0.8, size=30)  # skewed, like latencies; true median 1.0
        lo, hi = median_ci(sample)
        covered += lo <= 1.0 <= hi
    assert covered / trials >= 0.94  # nominal 95%, Monte-Carlo error ~0.4%


def test_median_ci_narrows_with_more_samples() -> None:
    rng = np.random.default_rng(0)
    data = rng.normal(10, 1, size=2000)
    lo_s, hi_s = median_ci(data[:50])
    lo_l, hi_l = median_ci(data)
    assert hi_l - lo_l < (hi_s - lo_s) / 3
    assert lo_l <= np.median(data) <= hi_l


def test_small_samples() -> None:
    assert all(np.isnan(median_ci([])))
    assert median_ci([3.0, 1.0, 2.0]) == (1.0, 3.0)


def test_percentiles() -> None:
    assert percentiles(list(range(101)), [50, 90, 99]) == pytest.approx([50, 90, 99])
