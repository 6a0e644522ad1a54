"""Drift and data-quality tests of a window's profile against the baseline's, from the sketches.

Per numeric feature (from the two KLL sketches, never the raw rows):

- **KS distance** D = the largest gap between the two CDFs, read at both sketches' quantiles on a
  grid of 1/1000; its error bound is the sum of the sketches' normalised rank errors plus the
  grid step, and the p-value is the asymptotic two-sample KS one computed on D minus that bound
  (conservative: a sketch's error can only hide drift, never invent it);
- **PSI** over ten bins at the reference's deciles;
- **normalised Wasserstein** distance: the mean gap between the two quantile functions over the
  reference's standard deviation (Evidently's ``wasserstein`` statistic).

Per categorical feature (from the frequent-items counts): the **chi-square** test of homogeneity
(a feature counted several times per row is scaled back to rows, so its sample size is the
number of rows) and the **Jensen-Shannon** distance. The output's features give prediction drift.

The p-values of all features are adjusted together (Benjamini-Hochberg). A feature drifts when
its adjusted p-value is under ``alpha`` and its effect (Wasserstein for numeric features,
Jensen-Shannon for categorical ones) is at least ``min_effect``: at a million rows every shift is
"significant", and the effect size says whether it matters; at a few hundred rows the test says
whether an effect is more than noise.

Data quality per feature: NaN/Inf share against the reference's, the share of values outside
the reference's range, a feature that became constant; per window, the share of requests the
server refused as invalid (schema violations).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import stats as sps
from scipy.spatial.distance import jensenshannon

from modelscale.errors import InvalidInput
from modelscale.monitor.sketch import CategoricalSketch, NumericSketch, Profile

__all__ = [
    "DriftOptions",
    "FeatureDrift",
    "QualityIssue",
    "WindowDrift",
    "benjamini_hochberg",
    "categorical_drift",
    "compare_profiles",
    "numeric_drift",
]

_GRID = np.linspace(0.0005, 0.9995, 1000)
_PSI_FLOOR = 1e-4


@dataclass(frozen=True)
class DriftOptions:
    """How a window is judged against the baseline."""

    alpha: float = 0.01
    """False discovery rate across features (Benjamini-Hochberg)."""
    min_effect: float = 0.1
    """Smallest effect that counts as drift: normalised Wasserstein (numeric features) or
    Jensen-Shannon distance (categorical ones); 0.1 is Evidently's default threshold of both."""
    min_rows: int = 100
    """A window with fewer rows is reported but not tested."""
    max_missing_increase: float = 0.01
    """NaN/Inf share above the reference's by more than this is a data-quality issue."""
    max_out_of_range: float = 0.05
    """Share of values outside the reference's range, beyond the 2 / (n + 1) that a draw from
    the reference's own distribution falls outside the range of n reference values."""
    max_rejected: float = 0.01

    def __post_init__(self) -> None:
        for name, lo, hi in (
            ("alpha", 0.0, 1.0),
            ("min_effect", 0.0, math.inf),
            ("max_missing_increase", 0.0, 1.0),
            ("max_out_of_range", 0.0, 1.0),
            ("max_rejected", 0.0, 1.0),
        ):
            v = getattr(self, name)
            if name == "alpha":
                ok, where = 0.0 < v < 1.0, "in (0, 1)"
            else:
                ok, where = lo <= v <= hi, f"in [{lo:g}, {hi:g}]"
            if not ok:
                raise InvalidInput(
                    f"The {name!r} of drift must be {where}. Got {v!r} instead.", field=name
                )
        if self.min_rows < 2:
            raise InvalidInput(
                f"The 'min_rows' of drift must be >= 2. Got {self.min_rows!r} instead.",
                field="min_rows",
            )


@dataclass(frozen=True)
class FeatureDrift:
    """One feature's tests in one window."""

    feature: str
    kind: str
    test: str
    """'ks' or 'chi2'."""
    statistic: float
    p_value: float
    p_adjusted: float = math.nan
    effect: float = math.nan
    """Normalised Wasserstein (numeric) or Jensen-Shannon distance (categorical)."""
    psi: float = math.nan
    error_bound: float = 0.0
    """How far the statistic may be off because it comes from sketches."""
    drift: bool = False
    rows: int = 0
    detail: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        from modelscale.result import jsonable

        out: dict[str, Any] = jsonable(self)
        return out


