"""The multivariate drift test: can a classifier tell the window's rows from the reference's?

Per-feature tests miss a change in how features move together (two features that swap their
correlation keep both marginals). A domain classifier trained on the reservoir samples of the
reference (label 0) and the window (label 1) sees the joint distribution: with no drift its
cross-validated AUC is 0.5. Scored out of fold (5 folds), with identical rows kept in one fold
(live traffic repeats inputs: a repeated row in both a training and a test fold would be
recognised, not generalised, and read as drift), the AUC's interval is DeLong's normal
approximation (Hanley and McNeil's variance), and the p-value is the one-sided Mann-Whitney test
of AUC > 0.5 on the out-of-fold scores.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy import stats as sps
from threadpoolctl import threadpool_limits

__all__ = ["MIN_DOMAIN_ROWS", "DomainTester", "domain_test"]

MIN_DOMAIN_ROWS = 50
"""Rows each side needs before the classifier is trained."""


def _auc_ci(auc: float, n0: int, n1: int, level: float) -> tuple[float, float]:
    q1 = auc / (2 - auc)
    q2 = 2 * auc * auc / (1 + auc)
    var = (auc * (1 - auc) + (n1 - 1) * (q1 - auc * auc) + (n0 - 1) * (q2 - auc * auc)) / (n0 * n1)
    z = float(sps.norm.ppf(0.5 + level / 2))
    half = z * math.sqrt(max(var, 0.0))
    return max(0.0, auc - half), min(1.0, auc + half)


def domain_test(
    reference: np.ndarray,
    window: np.ndarray,
    *,
    min_auc: float = 0.6,
    alpha: float = 0.01,
    level: float = 0.95,
    seed: int = 0,
) -> dict[str, Any] | None:
    """AUC (with its interval and p-value) of a classifier telling ``window`` rows from
    ``reference`` rows; None when either side has fewer than ``MIN_DOMAIN_ROWS`` rows.

    Drift when the p-value is under ``alpha`` and the AUC is at least ``min_auc``.
    """
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.model_selection import StratifiedGroupKFold, cross_val_predict

    n0, n1 = reference.shape[0], window.shape[0]
    if n0 < MIN_DOMAIN_ROWS or n1 < MIN_DOMAIN_ROWS:
        return None
    # Folds keep identical rows together, so each side needs enough distinct rows to fill them
    # (a window of one request repeated has one; its per-feature tests say all there is).
    distinct = [
        np.unique(np.nan_to_num(a, nan=np.inf), axis=0).shape[0] for a in (reference, window)
    ]
    if min(distinct) < MIN_DOMAIN_ROWS:
        return None
    x = np.concatenate([reference, window]).astype(np.float32)
    x[~np.isfinite(x)] = np.nan  # the classifier handles missing values itself
    y = np.concatenate([np.zeros(n0, np.int8), np.ones(n1, np.int8)])
    model = HistGradientBoostingClassifier(max_iter=40, max_leaf_nodes=15, random_state=seed)
    # Identical rows (on either side) share a group, so they never straddle folds.
    _, groups = np.unique(np.nan_to_num(x, nan=np.inf), axis=0, return_inverse=True)
    folds = StratifiedGroupKFold(n_splits=5, shuffle=True, random_state=seed)
    # One OpenMP thread: the test runs beside the replicas (in the server's monitor thread), and
    # gradient boosting's default of a thread per core spins against them; measured here on a
    # busy 2-core machine, 29 s with the default against 0.3 s with one thread.
    with threadpool_limits(1):
        scores = cross_val_predict(
            model, x, y, cv=folds, groups=groups.reshape(-1), method="predict_proba"
        )[:, 1]
    u = sps.mannwhitneyu(scores[y == 1], scores[y == 0], alternative="greater")
    auc = float(u.statistic / (n0 * n1))
    lo, hi = _auc_ci(auc, n0, n1, level)
    p = float(u.pvalue)
    return {
        "test": "domain classifier (gradient boosting, 5-fold out-of-fold AUC)",
        "auc": auc,
        "lo": lo,
        "hi": hi,
        "level": level,
        "p_value": p,
        "rows": [n0, n1],
        "drift": bool(p < alpha and auc >= min_auc),
        "min_auc": min_auc,
    }


class DomainTester:
    """Runs ``domain_test`` in a worker process of its own (started on first use).

    Gradient boosting's tree growing is Python that holds the GIL for 0.2-0.3 s; in the server's
    process that stalls the event loop, and every request arriving then waits (measured on
    digits at 1,500 req/s: one stall a minute put a 10-second p99 over 25 ms). In a worker
    process it costs the front nothing but a pickle of two 1,000-row samples.
    """

    def __init__(self, *, in_process: bool = False) -> None:
        self.in_process = in_process
        self._pool: Any = None

    def __call__(
        self, reference: np.ndarray, window: np.ndarray, **options: Any
    ) -> dict[str, Any] | None:
        """``domain_test(reference, window, **options)``, in the worker process."""
        if self.in_process:
            return domain_test(reference, window, **options)
        if self._pool is None:
            import concurrent.futures
            import multiprocessing

            self._pool = concurrent.futures.ProcessPoolExecutor(
                max_workers=1, mp_context=multiprocessing.get_context("spawn")
            )
        result: dict[str, Any] | None = self._pool.submit(
            domain_test, reference, window, **options
        ).result()
        return result

    def close(self) -> None:
        """Stop the worker process."""
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
