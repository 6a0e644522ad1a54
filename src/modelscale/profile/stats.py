"""Small statistics for latency samples: percentiles and a distribution-free CI of the median."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import stats

__all__ = ["median_ci", "percentiles"]


def percentiles(samples: Sequence[float], qs: Sequence[float]) -> list[float]:
    """Percentiles (0-100) of ``samples``, linear interpolation."""
    arr = np.asarray(samples, dtype=float)
    return [float(v) for v in np.percentile(arr, qs)]


def median_ci(samples: Sequence[float], confidence: float = 0.95) -> tuple[float, float]:
    """Confidence interval of the median from order statistics (binomial, no normality assumed).

    The interval [x_(j), x_(k)] covers the true median with probability >= ``confidence`` where j, k
    are the binomial(n, 1/2) quantiles. Latency distributions are skewed, so this beats a mean +- t*s.
    """
    arr = np.sort(np.asarray(samples, dtype=float))
    n = arr.size
    if n == 0:
        return math.nan, math.nan
    if n < 6:  # too few samples for any order-statistic interval to reach 95%
        return float(arr[0]), float(arr[-1])
    # r (1-based) is the largest rank with P(B < r) < alpha/2 for B ~ Binomial(n, 1/2); the interval
    # [x_(r), x_(n-r+1)] then covers the median with probability >= confidence.
    r = int(stats.binom.ppf((1.0 - confidence) / 2, n, 0.5))
    j = max(r - 1, 0)
    k = min(n - r, n - 1) if r > 0 else n - 1
    return float(arr[j]), float(arr[k])