@dataclass(frozen=True)
class QualityIssue:
    """A data-quality finding in a window."""

    feature: str
    issue: str
    """'missing', 'out_of_range', 'constant' or 'rejected'."""
    value: float
    reference: float
    message: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "feature": self.feature,
            "issue": self.issue,
            "value": self.value,
            "reference": self.reference,
            "message": self.message,
        }


@dataclass(frozen=True)
class WindowDrift:
    """Every test of one window against the baseline."""

    rows: int
    requests: int
    features: tuple[FeatureDrift, ...]
    quality: tuple[QualityIssue, ...]
    tested: bool
    """False when the window had fewer than ``min_rows`` rows."""
    options: DriftOptions
    domain: dict[str, Any] | None = None
    """The domain-classifier test (AUC with its interval), when run."""

    @property
    def drifted(self) -> list[str]:
        """Features that drift."""
        return [f.feature for f in self.features if f.drift]

    @property
    def verdict(self) -> str:
        """'drift', 'quality', 'ok' or 'too few rows'."""
        if not self.tested:
            return "too few rows"
        if self.drifted or (self.domain or {}).get("drift"):
            return "drift"
        return "quality" if self.quality else "ok"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "verdict": self.verdict,
            "rows": self.rows,
            "requests": self.requests,
            "tested": self.tested,
            "drifted": self.drifted,
            "features": [f.to_dict() for f in self.features],
            "quality": [q.to_dict() for q in self.quality],
            "domain": self.domain,
            "options": {
                "alpha": self.options.alpha,
                "min_effect": self.options.min_effect,
                "min_rows": self.options.min_rows,
            },
        }


