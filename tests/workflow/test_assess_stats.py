"""The statistics of assess: intervals that cover the planted effect, verdicts in both directions."""

from __future__ import annotations

import numpy as np
import pytest

from modelscale.workflow.assess_stats import (
    Interval,
    Verdict,
    accuracy_change,
    judge,
    ratio_paired,
    ratio_unpaired,
)


def _noisy(level: float, n: int, seed: int) -> list[float]:
    return list(level * np.exp(np.random.default_rng(seed).normal(0, 0.03, n)))


def test_a_paired_ratio_recovers_a_planted_slowdown() -> None:
    base = _noisy(1.0, 8, 0)
    now = [b * 1.5 for b in _noisy(1.0, 8, 1)]
    iv = ratio_paired(base, now)
    assert iv.low < 1.5 < iv.high and iv.low > 1.3
    assert iv.p_value is not None and iv.p_value < 1e-6


def test_an_unpaired_ratio_of_the_same_level_covers_one() -> None:
    iv = ratio_unpaired(_noisy(2.0, 8, 2), _noisy(2.0, 8, 3))
    assert iv.low < 1.0 < iv.high
    assert iv.high < 1.10  # tight enough to call it ok at the default threshold


def test_identical_measurements_give_a_zero_width_interval() -> None:
    assert ratio_paired([1.0, 2.0], [1.0, 2.0]) == Interval(1.0, 1.0, 1.0, None, "paired t")
    iv = ratio_unpaired([3.0, 3.0], [3.0, 3.0])
    assert (iv.estimate, iv.low, iv.high) == (1.0, 1.0, 1.0)


def test_ratios_refuse_non_positive_values() -> None:
    with pytest.raises(ValueError, match="must be finite numbers > 0"):
        ratio_paired([1.0, 0.0], [1.0, 1.0])


def test_accuracy_change_is_paired_on_rows() -> None:
    base = [True] * 90 + [False] * 10
    now = [False] * 20 + [True] * 70 + [False] * 10  # 20 rows lost
    iv = accuracy_change(base, now)
    assert iv.estimate == pytest.approx(-0.20)
    assert iv.low < -0.20 < iv.high < -0.10
    assert iv.p_value is not None and iv.p_value < 1e-5  # McNemar: 20 lost, 0 gained
    same = accuracy_change(base, base)
    assert (same.estimate, same.low, same.high, same.p_value) == (0.0, 0.0, 0.0, 1.0)


@pytest.mark.parametrize(
    ("low", "high", "expected"),
    [
        (1.20, 1.40, Verdict.REGRESSION),
        (1.05, 1.20, Verdict.INCONCLUSIVE),
        (0.95, 1.08, Verdict.OK),
        (0.70, 0.85, Verdict.IMPROVED),
    ],
)
def test_judge_a_latency_ratio(low: float, high: float, expected: Verdict) -> None:
    iv = Interval((low + high) / 2, low, high, None, "t")
    assert judge(iv, worse_past=1.10, better_past=1 / 1.10, higher_is_worse=True) == expected


@pytest.mark.parametrize(
    ("low", "high", "expected"),
    [
        (-0.05, -0.02, Verdict.REGRESSION),
        (-0.02, 0.01, Verdict.INCONCLUSIVE),
        (-0.004, 0.004, Verdict.OK),
        (0.01, 0.03, Verdict.IMPROVED),
    ],
)
def test_judge_an_accuracy_difference(low: float, high: float, expected: Verdict) -> None:
    iv = Interval((low + high) / 2, low, high, None, "bootstrap")
    assert judge(iv, worse_past=-0.005, better_past=0.005, higher_is_worse=False) == expected
