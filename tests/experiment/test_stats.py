"""The always-valid statistics: formulas, validity under peeking by simulation, CUPED, SRM."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from scipy import integrate
from scipy import stats as sps

from modelscale.errors import InvalidInput
from modelscale.experiment import stats
from modelscale.experiment.stats import (
    Moments,
    SequentialSrm,
    SequentialTest,
    always_valid_p,
    bounded_critical_value,
    compare,
    cuped_theta,
    fixed_horizon_test,
    halfwidth,
    mean_sequence,
    srm_bayes_factor,
)

ALPHA = 0.05


def _margin(runs: int, rate: float = ALPHA) -> float:
    """Three binomial standard errors of a share estimated from ``runs`` runs."""
    return 3.0 * math.sqrt(rate * (1.0 - rate) / runs)


# --------------------------------------------------------------------------------------------
# Moments


def test_moments_of_matches_numpy() -> None:
    rng = np.random.default_rng(0)
    y = rng.gamma(2.0, 3.0, 1234)
    x = 0.5 * y + rng.standard_normal(1234)
    m = Moments.of(y, x)
    assert m.n == 1234
    assert m.mean == pytest.approx(np.mean(y), rel=1e-12)
    assert m.variance == pytest.approx(np.var(y, ddof=1), rel=1e-9)
    assert m.x_total == pytest.approx(x.sum())
    assert m.xy_total == pytest.approx(x @ y)
    assert not m.binary
    assert Moments.of(rng.integers(0, 2, 50)).binary


def test_moments_merge_and_add_equal_the_concatenation() -> None:
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal(300), rng.standard_normal(700) + 2.0
    xa, xb = rng.standard_normal(300), rng.standard_normal(700)
    merged = Moments.of(a, xa).merge(Moments.of(b, xb))
    whole = Moments.of(np.concatenate([a, b]), np.concatenate([xa, xb]))
    for name in ("n", "total", "total_sq", "x_total", "x_total_sq", "xy_total"):
        assert getattr(merged, name) == pytest.approx(getattr(whole, name), rel=1e-12)
    one_by_one = Moments()
    for value, cov in zip(a, xa, strict=True):
        one_by_one = one_by_one.add(float(value), float(cov))
    assert one_by_one.variance == pytest.approx(np.var(a, ddof=1), rel=1e-9)
    assert Moments.from_dict(merged.to_dict()) == merged


def test_moments_edge_values() -> None:
    assert math.isnan(Moments().mean) and math.isnan(Moments().variance)
    assert math.isnan(Moments.of([3.0]).variance)
    # A large constant: the sums' rounding must not give a negative variance.
    m = Moments.of(np.full(1000, 1e8 + 0.1))
    assert m.variance >= 0.0
    assert m.to_dict()["variance"] is not None
    assert Moments().to_dict()["mean"] is None


# --------------------------------------------------------------------------------------------
# The formulas


def _growthbook(
    d: float, var_diff: float, n: int, alpha: float, planned: int
) -> tuple[float, float]:
    """The asymptotic CS half-width and mSPRT p-value written out as in GrowthBook's engine."""
    rho = math.sqrt((-2 * math.log(alpha) + math.log(-2 * math.log(alpha) + 1)) / planned)
    s2 = var_diff * n
    hw = math.sqrt(s2) * math.sqrt(
        2 * (n * rho**2 + 1) / (n**2 * rho**2) * math.log(math.sqrt(n * rho**2 + 1) / alpha)
    )
    p = min(
        1.0,
        math.sqrt(n * rho**2 + 1) * math.exp(-(d**2) * n**2 * rho**2 / (2 * s2 * (n * rho**2 + 1))),
    )
    return hw, p