def benjamini_hochberg(p: np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (NaN stays NaN)."""
    p = np.asarray(p, dtype=np.float64)
    out = np.full(p.shape, np.nan)
    ok = np.isfinite(p)
    q = p[ok]
    m = q.size
    if not m:
        return out
    order = np.argsort(q)
    ranked = q[order] * m / np.arange(1, m + 1)
    adj = np.minimum.accumulate(ranked[::-1])[::-1]
    res = np.empty(m)
    res[order] = np.minimum(adj, 1.0)
    out[ok] = res
    return out


def _quantiles(sk: NumericSketch) -> np.ndarray:
    return np.asarray(sk.kll.get_quantiles(_GRID.tolist()), dtype=np.float64)


def _split_points(points: np.ndarray) -> np.ndarray:
    """Strictly increasing split points as the float32 sketch sees them (two float64 values can
    round to one float32, and DataSketches refuses repeated split points)."""
    return np.unique(np.asarray(points, dtype=np.float32)).astype(np.float64)


def _cdf(sk: NumericSketch, points: np.ndarray) -> np.ndarray:
    return np.asarray(sk.kll.get_cdf(points.tolist(), True)[:-1], dtype=np.float64)


def numeric_drift(name: str, ref: NumericSketch, cur: NumericSketch) -> FeatureDrift:
    """KS (p-value), normalised Wasserstein and PSI of one numeric feature, from its sketches."""
    n1, n2 = ref.count, cur.count
    if n1 < 2 or n2 < 2:
        return FeatureDrift(name, "numeric", "ks", math.nan, math.nan, rows=n2)
    q_ref, q_cur = _quantiles(ref), _quantiles(cur)
    points = _split_points(np.concatenate([q_ref, q_cur]))
    d = float(np.max(np.abs(_cdf(ref, points) - _cdf(cur, points))))
    # Both sketches' rank errors, and the grid: between two grid quantiles a CDF moves <= 1/1000.
    err = ref.rank_error + cur.rank_error + 1.0 / len(_GRID)
    n_eff = n1 * n2 / (n1 + n2)
    p = float(sps.kstwobign.sf(max(d - err, 0.0) * math.sqrt(n_eff)))
    sd = ref.std
    w = float(np.mean(np.abs(q_ref - q_cur)))
    wn = w / sd if sd > 0 else (0.0 if w == 0 else math.inf)
    # PSI on the reference's deciles (unique edges: a feature with few values has fewer bins).
    edges = _split_points(np.asarray(ref.kll.get_quantiles([0.1 * i for i in range(1, 10)])))
    r = np.diff(np.concatenate([[0.0], _cdf_excl(ref, edges), [1.0]]))
    c = np.diff(np.concatenate([[0.0], _cdf_excl(cur, edges), [1.0]]))
    r, c = np.maximum(r, _PSI_FLOOR), np.maximum(c, _PSI_FLOOR)
    psi = float(np.sum((c - r) * np.log(c / r)))
    return FeatureDrift(
        name,
        "numeric",
        "ks",
        statistic=d,
        p_value=p,
        effect=wn,
        psi=psi,
        error_bound=err,
        rows=n2,
        detail={
            "mean": cur.mean,
            "reference_mean": ref.mean,
            "std": cur.std,
            "reference_std": sd,
            "p50": float(q_cur[len(q_cur) // 2]),
            "reference_p50": float(q_ref[len(q_ref) // 2]),
        },
    )


def _cdf_excl(sk: NumericSketch, points: np.ndarray) -> np.ndarray:
    return np.asarray(sk.kll.get_cdf(points.tolist(), False)[:-1], dtype=np.float64)


def categorical_drift(name: str, ref: CategoricalSketch, cur: CategoricalSketch) -> FeatureDrift:
    """Chi-square (p-value) and Jensen-Shannon distance of one categorical feature."""
    rc, cc = ref.counts(), cur.counts()
    if not ref.items or not cur.items:
        return FeatureDrift(name, "categorical", "chi2", math.nan, math.nan, rows=cur.n)
    keys = sorted(set(rc) | set(cc))
    r = np.array([rc.get(k, 0.0) for k in keys] + [max(ref.items - sum(rc.values()), 0.0)])
    c = np.array([cc.get(k, 0.0) for k in keys] + [max(cur.items - sum(cc.values()), 0.0)])
    keep = (r + c) > 0
    r, c = r[keep], c[keep]
    pr, pc = r / r.sum(), c / c.sum()
    js = float(jensenshannon(pr, pc))
    # Counts scaled to rows: several items per row are not independent observations.
    rows_r = ref.n if ref.n else ref.items
    rows_c = cur.n if cur.n else cur.items
    table = np.vstack([pr * rows_r, pc * rows_c])
    if table.shape[1] < 2:
        stat, p = 0.0, 1.0
    else:
        stat, p, _, _ = sps.chi2_contingency(table, correction=False)
    top = sorted(cc.items(), key=lambda kv: -kv[1])[:5]
    return FeatureDrift(
        name,
        "categorical",
        "chi2",
        statistic=float(stat),
        p_value=float(p),
        effect=js,
        error_bound=max(ref.count_error / max(ref.items, 1), cur.count_error / max(cur.items, 1)),
        rows=cur.n,
        detail={
            "top": {k: v / cur.items for k, v in top},
            "reference_top": {k: rc.get(k, 0.0) / ref.items for k, _ in top},
            "distinct": cur.distinct,
            "reference_distinct": ref.distinct,
        },
    )


def _quality(
    name: str, ref: NumericSketch, cur: NumericSketch, opt: DriftOptions
) -> list[QualityIssue]:
    out: list[QualityIssue] = []
    if not cur.n:
        return out
    miss_c = (cur.nan + cur.inf) / cur.n
    miss_r = (ref.nan + ref.inf) / ref.n if ref.n else 0.0
    if miss_c > miss_r + opt.max_missing_increase:
        out.append(
            QualityIssue(
                name,
                "missing",
                miss_c,
                miss_r,
                f"{name}: {miss_c:.1%} of values are NaN or infinite (reference {miss_r:.1%})",
            )
        )
    if cur.count and ref.count:
        lo, hi = ref.min, ref.max
        below = cur.kll.get_cdf([lo], False)[0]  # values < lo
        upto = cur.kll.get_cdf([hi], True)[0]  # values <= hi
        outside = below + (1.0 - upto)
        expected = 2.0 / (ref.count + 1)
        if outside > expected + opt.max_out_of_range:
            out.append(
                QualityIssue(
                    name,
                    "out_of_range",
                    float(outside),
                    0.0,
                    f"{name}: {outside:.1%} of values fall outside the reference's range "
                    f"[{lo:.4g}, {hi:.4g}]",
                )
            )
        if cur.count >= 30 and cur.min == cur.max and ref.max > ref.min:
            out.append(
                QualityIssue(
                    name,
                    "constant",
                    cur.min,
                    ref.std,
                    f"{name}: constant at {cur.min:.4g} over {cur.count} values "
                    "(it varies in the reference)",
                )
            )
    return out


def compare_profiles(
    reference: Profile,
    window: Profile,
    options: DriftOptions | None = None,
    *,
    domain: dict[str, Any] | None = None,
) -> WindowDrift:
    """Test every feature of ``window`` against ``reference``."""
    opt = options or DriftOptions()
    missing = sorted(set(reference.features) - set(window.features))
    if missing:
        raise InvalidInput(
            f"the window lacks features of the baseline: {', '.join(missing[:5])}",
            field="features",
        )
    quality: list[QualityIssue] = []
    requests = window.requests + window.rejected
    if requests and window.rejected / requests > opt.max_rejected:
        share = window.rejected / requests
        quality.append(
            QualityIssue(
                "(requests)",
                "rejected",
                share,
                0.0,
                f"{share:.1%} of requests were refused as invalid (schema violations)",
            )
        )
    tested = window.rows >= opt.min_rows
    results: list[FeatureDrift] = []
    for name, ref in reference.features.items():
        cur = window.features[name]
        if isinstance(ref, NumericSketch):
            assert isinstance(cur, NumericSketch)
            results.append(numeric_drift(name, ref, cur))
            quality += _quality(name, ref, cur, opt)
        else:
            assert isinstance(cur, CategoricalSketch)
            results.append(categorical_drift(name, ref, cur))
    if not tested:
        return WindowDrift(window.rows, window.requests, tuple(results), tuple(quality), False, opt)
    adj = benjamini_hochberg(np.array([f.p_value for f in results]))
    final = []
    for f, pa in zip(results, adj, strict=True):
        drift = bool(np.isfinite(pa) and pa < opt.alpha and f.effect >= opt.min_effect)
        final.append(
            FeatureDrift(
                f.feature,
                f.kind,
                f.test,
                f.statistic,
                f.p_value,
                float(pa),
                f.effect,
                f.psi,
                f.error_bound,
                drift,
                f.rows,
                f.detail,
            )
        )
    return WindowDrift(
        window.rows, window.requests, tuple(final), tuple(quality), True, opt, domain
    )


def describe(drift: WindowDrift, limit: int = 3) -> str:
    """One line naming the drifting features and the domain classifier's verdict (for alerts)."""
    feats = sorted((f for f in drift.features if f.drift), key=lambda f: -f.effect)
    names = ", ".join(f"{f.feature} ({f.effect:.2f})" for f in feats[:limit])
    more = f" and {len(feats) - limit} more" if len(feats) > limit else ""
    text = f"{len(feats)} feature(s) drift: {names}{more}" if feats else "no feature drifts"
    dom = drift.domain
    if dom and dom.get("drift"):
        text += (
            f"; the domain classifier tells the window from the reference (AUC {dom['auc']:.2f})"
        )
    return text


def options_from(spec: Mapping[str, Any] | None) -> DriftOptions:
    """DriftOptions from a mapping of its fields (unknown keys refused)."""
    if not spec:
        return DriftOptions()
    known = set(DriftOptions.__dataclass_fields__)
    unknown = sorted(set(spec) - known)
    if unknown:
        raise InvalidInput(
            f"unknown drift option {unknown[0]!r}; expected one of {', '.join(sorted(known))}",
            field=unknown[0],
        )
    return DriftOptions(**spec)
