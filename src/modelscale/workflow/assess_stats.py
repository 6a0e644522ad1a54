"""The statistics of an assessment: an effect with a confidence interval, and a verdict on it.

Three effects are compared with their baseline:

- a latency or throughput *ratio* (now / baseline) from repeated measurements (blocks of timed
  runs, load-test windows). The unit of replication is the block, not the single run: runs within
  a block share the machine's state, so treating thousands of runs as independent would give an
  interval far narrower than the run-to-run spread. Measured side by side (``ratio_paired``), the
  interval is a one-sample t interval of the per-pair log ratios; against stored blocks
  (``ratio_unpaired``), a Welch t interval of the difference of mean logs. Either way the ratio
  is of geometric means.
- an *accuracy difference* on the same eval rows (``accuracy_change``): a paired bootstrap of
  the per-row hits (``modelscale.compress.bootstrap_change``), with McNemar's exact test on the
  rows whose outcome changed as its p-value.

``judge`` turns an interval into a verdict: a regression only when the whole interval lies past
the smallest change worth acting on, so neither noise (a wide interval) nor a real but tiny
change (a narrow interval near 1) fails a gate.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

import numpy as np
from scipy import stats

from modelscale.compress import METRICS, bootstrap_change

__all__ = [
    "Interval",
    "Verdict",
    "accuracy_change",
    "judge",
    "ratio_paired",
    "ratio_unpaired",
]


class Verdict(StrEnum):
    """What a check concluded.

    Attributes:
        OK: No change past the threshold: the interval rules out a regression that size.
        REGRESSION: Worse, with the whole interval past the threshold.
        IMPROVED: Better, with the whole interval past the threshold the other way.
        INCONCLUSIVE: The interval straddles the threshold, or the measurement was disturbed.
        BASELINE: Nothing to compare with: this measurement is the baseline.
    """

    OK = "ok"
    REGRESSION = "regression"
    IMPROVED = "improved"
    INCONCLUSIVE = "inconclusive"
    BASELINE = "baseline"


@dataclass(frozen=True)
class Interval:
    """An effect and its confidence interval.

    Attributes:
        estimate: The effect (a ratio, or a difference).
        low: Lower end of the interval.
        high: Upper end of the interval.
        p_value: Two-sided p-value of "no change" (None where none was computed).
        method: How the interval was made, in words.
    """

    estimate: float
    low: float
    high: float
    p_value: float | None
    method: str


def _logs(values: Sequence[float], what: str) -> np.ndarray:
    arr = np.asarray(values, dtype=float)
    if arr.size == 0 or not np.all(np.isfinite(arr)) or np.any(arr <= 0):
        raise ValueError(f"{what} must be finite numbers > 0; got {list(values)!r}")
    return np.log(arr)


def _interval(mean: float, ci: tuple[float, float], p: float, method: str) -> Interval:
    low, high = ci
    if not (math.isfinite(low) and math.isfinite(high)):  # no spread at all: the point itself
        low = high = mean
    return Interval(
        math.exp(mean),
        math.exp(low),
        math.exp(high),
        None if not math.isfinite(p) else float(p),
        method,
    )


def ratio_paired(
    baseline: Sequence[float], now: Sequence[float], *, confidence: float = 0.95
) -> Interval:
    """Ratio now / baseline of values measured in pairs (side by side, alternating).

    The t interval of the mean log ratio, back-transformed: a ratio of geometric means.
    """
    d = _logs(now, "now") - _logs(baseline, "baseline")
    if d.size < 2 or float(np.ptp(d)) == 0.0:
        mean = float(d.mean())
        return Interval(math.exp(mean), math.exp(mean), math.exp(mean), None, "paired t")
    res = stats.ttest_1samp(d, 0.0)
    ci = res.confidence_interval(confidence)
    return _interval(float(d.mean()), (float(ci.low), float(ci.high)), res.pvalue, "paired t")


def ratio_unpaired(
    baseline: Sequence[float], now: Sequence[float], *, confidence: float = 0.95
) -> Interval:
    """Ratio now / baseline of values measured at different times (now against stored ones).

    Welch's t interval of the difference of mean logs, back-transformed.
    """
    a, b = _logs(now, "now"), _logs(baseline, "baseline")
    mean = float(a.mean() - b.mean())
    if a.size < 2 or b.size < 2 or (np.ptp(a) == 0 and np.ptp(b) == 0):
        return Interval(math.exp(mean), math.exp(mean), math.exp(mean), None, "Welch t")
    res = stats.ttest_ind(a, b, equal_var=False)
    ci = res.confidence_interval(confidence)
    return _interval(mean, (float(ci.low), float(ci.high)), res.pvalue, "Welch t")


def _one_hot(hits: np.ndarray) -> np.ndarray:
    return np.stack([1.0 - hits, hits], axis=1)


def accuracy_change(
    baseline: Sequence[bool], now: Sequence[bool], *, confidence: float = 0.95, seed: int = 0
) -> Interval:
    """Accuracy now minus at the baseline, on the same rows in the same order.

    Args:
        baseline: Per row, whether the baseline's prediction was right.
        now: Per row, whether the prediction is right now.
        confidence: Level of the paired bootstrap interval.
        seed: Seed of the bootstrap.
    """
    b = np.asarray(baseline, dtype=float)
    n = np.asarray(now, dtype=float)
    if b.shape != n.shape:
        raise ValueError(f"rows differ: {b.shape} at the baseline, {n.shape} now")
    # Accuracy of [1 - hit, hit] against label 1 is the mean hit: the metric's own bootstrap.
    target = np.ones(len(b), dtype=np.int64)
    est, low, high = bootstrap_change(
        METRICS["accuracy"],
        (_one_hot(b), target),
        (_one_hot(n), target),
        resamples=2000,
        confidence=confidence,
        seed=seed,
    )
    lost = int(((b == 1) & (n == 0)).sum())
    gained = int(((b == 0) & (n == 1)).sum())
    p = stats.binomtest(lost, lost + gained, 0.5).pvalue if lost + gained else 1.0
    return Interval(est, low, high, float(p), "paired bootstrap; McNemar exact p")


def judge(
    interval: Interval, *, worse_past: float, better_past: float, higher_is_worse: bool
) -> Verdict:
    """The verdict on ``interval`` given the smallest changes that count.

    ``worse_past`` is where "worse" begins, ``better_past`` where "better" does, on the effect's
    own scale (a latency ratio, higher is worse: worse past 1.10, better past 1 / 1.10; an
    accuracy difference, higher is better: worse past -0.005, better past 0.005).
    """
    lo, hi = interval.low, interval.high
    if higher_is_worse:
        if lo > worse_past:
            return Verdict.REGRESSION
        if hi < better_past:
            return Verdict.IMPROVED
        return Verdict.OK if hi <= worse_past else Verdict.INCONCLUSIVE
    if hi < worse_past:
        return Verdict.REGRESSION
    if lo > better_past:
        return Verdict.IMPROVED
    return Verdict.OK if lo >= worse_past else Verdict.INCONCLUSIVE
