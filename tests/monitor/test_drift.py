"""Drift statistics from sketches against scipy on the raw rows; windows judged against a
baseline; data-quality issues; the options."""

from __future__ import annotations

import math

import numpy as np
import orjson
import pytest
from scipy import stats
from scipy.spatial.distance import jensenshannon

from modelscale.errors import InvalidInput
from modelscale.monitor.drift import (
    DriftOptions,
    benjamini_hochberg,
    categorical_drift,
    compare_profiles,
    numeric_drift,
)
from modelscale.monitor.sketch import (
    CATEGORICAL,
    NUMERIC,
    CategoricalSketch,
    NumericSketch,
    Profile,
)


def numeric(values: np.ndarray) -> NumericSketch:
    s = NumericSketch()
    s.update(values)
    return s


def categorical(values: np.ndarray, rows: int | None = None) -> CategoricalSketch:
    s = CategoricalSketch()
    s.update(values, rows=rows)
    return s


def psi_direct(ref: np.ndarray, cur: np.ndarray) -> float:
    """PSI over ten bins [d_i, d_i+1) at the raw reference's deciles (d_i: the value with
    floor(n i / 10) values below it), shares floored at 1e-4."""
    ref = np.sort(ref.astype(np.float32).astype(np.float64))
    cur = np.sort(cur.astype(np.float32).astype(np.float64))
    edges = np.unique(ref[[ref.size * i // 10 for i in range(1, 10)]])

    def shares(x: np.ndarray) -> np.ndarray:
        below = np.searchsorted(x, edges, side="left") / x.size
        return np.maximum(np.diff(np.concatenate([[0.0], below, [1.0]])), 1e-4)

    r, c = shares(ref), shares(cur)
    return float(np.sum((c - r) * np.log(c / r)))


# --- numeric statistics against scipy ------------------------------------------------------

CASES = [
    # (reference rows, window rows, shift, scale): the first two fit in exact sketches.
    (900, 700, 0.3, 1.0),
    (500, 300, 0.0, 1.0),
    (100_000, 100_000, 0.2, 1.3),
    (100_000, 50_000, 0.0, 1.0),
    (200_000, 100_000, 1.0, 0.5),
]


@pytest.mark.parametrize(("n_ref", "n_cur", "shift", "scale"), CASES)
def test_numeric_statistics_agree_with_scipy_on_the_raw_rows(
    n_ref: int, n_cur: int, shift: float, scale: float
) -> None:
    rng = np.random.default_rng(n_ref + n_cur)
    ref = rng.normal(size=n_ref).astype(np.float32)
    cur = rng.normal(shift, scale, n_cur).astype(np.float32)
    f = numeric_drift("x", numeric(ref), numeric(cur))
    exact = n_ref <= 1_000 and n_cur <= 1_000
    assert (f.kind, f.test, f.rows) == ("numeric", "ks", n_cur)
    ks = stats.ks_2samp(ref, cur)
    assert abs(f.statistic - ks.statistic) <= f.error_bound
    if exact:
        assert f.error_bound == pytest.approx(0.001)
        assert f.statistic == pytest.approx(ks.statistic, abs=1e-12)
    else:
        assert 0.001 < f.error_bound < 0.01
    wn = stats.wasserstein_distance(ref, cur) / np.std(ref.astype(np.float64))
    assert f.effect == pytest.approx(wn, abs=1e-3 if exact else 0.01)
    psi = psi_direct(ref, cur)
    if exact:
        assert f.psi == pytest.approx(psi, rel=1e-9, abs=1e-12)
    else:
        # A PSI of about 3 (shift 1 sd, half the spread) lives in tail bins that hold a few
        # hundred reference rows, where the KLL sketch's rank error (~0.3% of all rows, random
        # per build) is a large share of the bin: 200 builds gave relative errors up to 7.7%.
        assert f.psi == pytest.approx(psi, rel=0.05 if psi < 1 else 0.15, abs=0.005)
    assert f.detail["reference_mean"] == pytest.approx(float(ref.astype(np.float64).mean()))
    assert f.detail["mean"] == pytest.approx(float(cur.astype(np.float64).mean()))
    assert 0.0 <= f.p_value <= 1.0
    if shift >= 0.2:
        assert f.p_value < 1e-6
    else:
        assert f.p_value > 0.01


def test_numeric_drift_needs_two_values_a_side() -> None:
    f = numeric_drift("x", numeric(np.arange(100.0)), numeric(np.array([1.0, np.nan])))
    assert math.isnan(f.statistic) and math.isnan(f.p_value) and f.rows == 1


# --- categorical statistics against scipy -------------------------------------------------


def test_chi_square_and_jensen_shannon_agree_with_scipy_on_the_raw_counts() -> None:
    rng = np.random.default_rng(3)
    ref = rng.choice(6, 4_000, p=[0.3, 0.25, 0.2, 0.15, 0.07, 0.03])
    cur = rng.choice(7, 900, p=[0.25, 0.25, 0.2, 0.15, 0.05, 0.05, 0.05])  # a new category
    f = categorical_drift("c", categorical(ref), categorical(cur))
    r = np.bincount(ref, minlength=7)
    c = np.bincount(cur, minlength=7)
    chi2, p, _, _ = stats.chi2_contingency(np.vstack([r, c]), correction=False)
    assert f.statistic == pytest.approx(chi2, rel=1e-9)
    assert f.p_value == pytest.approx(p, rel=1e-6)
    pr, pc = r / r.sum(), c / c.sum()
    assert f.effect == pytest.approx(float(jensenshannon(pr, pc)), rel=1e-9)
    # And from the definition: sqrt of the mean KL divergence to the mixture (natural log).
    m = (pr + pc) / 2

    def kl(a: np.ndarray) -> float:
        return float(np.sum(np.where(a > 0, a * np.log(np.where(a > 0, a, 1) / m), 0.0)))

    assert f.effect == pytest.approx(math.sqrt((kl(pr) + kl(pc)) / 2), rel=1e-9)
    assert (f.rows, f.error_bound) == (900, 0.0)
    assert f.detail["top"]["0"] == pytest.approx(c[0] / 900)


def test_several_items_per_row_are_tested_on_the_row_count() -> None:
    rng = np.random.default_rng(4)
    k = 8  # items per row
    ref = rng.choice(5, 600 * k, p=[0.4, 0.3, 0.15, 0.1, 0.05])
    cur = rng.choice(5, 400 * k, p=[0.35, 0.3, 0.2, 0.1, 0.05])
    f = categorical_drift("tok", categorical(ref, rows=600), categorical(cur, rows=400))
    raw = np.vstack([np.bincount(ref, minlength=5), np.bincount(cur, minlength=5)])
    chi2_items = stats.chi2_contingency(raw, correction=False)[0]
    # Chi-square scales with the counts: the row-based one is the item-based one over k.
    assert f.statistic == pytest.approx(chi2_items / k, rel=1e-9)
    assert f.p_value == pytest.approx(stats.chi2.sf(chi2_items / k, 4), rel=1e-6)
    assert f.rows == 400


def test_one_category_on_both_sides_does_not_drift() -> None:
    f = categorical_drift("c", categorical(np.zeros(50)), categorical(np.zeros(70)))
    assert (f.statistic, f.p_value, f.effect) == (0.0, 1.0, 0.0)


# --- Benjamini-Hochberg -------------------------------------------------------------------


def bh_textbook(p: list[float]) -> list[float]:
    """Adjusted p_(i) = min over j >= i of m p_(j) / j, capped at 1; NaN left out of m."""
    idx = [i for i, v in enumerate(p) if not math.isnan(v)]
    m = len(idx)
    order = sorted(idx, key=lambda i: p[i])
    out = [math.nan] * len(p)
    for rank, i in enumerate(order, start=1):
        out[i] = min(1.0, min(p[order[j - 1]] * m / j for j in range(rank, m + 1)))
    return out


@pytest.mark.parametrize("seed", range(6))
def test_benjamini_hochberg_matches_the_textbook_procedure(seed: int) -> None:
    rng = np.random.default_rng(seed)
    m = [1, 2, 7, 30, 100, 250][seed]
    p = np.concatenate([rng.uniform(0, 1, m), rng.uniform(0, 0.001, m // 3)])
    p[rng.random(p.size) < 0.2] = np.nan
    if p.size > 3:
        p[1] = p[2]  # ties
    adj = benjamini_hochberg(p)
    np.testing.assert_allclose(adj, bh_textbook(p.tolist()), rtol=1e-12)
    ok = np.isfinite(p)
    np.testing.assert_array_equal(np.isnan(adj), ~ok)
    # Monotone in p, never below p, never above 1.
    q, a = p[ok], adj[ok]
    order = np.argsort(q, kind="stable")
    assert (np.diff(a[order]) >= 0).all()
    assert (a >= q).all() and (a <= 1).all()


def test_benjamini_hochberg_of_nothing_finite() -> None:
    assert benjamini_hochberg(np.array([])).shape == (0,)
    assert np.isnan(benjamini_hochberg(np.array([np.nan, np.nan]))).all()
    np.testing.assert_allclose(benjamini_hochberg(np.array([0.01, 0.04, 0.03])), [0.03, 0.04, 0.04])


# --- windows against a baseline -----------------------------------------------------------

KINDS = {**{f"x{i}": NUMERIC for i in range(5)}, "cat": CATEGORICAL}
SHARES = np.array([0.5, 0.2, 0.2, 0.1])


def profile(
    seed: int,
    n: int,
    shift: dict[str, float] | None = None,
    shares: np.ndarray = SHARES,
) -> Profile:
    rng = np.random.default_rng(seed)
    p = Profile.empty(KINDS)
    num = {f"x{i}": rng.normal(size=n) for i in range(5)}
    for name, s in (shift or {}).items():
        num[name] = num[name] + s
    p.update(num, {"cat": (rng.choice(4, n, p=shares), None)}, rows=n, requests=n)
    return p


@pytest.fixture(scope="module")
def baseline() -> Profile:
    return profile(0, 20_000)


def test_windows_from_the_reference_distribution_rarely_drift(baseline: Profile) -> None:
    flagged = 0
    for seed in range(300):
        w = compare_profiles(baseline, profile(1_000 + seed, 500))
        assert w.tested and len(w.features) == 6
        flagged += bool(w.drifted)
    assert flagged <= 6, flagged  # <= 2% of 300


def test_a_one_sd_shift_drifts_on_that_feature_only(baseline: Profile) -> None:
    w = compare_profiles(baseline, profile(5, 500, {"x2": 1.0}))
    assert w.drifted == ["x2"] and w.verdict == "drift"
    f = next(f for f in w.features if f.feature == "x2")
    assert f.effect == pytest.approx(1.0, abs=0.15) and f.p_adjusted < 1e-10
    assert f.detail["mean"] - f.detail["reference_mean"] == pytest.approx(1.0, abs=0.15)
    orjson.dumps(w.to_dict())  # JSON-ready


def test_a_change_of_category_shares_drifts(baseline: Profile) -> None:
    w = compare_profiles(baseline, profile(6, 500, shares=np.array([0.2, 0.5, 0.2, 0.1])))
    assert w.drifted == ["cat"]
    f = next(f for f in w.features if f.feature == "cat")
    assert f.kind == "categorical" and f.effect >= 0.1 and f.p_adjusted < 1e-10


def test_min_effect_separates_a_significant_shift_from_one_that_matters() -> None:
    ref = profile(7, 100_000)
    # 0.07 sd over 50,000 rows: far beyond noise, under the default effect of 0.1.
    small = profile(8, 50_000, {"x1": 0.07})
    w = compare_profiles(ref, small)
    f = next(f for f in w.features if f.feature == "x1")
    assert f.p_adjusted < 1e-6 and f.effect < 0.1
    assert w.drifted == []
    assert compare_profiles(ref, small, DriftOptions(min_effect=0)).drifted == ["x1"]
    # 0.2 sd is an effect of 0.2 (normalised Wasserstein of a shift is the shift in sds):
    # over 20,000 rows it drifts under the default options too.
    w = compare_profiles(ref, profile(9, 20_000, {"x1": 0.2}))
    assert w.drifted == ["x1"]
    assert next(f for f in w.features if f.feature == "x1").effect == pytest.approx(0.2, abs=0.02)


def test_a_window_under_min_rows_is_not_tested(baseline: Profile) -> None:
    w = compare_profiles(baseline, profile(10, 99, {"x0": 3.0}))
    assert not w.tested and w.verdict == "too few rows" and w.drifted == []
    assert len(w.features) == 6 and all(math.isnan(f.p_adjusted) for f in w.features)
    w = compare_profiles(baseline, profile(10, 40, {"x0": 3.0}), DriftOptions(min_rows=30))
    assert w.tested and w.drifted == ["x0"]


def test_a_window_like_the_reference_is_ok(baseline: Profile) -> None:
    w = compare_profiles(baseline, profile(11, 2_000))
    assert (w.verdict, w.quality, w.drifted) == ("ok", (), [])


# --- data quality --------------------------------------------------------------------------


def window_with(seed: int, n: int, **columns: np.ndarray) -> Profile:
    p = profile(seed, 0)
    rng = np.random.default_rng(seed)
    num = {f"x{i}": rng.normal(size=n) for i in range(5)}
    num.update(columns)
    p.update(num, {"cat": (rng.choice(4, n, p=SHARES), None)}, rows=n, requests=n)
    return p


def test_missing_values_are_a_quality_issue(baseline: Profile) -> None:
    x = np.random.default_rng(12).normal(size=1_000)
    x[::10] = np.nan
    w = compare_profiles(baseline, window_with(12, 1_000, x3=x))
    assert [(q.feature, q.issue) for q in w.quality] == [("x3", "missing")]
    assert w.quality[0].value == pytest.approx(0.1) and w.quality[0].reference == 0.0
    assert "10.0%" in w.quality[0].message
    assert w.verdict == "quality"
    # Infinite values count as missing too.
    x = np.random.default_rng(13).normal(size=1_000)
    x[:30] = np.inf
    w = compare_profiles(baseline, window_with(13, 1_000, x3=x))
    assert [(q.feature, q.issue) for q in w.quality] == [("x3", "missing")]


def test_values_beyond_the_reference_range_are_a_quality_issue(baseline: Profile) -> None:
    ref = baseline.features["x4"]
    assert isinstance(ref, NumericSketch)
    x = np.random.default_rng(14).normal(size=1_000)
    x[:200] = ref.max + 1.0 + np.arange(200)
    opt = DriftOptions(max_out_of_range=0.01)
    w = compare_profiles(baseline, window_with(14, 1_000, x4=x), opt)
    issues = [q for q in w.quality if q.issue == "out_of_range"]
    assert [q.feature for q in issues] == ["x4"]
    assert issues[0].value == pytest.approx(0.2)
    assert "outside the reference's range" in issues[0].message
    # Under the default options too (it is 20% of the values).
    w = compare_profiles(baseline, window_with(14, 1_000, x4=x))
    assert "out_of_range" in [q.issue for q in w.quality]


def test_a_feature_that_became_constant_is_a_quality_issue(baseline: Profile) -> None:
    w = compare_profiles(baseline, window_with(15, 1_000, x0=np.full(1_000, 0.25)))
    issues = [(q.feature, q.issue) for q in w.quality]
    assert issues == [("x0", "constant")]
    assert w.quality[0].value == pytest.approx(0.25)


def test_rejected_requests_are_a_quality_issue(baseline: Profile) -> None:
    w = window_with(16, 1_000)
    w.rejected = 50  # of 1,050 requests
    d = compare_profiles(baseline, w)
    assert [(q.feature, q.issue) for q in d.quality] == [("(requests)", "rejected")]
    assert d.quality[0].value == pytest.approx(50 / 1_050)
    assert d.verdict == "quality"
    w.rejected = 5
    assert compare_profiles(baseline, w).quality == ()


# --- options and mismatched profiles ------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("alpha", 0.0),
        ("alpha", 1.0),
        ("alpha", -1.0),
        ("alpha", math.nan),
        ("min_rows", 1),
        ("min_effect", -1.0),
        ("max_missing_increase", 1.5),
        ("max_out_of_range", -0.1),
        ("max_rejected", 2.0),
    ],
)
def test_drift_options_refuse_values_out_of_range(field: str, value: float) -> None:
    with pytest.raises(InvalidInput, match=f"'{field}' of drift must be") as exc:
        DriftOptions(**{field: value})
    assert exc.value.field == field


def test_drift_options_accept_their_edges() -> None:
    DriftOptions(alpha=0.5, min_effect=0.0, min_rows=2, max_rejected=1.0, max_out_of_range=0.0)


def test_drift_options_messages_state_the_range_they_enforce() -> None:
    with pytest.raises(InvalidInput, match=r"\(0, 1\)"):
        DriftOptions(alpha=1.0)
    with pytest.raises(InvalidInput, match=r"\[0, inf"):
        DriftOptions(min_effect=-1.0)


def test_a_window_lacking_a_baseline_feature_is_refused(baseline: Profile) -> None:
    w = Profile.empty({k: v for k, v in KINDS.items() if k != "x3"})
    with pytest.raises(InvalidInput, match="lacks features of the baseline: x3") as exc:
        compare_profiles(baseline, w)
    assert exc.value.field == "features"


def test_a_feature_constant_in_the_reference_is_tested_without_error() -> None:
    # token_type_ids of a single-segment encoder: all zeros in the reference.
    from modelscale.monitor import Profile

    ref = Profile.empty({"t": "numeric"})
    ref.update({"t": np.zeros(1_000, np.float32)}, {}, rows=1_000)
    cur = Profile.empty({"t": "numeric"})
    cur.update({"t": np.ones(500, np.float32)}, {}, rows=500)
    result = compare_profiles(ref, cur)
    assert result.features[0].drift is True
    issues = {q.issue for q in result.quality}
    assert "out_of_range" in issues
