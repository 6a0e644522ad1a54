"""Planned send times: exact constant spacing, seeded Poisson, steps through rates."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from modelscale.errors import InvalidInput
from modelscale.loadgen.schedule import Pattern, parse_pattern, schedule


def test_constant_spacing_is_exact() -> None:
    t, steps = schedule(Pattern("constant"), rate=50, duration_s=2.0)
    assert len(t) == 100 and t[0] == 0.0
    np.testing.assert_allclose(np.diff(t), 0.02)
    assert (steps == 0).all()


def test_poisson_is_seeded_and_has_exponential_gaps() -> None:
    a, _ = schedule(Pattern("poisson"), rate=500, duration_s=20, seed=7)
    b, _ = schedule(Pattern("poisson"), rate=500, duration_s=20, seed=7)
    c, _ = schedule(Pattern("poisson"), rate=500, duration_s=20, seed=8)
    np.testing.assert_array_equal(a, b)
    assert len(a) != len(c) or not np.array_equal(a, c)
    assert abs(len(a) - 10_000) < 5 * np.sqrt(10_000)
    assert (np.diff(a) > 0).all() and a[-1] < 20
    ks = stats.kstest(np.diff(a), "expon", args=(0, 1 / 500))
    assert ks.pvalue > 1e-3


def test_steps_split_the_duration_and_follow_each_rate() -> None:
    pattern = parse_pattern("steps:100,400,200")
    t, steps = schedule(pattern, rate=None, duration_s=30, seed=1)
    assert list(np.unique(steps)) == [0, 1, 2]
    for k, rate in enumerate((100, 400, 200)):
        sel = t[steps == k]
        assert sel.min() >= k * 10 and sel.max() < (k + 1) * 10
        assert abs(len(sel) - rate * 10) < 5 * np.sqrt(rate * 10)
    assert (np.diff(t) > 0).all()


@pytest.mark.parametrize(
    "text", ["", "linear", "steps:", "steps:10,-5", "steps:a,b", "steps:0", "steps:inf"]
)
def test_bad_patterns_name_the_option(text: str) -> None:
    with pytest.raises(InvalidInput, match="pattern") as info:
        parse_pattern(text)
    assert info.value.field == "pattern"


def test_rate_and_duration_are_checked() -> None:
    with pytest.raises(InvalidInput, match="rate"):
        schedule(Pattern("constant"), rate=None, duration_s=1)
    with pytest.raises(InvalidInput, match="rate"):
        schedule(Pattern("poisson"), rate=0, duration_s=1)
    with pytest.raises(InvalidInput, match="duration"):
        schedule(Pattern("constant"), rate=10, duration_s=0)
