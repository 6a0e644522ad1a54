"""Numeric and categorical sketches, the reservoir sample, and profiles: checked on the raw data."""

from __future__ import annotations

import numpy as np
import orjson
import pytest
from scipy import stats

from modelscale.errors import InvalidInput
from modelscale.monitor.sketch import (
    CATEGORICAL,
    NUMERIC,
    CategoricalSketch,
    NumericSketch,
    Profile,
    Reservoir,
)

GRID = [0.0, 0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99, 1.0]


def numeric(values: np.ndarray) -> NumericSketch:
    s = NumericSketch()
    s.update(values)
    return s


def categorical(values: np.ndarray, rows: int | None = None) -> CategoricalSketch:
    s = CategoricalSketch()
    s.update(values, rows=rows)
    return s


def assert_quantiles_within(sk: NumericSketch, raw: np.ndarray, bound: float) -> None:
    """Every sketch quantile has a rank in the raw data within ``bound`` of the one asked for."""
    xs = np.sort(np.asarray(raw, dtype=np.float32))
    for q, v in zip(GRID, sk.kll.get_quantiles(GRID), strict=True):
        below = np.searchsorted(xs, np.float32(v), side="left") / xs.size
        upto = np.searchsorted(xs, np.float32(v), side="right") / xs.size
        # The value's ranks span [below, upto]: q must lie in that span, widened by the bound.
        assert below - bound <= q <= upto + bound, (q, v, below, upto, bound)


# --- NumericSketch -------------------------------------------------------------------------


def test_nan_and_inf_are_counted_and_kept_out_of_quantiles_and_moments() -> None:
    rng = np.random.default_rng(0)
    finite = rng.normal(3.0, 2.0, 500).astype(np.float32)
    values = np.concatenate([finite, [np.nan] * 7, [np.inf] * 3, [-np.inf] * 2]).astype(np.float32)
    rng.shuffle(values)
    s = numeric(values)
    assert (s.n, s.nan, s.inf, s.count) == (512, 7, 5, 500)
    f64 = finite.astype(np.float64)
    assert s.mean == pytest.approx(f64.mean(), rel=1e-12)
    assert s.std == pytest.approx(f64.std(), rel=1e-9)
    assert (s.min, s.max) == (float(finite.min()), float(finite.max()))
    qs = np.asarray(s.kll.get_quantiles(GRID))
    assert np.isfinite(qs).all()
    assert set(qs.tolist()) <= set(finite.astype(np.float64).tolist())
    # Exact while small: every quantile's rank is the one asked for, to one value.
    assert s.rank_error == 0.0
    assert_quantiles_within(s, finite, 1.0 / finite.size)


def test_a_sketch_of_only_missing_values_has_no_moments() -> None:
    s = numeric(np.array([np.nan, np.inf, np.nan]))
    assert (s.n, s.nan, s.inf, s.count) == (3, 2, 1, 0)
    assert all(np.isnan(v) for v in (s.mean, s.std, s.min, s.max))


def test_rank_error_is_zero_while_exact_and_bounds_the_quantiles_of_a_million_values() -> None:
    rng = np.random.default_rng(1)
    small = numeric(rng.normal(size=1_000))
    assert small.rank_error == 0.0
    raw = rng.lognormal(0.0, 1.0, 1_000_000).astype(np.float32)
    big = numeric(raw)
    assert 0.0 < big.rank_error < 0.005
    assert big.count == raw.size
    assert big.mean == pytest.approx(raw.astype(np.float64).mean(), rel=1e-9)
    assert big.std == pytest.approx(raw.astype(np.float64).std(), rel=1e-6)
    assert (big.min, big.max) == (float(raw.min()), float(raw.max()))
    assert_quantiles_within(big, raw, big.rank_error)


def test_merging_two_halves_equals_one_pass_within_the_error_bound() -> None:
    rng = np.random.default_rng(2)
    # Halves from different distributions, so a merge that dropped one would show.
    a = np.concatenate([rng.normal(0, 1, 100_000), [np.nan] * 30]).astype(np.float32)
    b = np.concatenate([rng.exponential(3.0, 150_000), [np.inf] * 4]).astype(np.float32)
    merged = numeric(a)
    merged.merge(numeric(b))
    whole = numeric(np.concatenate([a, b]))
    for attr in ("n", "nan", "inf", "count", "min", "max"):
        assert getattr(merged, attr) == getattr(whole, attr), attr
    assert merged.mean == pytest.approx(whole.mean, rel=1e-12)
    assert merged.std == pytest.approx(whole.std, rel=1e-9)
    finite = np.concatenate([a, b])
    finite = finite[np.isfinite(finite)]
    assert merged.rank_error > 0.0
    assert_quantiles_within(merged, finite, merged.rank_error)
    assert_quantiles_within(whole, finite, whole.rank_error)


# --- CategoricalSketch ---------------------------------------------------------------------