def test_compare_matches_the_closed_form() -> None:
    rng = np.random.default_rng(2)
    c = Moments.of(rng.standard_normal(800))
    t = Moments.of(rng.standard_normal(1200) * 2.0 + 0.3)
    got = compare(c, t, alpha=0.1, planned_units=5000)
    var_diff = c.variance / c.n + t.variance / t.n
    d = t.mean - c.mean
    hw, p = _growthbook(d, var_diff, c.n + t.n, 0.1, 5000)
    assert got.difference == pytest.approx(d, rel=1e-12)
    assert got.ci == pytest.approx((d - hw, d + hw), rel=1e-12)
    assert got.p_value == pytest.approx(p, rel=1e-9)
    assert got.lift == pytest.approx(t.mean / c.mean - 1.0)
    # The mSPRT likelihood ratio against a normal mixture with tau^2 = rho^2 sigma^2, directly.
    rho2 = (-2 * math.log(0.1) + math.log(-2 * math.log(0.1) + 1)) / 5000
    sigma2 = var_diff * (c.n + t.n)  # per-unit variance of the difference
    tau2 = rho2 * sigma2
    v = var_diff
    ratio = math.sqrt(v / (v + tau2)) * math.exp(tau2 * d * d / (2 * v * (v + tau2)))
    assert got.p_value == pytest.approx(min(1.0, 1.0 / ratio), rel=1e-9)


def test_one_sample_helpers_agree_with_each_other() -> None:
    hw = halfwidth(2.0, 4000, alpha=ALPHA, planned_units=10_000)
    ref, _ = _growthbook(0.0, 4.0 / 4000, 4000, ALPHA, 10_000)
    assert hw == pytest.approx(ref, rel=1e-12)
    # At the boundary the p-value is exactly alpha; inside it is above, outside below.
    assert always_valid_p(1.0 + hw, 2.0, 4000, planned_units=10_000, null=1.0) == pytest.approx(
        ALPHA, rel=1e-9
    )
    assert always_valid_p(0.9 * hw, 2.0, 4000, planned_units=10_000) > ALPHA
    assert always_valid_p(1.1 * hw, 2.0, 4000, planned_units=10_000) < ALPHA
    # Wider than the fixed-horizon interval, at every n.
    for n in (10, 1000, 10_000, 1_000_000):
        assert halfwidth(1.0, n, alpha=ALPHA, planned_units=10_000) > 1.96 / math.sqrt(n)


def test_p_value_and_ci_agree_at_every_look() -> None:
    rng = np.random.default_rng(3)
    agree = rejected = 0
    for effect in (0.0, 0.05, 0.1, 0.2):
        y_c = rng.standard_normal(5000)
        y_t = rng.standard_normal(5000) + effect
        for n in range(100, 5001, 100):
            for alpha in (0.01, 0.05, 0.2):
                got = compare(Moments.of(y_c[:n]), Moments.of(y_t[:n]), alpha=alpha)
                outside = not got.ci[0] <= 0.0 <= got.ci[1]
                assert (got.p_value < alpha) == outside, (effect, n, alpha, got)
                assert got.significant == outside
                agree += 1
                rejected += outside
    assert agree == 600 and 50 < rejected < 550  # both outcomes were exercised


def test_vectorised_formulas_are_what_compare_computes() -> None:
    rng = np.random.default_rng(4)
    ns = rng.integers(100, 5000, size=(20, 2))
    moments = [
        (Moments.of(rng.binomial(1, 0.05, a)), Moments.of(rng.binomial(1, 0.07, b))) for a, b in ns
    ]
    arr = {
        key: np.array([[getattr(m, attr) for m in pair] for pair in moments])
        for key, attr in (("n", "n"), ("s", "total"), ("ss", "total_sq"))
    }
    var = stats._binary_variance(arr["n"], arr["s"], arr["ss"])
    mean = arr["s"] / arr["n"]
    rho2 = stats._rho2(ALPHA, 10_000)
    d, _, hw, p = stats._difference(
        mean[:, 0],
        var[:, 0],
        arr["n"][:, 0],
        mean[:, 1],
        var[:, 1],
        arr["n"][:, 1],
        rho2,
        ALPHA,
        np,
    )
    for i, (c, t) in enumerate(moments):
        got = compare(c, t)
        assert got.p_value == pytest.approx(p[i], rel=1e-12)
        assert got.ci == pytest.approx((d[i] - hw[i], d[i] + hw[i]), rel=1e-12)