def test_categorical_counts_are_exact_under_192_distinct_values() -> None:
    rng = np.random.default_rng(3)
    values = rng.zipf(1.3, 20_000) % 150
    s = categorical(values)
    uniq, counts = np.unique(values, return_counts=True)
    assert s.counts() == {str(u): float(c) for u, c in zip(uniq, counts, strict=True)}
    assert s.count_error == 0.0
    assert (s.n, s.items) == (20_000, 20_000)
    assert s.kind == CATEGORICAL


def test_merging_categorical_sketches_adds_their_counts() -> None:
    a = categorical(np.array([1, 1, 2, 3, 3, 3]))
    b = categorical(np.array([3, 4, 4, 1]))
    a.merge(b)
    assert a.counts() == {"1": 3.0, "2": 1.0, "3": 4.0, "4": 2.0}
    assert (a.n, a.items) == (10, 10)
    assert a.distinct == pytest.approx(4, abs=0.01)


def test_hll_distinct_count_is_within_3_percent() -> None:
    a = categorical(np.arange(40_000))
    b = categorical(np.arange(30_000, 90_000))
    assert a.distinct == pytest.approx(40_000, rel=0.03)
    a.merge(b)
    # The union, not the sum: 30,000..39,999 are in both.
    assert a.distinct == pytest.approx(90_000, rel=0.03)
    # Beyond 192 distinct values the counts are estimates with a stated error.
    assert a.count_error > 0.0


def test_several_items_per_row_keep_the_row_count() -> None:
    rng = np.random.default_rng(4)
    items = rng.integers(0, 32, 5 * 300)
    s = categorical(items, rows=300)
    assert (s.n, s.items) == (300, 1_500)
    s.merge(categorical(rng.integers(0, 32, 5 * 200), rows=200))
    assert (s.n, s.items) == (500, 2_500)
    # An empty batch of a sequence feature still counts its rows.
    s.update(np.array([], dtype=np.int64), rows=7)
    assert (s.n, s.items) == (507, 2_500)


# --- Reservoir -----------------------------------------------------------------------------


def offer_indices(r: Reservoir, total: int, sizes: list[int]) -> None:
    start, k = 0, 0
    while start < total:
        stop = min(start + sizes[k % len(sizes)], total)
        r.update([np.arange(start, stop)])
        start, k = stop, k + 1


def test_reservoir_keeps_every_row_of_a_short_stream() -> None:
    r = Reservoir(["a", "b"], capacity=100)
    r.update([np.arange(30), -np.arange(30)])
    r.update([np.arange(30, 60), -np.arange(30, 60)])
    assert r.seen == 60
    np.testing.assert_array_equal(r.rows[:, 0], np.arange(60))
    np.testing.assert_array_equal(r.rows[:, 1], -np.arange(60))


def test_reservoir_is_a_uniform_sample_whatever_the_batch_sizes() -> None:
    kept = []
    sizes = [1, 7, 300, 5_000, 33, 12_345, 999]
    for rep in range(200):
        r = Reservoir(["i"], capacity=1_000, seed=rep)
        offer_indices(r, 100_000, [*sizes[rep % 7 :], 64])
        assert r.rows.shape == (1_000, 1) and r.seen == 100_000
        # A sample without replacement: no row twice.
        assert np.unique(r.rows[:, 0]).size == 1_000
        kept.append(r.rows[:, 0])
    idx = np.concatenate(kept).astype(np.int64)
    # Mean of 200,000 uniform indices: sd of the mean ~ 28,868 / sqrt(200,000) ~ 65.
    assert abs(idx.mean() - 49_999.5) < 400
    deciles = np.bincount(idx // 10_000, minlength=10)
    assert deciles.size == 10
    assert stats.chisquare(deciles).pvalue > 0.001
    # The first rows (which fill the reservoir) are not favoured.
    first = np.bincount(idx[idx < 1_000] // 100, minlength=10)
    assert stats.chisquare(first).pvalue > 0.001


def test_merged_reservoirs_draw_from_each_side_in_proportion_to_what_it_saw() -> None:
    shares = []
    for rep in range(60):
        a = Reservoir(["x"], capacity=1_000, seed=rep)
        b = Reservoir(["x"], capacity=1_000, seed=1_000 + rep)
        a.update([np.zeros(10_000)])
        b.update([np.ones(30_000)])
        a.merge(b)
        assert a.rows.shape == (1_000, 1) and a.seen == 40_000
        shares.append(float((a.rows[:, 0] == 0).mean()))
    # Hypergeometric: sd of one share ~ 0.0137, of the mean of 60 ~ 0.0018.
    assert np.mean(shares) == pytest.approx(0.25, abs=0.01)


def test_merging_short_reservoirs_keeps_every_row() -> None:
    a = Reservoir(["x"], capacity=100)
    b = Reservoir(["x"], capacity=100)
    a.update([np.arange(40)])
    b.update([np.arange(100, 150)])
    a.merge(b)
    assert a.seen == 90
    assert sorted(a.rows[:, 0].tolist()) == [*range(40), *range(100, 150)]


def test_reservoirs_of_different_columns_do_not_merge() -> None:
    with pytest.raises(InvalidInput, match="different features") as exc:
        Reservoir(["a"]).merge(Reservoir(["b"]))
    assert exc.value.field == "columns"


# --- Profile -------------------------------------------------------------------------------

KINDS = {"x": NUMERIC, "y": NUMERIC, "c": CATEGORICAL}


def profile(seed: int, n: int, kinds: dict[str, str] = KINDS) -> Profile:
    rng = np.random.default_rng(seed)
    p = Profile.empty(kinds)
    num = {k: rng.normal(size=n) for k, v in kinds.items() if v == NUMERIC}
    cat = {k: (rng.integers(0, 5, n), None) for k, v in kinds.items() if v == CATEGORICAL}
    p.update(num, cat, rows=n, requests=n // 10, times=(1_000.0 + seed, 2_000.0 + seed))
    return p


def test_profile_round_trips_through_bytes() -> None:
    p = profile(5, 3_000)
    p.rejected = 4
    p.features["x"].update(np.array([np.nan, np.inf]))
    back = Profile.from_bytes(p.to_bytes())
    assert (back.rows, back.requests, back.rejected, back.start, back.end) == (
        3_000,
        300,
        4,
        1_005.0,
        2_005.0,
    )
    assert back.kinds() == p.kinds()
    for name in ("x", "y"):
        a, b = p.features[name], back.features[name]
        assert isinstance(a, NumericSketch) and isinstance(b, NumericSketch)
        assert (b.n, b.nan, b.inf, b.count, b.sum, b.sumsq) == (
            a.n,
            a.nan,
            a.inf,
            a.count,
            a.sum,
            a.sumsq,
        )
        assert b.kll.get_quantiles(GRID) == a.kll.get_quantiles(GRID)
        assert b.rank_error == a.rank_error > 0.0
    c, d = p.features["c"], back.features["c"]
    assert isinstance(c, CategoricalSketch) and isinstance(d, CategoricalSketch)
    assert (d.counts(), d.n, d.distinct) == (c.counts(), c.n, c.distinct)
    assert p.reservoir is not None and back.reservoir is not None
    assert back.reservoir.columns == ("x", "y") and back.reservoir.seen == 3_000
    np.testing.assert_array_equal(back.reservoir.rows, p.reservoir.rows)


def test_profiles_merge_counts_times_and_sketches() -> None:
    a, b = profile(1, 500), profile(2, 700)
    a.rejected, b.rejected = 2, 3
    a.merge(b)
    assert (a.rows, a.requests, a.rejected, a.start, a.end) == (1_200, 120, 5, 1_001.0, 2_002.0)
    x = a.features["x"]
    assert isinstance(x, NumericSketch) and x.count == 1_200
    assert a.reservoir is not None and a.reservoir.seen == 1_200


def test_profiles_of_different_features_do_not_merge() -> None:
    a = profile(1, 200)
    b = profile(2, 200, {"x": NUMERIC, "z": NUMERIC, "c": CATEGORICAL})
    with pytest.raises(InvalidInput, match="different features") as exc:
        a.merge(b)
    assert exc.value.field == "features"
    # The same names with another kind do not merge either.
    c = profile(3, 200, {"x": NUMERIC, "y": CATEGORICAL, "c": CATEGORICAL})
    with pytest.raises(InvalidInput, match="different features"):
        a.merge(c)


@pytest.mark.parametrize("data", [b"", b"\x00\x01garbage", b"{not json", b"PK\x03\x04"])
def test_profile_from_bytes_refuses_bytes_that_are_not_json(data: bytes) -> None:
    with pytest.raises(InvalidInput, match="not a monitor profile") as exc:
        Profile.from_bytes(data)
    assert exc.value.field == "profile"


@pytest.mark.parametrize(
    "data",
    [
        b"[]",
        b'"profile"',
        b'{"format": 1}',
        orjson.dumps(
            {
                "format": 1,
                "rows": 1,
                "features": {
                    "x": {
                        "kind": "numeric",
                        "n": 1,
                        "nan": 0,
                        "inf": 0,
                        "sum": 0,
                        "sumsq": 0,
                        "kll": "AAAA",
                    }
                },
            }
        ),
    ],
    ids=["list", "string", "no-features", "truncated-kll"],
)
def test_profile_from_bytes_refuses_json_that_is_not_a_profile(data: bytes) -> None:
    with pytest.raises(InvalidInput):
        Profile.from_bytes(data)


@pytest.mark.parametrize("fmt", [None, 0, 2, "1"])
def test_profile_from_dict_refuses_an_unknown_format(fmt: object) -> None:
    d = profile(1, 50).to_dict()
    d["format"] = fmt
    with pytest.raises(InvalidInput, match="unknown profile format") as exc:
        Profile.from_dict(d)
    assert exc.value.field == "format"