# --------------------------------------------------------------------------------------------
# Validity under peeking, by simulation


def _gaussian_streams(
    rng: np.random.Generator, runs: int, units: int, every: int, effect: float
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Cumulative per-arm sums at every look of ``runs`` streams, a coin per unit."""
    y = rng.standard_normal((runs, units)) * 3.0 + 10.0
    treated = rng.random((runs, units)) < 0.5
    y += effect * treated
    looks = units // every
    arms = []
    for mask in (~treated, treated):
        shape = (runs, looks, every)
        arms.append(
            {
                "n": np.cumsum(mask.reshape(shape).sum(axis=2), axis=1).astype(np.float64),
                "s": np.cumsum(np.where(mask, y, 0.0).reshape(shape).sum(axis=2), axis=1),
                "ss": np.cumsum(np.where(mask, y * y, 0.0).reshape(shape).sum(axis=2), axis=1),
            }
        )
    return arms[0], arms[1]


def _looks(
    c: dict[str, np.ndarray], t: dict[str, np.ndarray], *, binary: bool, planned: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(difference, half-width, p, ready) at every look, with compare's formulas."""
    variance = stats._binary_variance if binary else stats._sample_variance
    with np.errstate(invalid="ignore", divide="ignore"):
        var_c = variance(c["n"], c["s"], c["ss"])
        var_t = variance(t["n"], t["s"], t["ss"])
        d, _, hw, p = stats._difference(
            c["s"] / c["n"],
            var_c,
            c["n"],
            t["s"] / t["n"],
            var_t,
            t["n"],
            stats._rho2(ALPHA, planned),
            ALPHA,
            np,
        )
    ready = (c["n"] >= 100) & (t["n"] >= 100)
    return d, hw, p, ready


def test_aa_peeking_keeps_the_false_positive_rate_and_the_naive_test_does_not() -> None:
    rng = np.random.default_rng(5)
    runs = 2000
    c, t = _gaussian_streams(rng, runs, 10_000, 50, 0.0)
    _, _, p, ready = _looks(c, t, binary=False, planned=2000)
    sequential = ((p < ALPHA) & ready).any(axis=1).mean()
    assert sequential <= ALPHA + _margin(runs)
    with np.errstate(invalid="ignore", divide="ignore"):
        naive_p = stats._welch_p(
            c["s"] / c["n"],
            stats._sample_variance(c["n"], c["s"], c["ss"]),
            c["n"],
            t["s"] / t["n"],
            stats._sample_variance(t["n"], t["s"], t["ss"]),
            t["n"],
        )
    naive = ((naive_p < ALPHA) & ready).any(axis=1).mean()
    assert naive > 0.15  # about 0.3: peeking at a fixed-horizon test is not safe
    # The same t-test read once at the end is valid.
    assert abs((naive_p[:, -1] < ALPHA).mean() - ALPHA) <= _margin(runs)


def test_aa_bernoulli_at_a_low_rate_with_early_looks() -> None:
    # 2% conversions looked at every 50 units: early looks have a handful of events per arm,
    # where the pseudo-count floor on the variance matters.
    rng = np.random.default_rng(6)
    runs, looks = 4000, 200
    n_t = rng.binomial(50, 0.5, (runs, looks))
    n_c = 50 - n_t
    k_c, k_t = rng.binomial(n_c, 0.02), rng.binomial(n_t, 0.02)
    arms = [
        {"n": np.cumsum(n, axis=1).astype(float), "s": np.cumsum(k, axis=1).astype(float)}
        for n, k in ((n_c, k_c), (n_t, k_t))
    ]
    for arm in arms:
        arm["ss"] = arm["s"]
    _, _, p, ready = _looks(arms[0], arms[1], binary=True, planned=1000)
    assert ((p < ALPHA) & ready).any(axis=1).mean() <= ALPHA + _margin(runs)


def test_ci_covers_a_known_difference_at_every_look() -> None:
    rng = np.random.default_rng(7)
    runs, effect = 2000, 0.4
    c, t = _gaussian_streams(rng, runs, 10_000, 50, effect)
    d, hw, _, ready = _looks(c, t, binary=False, planned=10_000)
    missed = ((np.abs(d - effect) > hw) & ready).any(axis=1).mean()
    assert missed <= ALPHA + _margin(runs)
    # And the effect is found: the interval excludes 0 at the end in most runs.
    assert ((np.abs(d) > hw)[:, -1]).mean() > 0.5


def test_bounded_critical_value_matches_a_simulated_brownian_motion() -> None:
    assert bounded_critical_value(0.05) == pytest.approx(2.2414, abs=1e-3)
    # Both series of the supremum's law agree where they meet, and with a direct simulation.
    tail = stats._sup_abs_bm_tail(np.array([0.999, 1.0, 1.001]))
    assert np.ptp(tail) < 2e-3
    rng = np.random.default_rng(11)
    steps = 2000
    w = np.cumsum(rng.standard_normal((20_000, steps)), axis=1) / math.sqrt(steps)
    top = np.abs(w).max(axis=1)
    for c in (0.6, 1.2, 2.0, 2.4):
        # the discretised path peaks a little lower than the continuous one
        assert 0.0 <= stats._sup_abs_bm_tail(c) - (top >= c).mean() <= 0.02


def test_horizon_test_keeps_its_level_at_every_look_up_to_its_horizon() -> None:
    rng = np.random.default_rng(12)
    runs = 2000
    c, t = _gaussian_streams(rng, runs, 10_000, 50, 0.0)
    d, v, n = _horizon_parts(c, t)
    p = stats._bounded_p(d, v, n, 10_000)
    ready = (c["n"] >= 100) & (t["n"] >= 100)
    assert ((p < ALPHA) & ready).any(axis=1).mean() <= ALPHA + _margin(runs)
    # With an effect it rejects by the horizon about as often as the fixed test at the horizon
    # (a continuous O'Brien-Fleming design loses a few points), where the open sequence does not.
    c, t = _gaussian_streams(rng, runs, 10_000, 50, 0.168)  # sd 3: 80% fixed-horizon power
    d, v, n = _horizon_parts(c, t)
    horizon = ((stats._bounded_p(d, v, n, 10_000) < ALPHA) & ready).any(axis=1).mean()
    _, _, p_open, _ = _looks(c, t, binary=False, planned=10_000)
    opened = ((p_open < ALPHA) & ready).any(axis=1).mean()
    fixed = (np.abs(d[:, -1]) / np.sqrt(v[:, -1]) > 1.96).mean()
    assert horizon >= 0.9 * fixed > opened


def _horizon_parts(
    c: dict[str, np.ndarray], t: dict[str, np.ndarray]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    with np.errstate(invalid="ignore", divide="ignore"):
        var_c = stats._sample_variance(c["n"], c["s"], c["ss"])
        var_t = stats._sample_variance(t["n"], t["s"], t["ss"])
        d = t["s"] / t["n"] - c["s"] / c["n"]
        v = var_c / c["n"] + var_t / t["n"]
    return d, v, c["n"] + t["n"]


def test_horizon_test_interval_and_p_agree_and_it_stops_at_its_horizon() -> None:
    rng = np.random.default_rng(13)
    y_c = rng.standard_normal(6000)
    y_t = rng.standard_normal(6000) + 0.02
    test = SequentialTest(horizon=8000)
    frozen = None
    for n in range(100, 6001, 100):
        c, t = Moments.of(y_c[:n]), Moments.of(y_t[:n])
        now = compare(c, t, horizon=8000)
        assert (now.p_value < ALPHA) == (not now.ci[0] <= 0.0 <= now.ci[1])
        got = test.update(c, t)
        assert got.horizon == 8000 and got.final == (2 * n >= 8000)
        if got.final and frozen is None:
            frozen = got
    assert frozen is not None and frozen.final
    # Looks after the horizon return its last word unchanged.
    later = test.update(Moments.of(y_c), Moments.of(y_t + 5.0))
    assert later is frozen
    # At the horizon its interval is the fixed-horizon one widened by c / 1.96.
    c, t = Moments.of(y_c[:4000]), Moments.of(y_t[:4000])
    at = compare(c, t, horizon=8000)
    se = math.sqrt(c.variance / c.n + t.variance / t.n)
    assert at.ci[1] - at.difference == pytest.approx(bounded_critical_value(0.05) * se)
    with pytest.raises(InvalidInput, match="horizon"):
        compare(c, t, horizon=0)


def test_sequential_test_p_never_rises_and_ci_never_widens() -> None:
    rng = np.random.default_rng(8)
    y_c = rng.standard_normal(20_000)
    y_t = rng.standard_normal(20_000) + 0.03
    test = SequentialTest(planned_units=20_000)
    last_p, last_ci, last_lift = 1.0, (-math.inf, math.inf), (-math.inf, math.inf)
    running_min = 1.0
    for n in range(50, 20_001, 50):
        c, t = Moments.of(y_c[:n]), Moments.of(y_t[:n])
        got = test.update(c, t)
        now = compare(c, t, planned_units=20_000)
        assert got.ready == now.ready == (n >= 100)
        if got.ready:
            running_min = min(running_min, now.p_value)
        assert got.p_value == running_min <= last_p
        assert last_ci[0] <= got.ci[0] <= got.ci[1] <= last_ci[1]
        assert got.lift_ci is not None
        assert last_lift[0] <= got.lift_ci[0] <= got.lift_ci[1] <= last_lift[1]
        assert (got.p_value < ALPHA) == (not got.ci[0] <= 0.0 <= got.ci[1])
        last_p, last_ci, last_lift = got.p_value, got.ci, got.lift_ci
    assert test.looks == 400
    test.reset()
    assert (
        test.update(Moments.of(y_c[:500]), Moments.of(y_t[:500])).p_value
        == compare(Moments.of(y_c[:500]), Moments.of(y_t[:500]), planned_units=20_000).p_value
    )


def test_sequential_test_keeps_a_point_when_intervals_are_disjoint() -> None:
    test = SequentialTest(min_units=2)
    first = test.update(Moments.of([0.0, 1.0] * 50), Moments.of([0.0, 1.0] * 50))
    second = test.update(Moments.of([0.0, 1.0] * 60), Moments.of([10.0, 11.0] * 60))
    assert first.ci[1] < compare(Moments.of([0.0, 1.0] * 60), Moments.of([10.0, 11.0] * 60)).ci[0]
    assert second.ci[0] == second.ci[1] == first.ci[1]
    assert second.p_value < ALPHA


# --------------------------------------------------------------------------------------------
# Small samples, constants, lift


def test_not_ready_below_min_units() -> None:
    got = compare(Moments.of(np.ones(99)), Moments.of(np.zeros(500)))
    assert not got.ready and got.p_value == 1.0 and got.ci == (-math.inf, math.inf)
    assert got.lift == -1.0 and got.lift_ci == (-math.inf, math.inf)
    as_json = got.to_dict()
    assert as_json["ci"] == [None, None] and as_json["significant"] is False
    empty = compare(Moments(), Moments())
    assert empty.lift is None and empty.lift_ci is None and empty.to_dict()["difference"] is None


def test_zero_variance_arms() -> None:
    same = compare(Moments.of(np.full(200, 3.0)), Moments.of(np.full(200, 3.0)))
    assert same.p_value == 1.0 and same.ci == (0.0, 0.0)
    # A 0/1 metric with 0 events against 3: the floor keeps it far from "proven".
    early = compare(Moments.of(np.zeros(100)), Moments.of([1.0] * 3 + [0.0] * 97))
    assert early.p_value > 0.5 and early.ci[0] < 0.0 < early.ci[1]
    assert early.lift is None
    floor_c = (1 / 102) * (101 / 102)  # (0 + 1) / (100 + 2) events per unit
    var_t = max(float(np.var([1.0] * 3 + [0.0] * 97, ddof=1)), (4 / 102) * (98 / 102))
    hw, p = _growthbook(0.03, (floor_c + var_t) / 100, 200, ALPHA, 10_000)
    assert early.ci == pytest.approx((0.03 - hw, 0.03 + hw), rel=1e-12)
    assert early.p_value == pytest.approx(p, rel=1e-12)
    nothing = compare(Moments.of(np.zeros(100)), Moments.of(np.zeros(100)))
    assert nothing.p_value == 1.0 and nothing.ci[0] < 0.0 < nothing.ci[1]
    assert math.isfinite(fixed_horizon_test(Moments.of(np.zeros(100)), Moments.of(np.zeros(100))))


def test_lift_interval_by_the_delta_method() -> None:
    rng = np.random.default_rng(9)
    c = Moments.of(rng.normal(10.0, 2.0, 5000))
    t = Moments.of(rng.normal(10.5, 2.0, 5000))
    got = compare(c, t)
    assert got.lift == pytest.approx(t.mean / c.mean - 1.0)
    assert got.lift is not None and got.lift_ci is not None
    lo, hi = got.lift_ci
    assert lo < got.lift < hi
    # The relative interval is about the absolute one over the control mean.
    assert (hi - lo) * c.mean == pytest.approx(got.ci[1] - got.ci[0], rel=0.05)


def test_fixed_horizon_test_is_welch() -> None:
    rng = np.random.default_rng(10)
    a, b = rng.standard_normal(300), rng.standard_normal(500) * 2 + 0.2
    ref = sps.ttest_ind(b, a, equal_var=False).pvalue
    assert fixed_horizon_test(Moments.of(a), Moments.of(b)) == pytest.approx(ref, rel=1e-9)
    assert fixed_horizon_test(Moments.of([1.0]), Moments.of(b)) == 1.0


def test_mean_sequence() -> None:
    assert all(
        (math.isnan(a) and math.isnan(e)) or a == e
        for a, e in zip(
            mean_sequence(Moments.of(np.ones(10))), (math.nan, -math.inf, math.inf), strict=True
        )
    )
    mean, lo, hi = mean_sequence(Moments.of(np.ones(100)))
    assert mean == 1.0 and hi == 1.0 and 0.8 < lo < 1.0
    rng = np.random.default_rng(11)
    y = rng.normal(5.0, 1.0, 4000)
    mean, lo, hi = mean_sequence(Moments.of(y))
    assert hi - mean == pytest.approx(
        halfwidth(float(np.std(y, ddof=1)), 4000, alpha=0.05, planned_units=10_000)
    )
    assert lo < 5.0 < hi


# --------------------------------------------------------------------------------------------
# CUPED


def test_cuped_reduces_the_variance_by_one_minus_r_squared_without_bias() -> None:
    rng = np.random.default_rng(12)
    runs, units, r, effect = 400, 2000, 0.8, 0.1
    x = rng.standard_normal((runs, 2, units))
    y = r * x + math.sqrt(1 - r * r) * rng.standard_normal((runs, 2, units)) + 5.0
    y[:, 1] += effect
    raw, adjusted, width_ratio, thetas = [], [], [], []
    for i in range(runs):
        c, t = Moments.of(y[i, 0], x[i, 0]), Moments.of(y[i, 1], x[i, 1])
        plain, cup = compare(c, t), compare(c, t, cuped=True)
        raw.append(plain.difference)
        adjusted.append(cup.difference)
        assert cup.difference == pytest.approx(cup.treatment_mean - cup.control_mean)
        width_ratio.append(((cup.ci[1] - cup.ci[0]) / (plain.ci[1] - plain.ci[0])) ** 2)
        thetas.append(cuped_theta(c, t))
    assert np.var(adjusted) / np.var(raw) == pytest.approx(1 - r * r, abs=0.08)
    assert np.mean(width_ratio) == pytest.approx(1 - r * r, abs=0.02)
    se = np.std(adjusted) / math.sqrt(runs)
    assert abs(np.mean(adjusted) - effect) < 4 * se
    assert np.mean(thetas) == pytest.approx(r, abs=0.01)


def test_cuped_theta_is_the_pooled_within_arm_slope() -> None:
    rng = np.random.default_rng(13)
    xc, xt = rng.standard_normal(300), rng.standard_normal(400) + 1.0
    yc = 2.0 * xc + rng.standard_normal(300)
    yt = 2.0 * xt + rng.standard_normal(400) + 7.0  # a big effect must not leak into theta
    xs = np.concatenate([xc - xc.mean(), xt - xt.mean()])
    ys = np.concatenate([yc - yc.mean(), yt - yt.mean()])
    assert cuped_theta(Moments.of(yc, xc), Moments.of(yt, xt)) == pytest.approx(
        (xs @ ys) / (xs @ xs), rel=1e-9
    )
    # Without a covariate CUPED changes nothing.
    plain = compare(Moments.of(yc), Moments.of(yt))
    assert compare(Moments.of(yc), Moments.of(yt), cuped=True) == plain


# --------------------------------------------------------------------------------------------
# Sample-ratio mismatch


def test_srm_bayes_factor_against_a_direct_integral() -> None:
    counts, share, conc = (7, 3), 0.5, 4.0
    prior = sps.beta(conc * share, conc * (1 - share))
    integral, _ = integrate.quad(
        lambda q: q ** counts[0] * (1 - q) ** counts[1] * prior.pdf(q), 0.0, 1.0
    )
    direct = integral / (share ** counts[0] * (1 - share) ** counts[1])
    got = srm_bayes_factor(counts, [1, 1], concentration=conc)
    assert got == pytest.approx(direct, rel=1e-8)


def test_srm_bayes_factor_is_the_product_of_predictive_ratios() -> None:
    # Three arms, units arriving one at a time: the mixture's predictive probability of each
    # unit's arm over the expected share, multiplied up.
    shares = np.array([0.2, 0.3, 0.5])
    conc = 6.0
    arrivals = [0, 2, 2, 1, 0, 2, 1, 1, 2, 0, 0, 2]
    seen = np.zeros(3)
    product = 1.0
    for i, arm in enumerate(arrivals):
        product *= (conc * shares[arm] + seen[arm]) / (conc + i) / shares[arm]
        seen[arm] += 1
    got = srm_bayes_factor(seen.tolist(), [20, 30, 50], concentration=conc)
    assert got == pytest.approx(product, rel=1e-10)
    named = srm_bayes_factor(
        {"b": seen[1], "a": seen[0], "c": seen[2]}, {"a": 2, "b": 3, "c": 5}, concentration=conc
    )
    assert named == pytest.approx(product, rel=1e-10)


def _srm_runs(rng: np.random.Generator, runs: int, looks: int, share_t: float) -> list[int]:
    """Units at which each run is first flagged (0: never), a look every 100 units."""
    firsts = []
    for _ in range(runs):
        test = SequentialSrm({"control": 50, "treatment": 50})
        n_t = np.cumsum(rng.binomial(100, share_t, looks))
        first = 0
        for i, k in enumerate(n_t):
            if test.update({"control": 100 * (i + 1) - int(k), "treatment": int(k)}).flagged:
                first = 100 * (i + 1)
                break
        firsts.append(first)
    return firsts


def test_srm_flags_a_50_45_split_and_rarely_a_correct_one() -> None:
    rng = np.random.default_rng(14)
    skewed = _srm_runs(rng, 20, 300, 45 / 95)
    assert all(f > 0 for f in skewed)
    assert np.median(skewed) < 15_000
    correct = _srm_runs(rng, 300, 150, 0.5)
    assert np.mean([f > 0 for f in correct]) <= 0.01


def test_sequential_srm_result_and_counts_checks() -> None:
    test = SequentialSrm([1, 1, 2])
    got = test.update([10, 10, 20])
    assert got.expected == (0.25, 0.25, 0.5) and got.counts == (10, 10, 20)
    assert got.p_value == 1.0 and not got.flagged and got.alpha == stats.DEFAULT_SRM_ALPHA
    assert got.to_dict()["counts"] == [10, 10, 20]
    big = test.update([10, 10, 100_000])
    assert big.flagged and big.p_value < 1e-300
    assert big.to_dict()["bayes_factor"] is None  # infinite
    with pytest.raises(InvalidInput, match="cumulative") as err:
        test.update([5, 10, 100_000])
    assert err.value.field == "counts"
    test.reset()
    assert not test.update([5, 5, 10]).flagged


# --------------------------------------------------------------------------------------------
# Input checks

_C, _T = Moments.of(np.ones(10)), Moments.of(np.zeros(10))

BAD: list[tuple[str, Callable[[], Any]]] = [
    ("alpha", lambda: compare(_C, _T, alpha=1.5)),
    ("alpha", lambda: compare(_C, _T, alpha=0)),
    ("alpha", lambda: SequentialTest(alpha=True)),
    ("planned_units", lambda: compare(_C, _T, planned_units=0)),
    ("planned_units", lambda: compare(_C, _T, planned_units=10.5)),
    ("min_units", lambda: compare(_C, _T, min_units=1)),
    ("control", lambda: compare([1, 2], _T)),
    ("treatment", lambda: compare(_C, None)),
    ("n", lambda: Moments(n=-1)),
    ("total_sq", lambda: Moments(n=2, total=1.0, total_sq=-1.0)),
    ("total", lambda: Moments(n=2, total=math.nan)),
    ("values", lambda: Moments.of([[1.0, 2.0]])),
    ("values", lambda: Moments.of([1.0, math.inf])),
    ("values", lambda: Moments.of(["a"])),
    ("covariate", lambda: Moments.of([1.0, 2.0], [1.0])),
    ("other", lambda: _C.merge(3)),
    ("sd", lambda: halfwidth(-1.0, 10, alpha=0.05, planned_units=10)),
    ("n", lambda: halfwidth(1.0, 0, alpha=0.05, planned_units=10)),
    ("estimate", lambda: always_valid_p(math.nan, 1.0, 10, planned_units=10)),
    ("null", lambda: always_valid_p(0.0, 1.0, 10, planned_units=10, null=math.inf)),
    ("m", lambda: mean_sequence(_C.to_dict())),
    ("expected", lambda: SequentialSrm([1.0])),
    ("expected", lambda: SequentialSrm([1.0, 0.0])),
    ("expected", lambda: SequentialSrm([1.0, -1.0])),
    ("expected", lambda: SequentialSrm("ab")),
    ("alpha", lambda: SequentialSrm([1, 1], alpha=2.0)),
    ("concentration", lambda: SequentialSrm([1, 1], concentration=0)),
    ("counts", lambda: SequentialSrm([1, 1]).update([1, 2, 3])),
    ("counts", lambda: SequentialSrm([1, 1]).update([1, -2])),
    ("counts", lambda: SequentialSrm([1, 1]).update([1.5, 2])),
    ("counts", lambda: SequentialSrm({"a": 1, "b": 1}).update({"a": 1, "c": 2})),
    ("counts", lambda: srm_bayes_factor({"a": 1, "b": 2}, [1, 1])),
    ("concentration", lambda: srm_bayes_factor([1, 2], [1, 1], concentration=-1.0)),
]


@pytest.mark.parametrize(("field", "call"), BAD, ids=[f"{f}-{i}" for i, (f, _) in enumerate(BAD)])
def test_bad_input_names_the_field(field: str, call: Callable[[], Any]) -> None:
    with pytest.raises(InvalidInput) as err:
        call()
    assert err.value.field == field
    message = str(err.value)
    assert message.startswith(f"{field} must be") and ". Got " in message


def test_bad_alpha_message() -> None:
    with pytest.raises(InvalidInput, match=r"^alpha must be in \(0, 1\)\. Got 1\.5\.$"):
        compare(_C, _T, alpha=1.5)
