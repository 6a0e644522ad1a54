"""Always-valid statistics for online experiments: tests and intervals that stay valid at every look.

An experiment dashboard is looked at continuously, and a fixed-horizon test (a t-test read at
the end of a planned sample) is not: stopping the first time its p-value dips under 0.05 rejects
a true null in about a third of A/A experiments. The tests here are *always valid*: the chance
that they ever reject a true null, over any number of looks at any times, is at most ``alpha``.

This module is written here rather than taken from a package because no maintained one installs
cleanly: ``confseq`` does not build, ``expan`` is no longer maintained, and ``gbstats`` on PyPI is
stale. It needs numpy and scipy only, and :func:`compare` runs on plain floats so a server can
call it about once a second per metric.

Methods:

- **Difference of means** (:func:`compare`): the mixture sequential probability ratio test
  (mSPRT) with a normal mixture, Johari, Koomen, Pekelis and Walsh 2017 ("Peeking at A/B
  tests"), on the estimate ``treatment mean - control mean`` with variance
  ``s_c^2 / n_c + s_t^2 / n_t``; and the asymptotic confidence sequence of Howard, Ramdas,
  McAuliffe and Sekhon 2021 ("Time-uniform, nonparametric, nonasymptotic confidence sequences")
  and Waudby-Smith, Arbour, Sinha, Kennedy and Ramdas 2023 ("Time-uniform central limit theory
  and asymptotic confidence sequences"), in the form GrowthBook's sequential engine uses. With
  ``N`` units in all, ``s2 = Var(estimate) * N`` and the mixing parameter
  ``rho^2 = (-2 ln alpha + ln(-2 ln alpha + 1)) / planned_units`` (the one that makes the
  interval narrowest at ``planned_units``), the half-width is
  ``sqrt(s2) * sqrt(2 (N rho^2 + 1) / (N^2 rho^2) * ln(sqrt(N rho^2 + 1) / alpha))``.
  The mSPRT's likelihood ratio against a normal mixture with variance ``tau^2 = rho^2 sigma^2``
  is ``exp(d^2 N^2 rho^2 / (2 s2 (N rho^2 + 1))) / sqrt(N rho^2 + 1)``, and its always-valid
  p-value ``min(1, 1 / ratio)`` is exactly the inversion of that confidence sequence: the
  p-value is under ``alpha`` if and only if 0 is outside the interval, at every look, so the
  interval and the p-value never disagree.
- **Difference of means up to a horizon** (``horizon=N``): when the experiment has a maximum
  size, a boundary that is constant on the sum scale (a continuous-monitoring O'Brien-Fleming
  design): with ``t = n / N`` and ``Z_n`` the estimate over its standard error, reject when
  ``|Z_n| >= c / sqrt(t)``, where ``c`` solves ``P(sup_{t <= 1} |W(t)| >= c) = alpha`` for a
  Brownian motion ``W`` (2.241 at alpha 0.05). Looks at any times up to ``N`` keep the level
  (discrete looks only make it conservative), and the interval ``d +- c sqrt(v N / n)`` covers
  the difference at every look up to ``N`` at once. It spends its alpha by ``N``, so it is
  sharper there: about 97% of a fixed-horizon test's power at ``N`` against about 67% for the
  open-ended sequence; the price is that it ends at ``N`` (:class:`SequentialTest` freezes at
  the horizon).
- **Relative lift**: the same boundary on the delta-method variance of
  ``treatment mean / control mean - 1``.
- **One arm's mean** (:func:`mean_sequence`): the one-sample form of the same sequence.
- **Sample-ratio mismatch** (:class:`SequentialSrm`): the anytime-valid multinomial test of
  Lindon and Malek 2022 ("Anytime-valid inference for multinomial count data"): a
  Dirichlet-multinomial mixture against the multinomial with the expected shares; its Bayes
  factor is a martingale under the expected split, so ``1 / max Bayes factor`` is an
  always-valid p-value (Ville's inequality).
- **Variance reduction** (``cuped=True``): CUPED, Deng, Xu, Kohavi and Walker 2013 ("Improving
  the sensitivity of online controlled experiments by utilizing pre-experiment data"): the
  metric minus ``theta`` times its pre-period covariate, ``theta`` pooled within the arms, which
  shrinks the variance by about ``1 - corr^2``.

What is kept per arm is :class:`Moments`: a count and running sums, O(1) per event, which two
servers (or two time windows) merge by adding. :class:`SequentialTest` keeps what makes peeking
safe across looks: the running minimum of the p-value and the running intersection of the
intervals, both still valid.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy.optimize import brentq
from scipy.special import gammaln, ndtr, stdtr

from modelscale.errors import InvalidInput

__all__ = [
    "DEFAULT_SRM_ALPHA",
    "DEFAULT_SRM_CONCENTRATION",
    "Comparison",
    "Moments",
    "SequentialSrm",
    "SequentialTest",
    "SrmResult",
    "always_valid_p",
    "bounded_critical_value",
    "compare",
    "cuped_theta",
    "fixed_horizon_test",
    "halfwidth",
    "mean_sequence",
    "srm_bayes_factor",
]

DEFAULT_SRM_ALPHA = 0.001
"""Sample-ratio mismatch is a guardrail checked on every experiment all the time, and a false
alarm throws away a valid experiment's result, so it is tested at a strict level (GrowthBook's
SRM check uses 0.001 too). A real mismatch still shows quickly: the test's evidence grows
linearly with units, and a stricter level costs only a constant number of units (about
ln(10) / KL per factor of ten)."""

DEFAULT_SRM_CONCENTRATION = 300.0
"""Dirichlet concentration of the mismatch alternative, centred on the expected shares. Its
prior share has standard deviation about ``sqrt(p (1 - p) / (concentration + 1))``: 0.029 at a
50/50 split, the size of the mismatches that matter (a 50/50 split served 50/45 is off by
0.026). In simulation (alpha 0.001, a look every 100 units) 300 flags 50/45 in a median 6,100
units and 50/40 in 1,500; 1,000 takes 6,400 and 1,900, 100 takes 6,300 and 1,400, and 3,000
takes 7,400 and 2,600 (it is tuned to smaller mismatches: 50/48 in 38,650 against 40,900)."""

# A 0/1 metric's variance is floored at that of (events + 1) / (units + 2): 0 events against 3
# in the first hundred units has sample variances of zero and near zero, and without a floor
# the estimate would look far more precise than such counts can say.
_PSEUDO_EVENTS = 1.0

# --------------------------------------------------------------------------------------------
# Input checks


def _fail(name: str, expected: str, got: object) -> InvalidInput:
    return InvalidInput(f"{name} must be {expected}. Got {got!r}.", field=name)


def _check_alpha(alpha: object, name: str = "alpha") -> float:
    if (
        isinstance(alpha, bool)
        or not isinstance(alpha, int | float | np.floating | np.integer)
        or not 0.0 < float(alpha) < 1.0
    ):
        raise _fail(name, "in (0, 1)", alpha)
    return float(alpha)


def _check_int(value: object, name: str, *, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise _fail(name, f"a whole number >= {minimum}", value)
    return int(value)


def _check_number(value: object, name: str, *, minimum: float = -math.inf) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float | np.floating | np.integer)
        or not math.isfinite(float(value))
        or float(value) < minimum
    ):
        bound = "" if minimum == -math.inf else f" >= {minimum:g}"
        raise _fail(name, f"a finite number{bound}", value)
    return float(value)


def _check_moments(m: object, name: str) -> Moments:
    if not isinstance(m, Moments):
        raise _fail(name, "a Moments (e.g. Moments.of(values))", type(m).__name__)
    return m


def _vector(values: npt.ArrayLike, name: str) -> np.ndarray:
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise _fail(name, "a 1-D array of numbers", f"values that are not numbers ({exc})") from exc
    if arr.ndim != 1:
        raise _fail(name, "a 1-D array of numbers", f"an array of shape {arr.shape}")
    bad = ~np.isfinite(arr)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise _fail(name, "finite numbers (no NaN or infinity)", f"{arr[row]} at row {row}")
    return arr


def _finite_or_none(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


def _interval_json(ci: tuple[float, float] | None) -> list[float | None] | None:
    return None if ci is None else [_finite_or_none(ci[0]), _finite_or_none(ci[1])]


# --------------------------------------------------------------------------------------------
# The formulas. They use arithmetic and ``xp.sqrt/log/exp`` only, so they run on floats with
# ``xp=math`` (the server's path) and on numpy arrays with ``xp=numpy`` (bench/experiment.py's
# simulations): the benchmark measures these functions, not a copy of them.


def _clip0(x: Any) -> Any:
    """max(x, 0) on floats and arrays alike (x finite or +inf)."""
    return x * (x > 0)


def _rho2(alpha: float, planned_units: int) -> float:
    """The mixing parameter that makes the (1 - alpha) sequence narrowest at ``planned_units``."""
    log_term = -2.0 * math.log(alpha)
    return (log_term + math.log(log_term + 1.0)) / planned_units


def _sample_variance(n: Any, total: Any, total_sq: Any) -> Any:
    """Sample variance (ddof=1) from a count and running sums, never negative (n >= 2)."""
    return _clip0((total_sq - total * total / n) / (n - 1))


def _binary_variance(n: Any, total: Any, total_sq: Any) -> Any:
    """Sample variance of a 0/1 metric, floored at that of (events + 1) / (units + 2)."""
    var = _sample_variance(n, total, total_sq)
    share = (total + _PSEUDO_EVENTS) / (n + 2.0 * _PSEUDO_EVENTS)
    return var + _clip0(share * (1.0 - share) - var)


def _boundary(v: Any, n: Any, rho2: float, alpha: float, xp: Any = math) -> Any:
    """Half-width of the (1 - alpha) asymptotic confidence sequence of an estimate whose
    variance is ``v`` after ``n`` units (``s2 = v * n`` in the module docstring's terms)."""
    nr = n * rho2
    return xp.sqrt(v * 2.0 * (nr + 1.0) / nr * xp.log(xp.sqrt(nr + 1.0) / alpha))


def _p_value(d: Any, v: Any, n: Any, rho2: float, xp: Any = math) -> Any:
    """Always-valid p-value of an estimate ``d`` (minus the null) with variance ``v > 0`` after
    ``n`` units: 1 / the normal-mixture likelihood ratio, capped at 1."""
    nr = n * rho2
    p = xp.sqrt(nr + 1.0) * xp.exp(-(d * d) * nr / (2.0 * v * (nr + 1.0)))
    return p - _clip0(p - 1.0)


def _sup_abs_bm_tail(c: Any) -> Any:
    """P(sup over [0, 1] of |W(t)| >= c) for a standard Brownian motion, c >= 0 (float or array).

    Two series for the same law (Feller, vol. II, X.5): for c >= 1 the alternating sum of normal
    tails (4 terms are exact to 1e-16), below 1 the theta-function series (6 terms)."""
    c = np.asarray(c, dtype=float)
    big = np.maximum(c, 1.0)
    inside = np.zeros_like(big)
    for k in range(-4, 5):
        inside += (-1) ** (k % 2) * (ndtr((2 * k + 1) * big) - ndtr((2 * k - 1) * big))
    small = np.minimum(np.maximum(c, 1e-3), 1.0)
    theta = np.zeros_like(small)
    for k in range(6):
        j = 2 * k + 1
        theta += (-1) ** k / j * np.exp(-(j * j) * math.pi**2 / (8.0 * small * small))
    theta *= 4.0 / math.pi
    tail = 1.0 - np.where(c >= 1.0, inside, theta)
    tail = np.clip(tail, 0.0, 1.0)
    return tail if tail.ndim else float(tail)


_CRITICAL: dict[float, float] = {}


def bounded_critical_value(alpha: float = 0.05) -> float:
    """The ``c`` with P(sup over [0, 1] of |W(t)| >= c) = alpha: the horizon test's boundary on
    the sum scale (2.241 at 0.05, against the fixed-horizon 1.960).

    Raises:
        InvalidInput: alpha outside (0, 1).
    """
    alpha = _check_alpha(alpha)
    if alpha not in _CRITICAL:
        _CRITICAL[alpha] = float(brentq(lambda c: _sup_abs_bm_tail(c) - alpha, 1e-3, 40.0))
    return _CRITICAL[alpha]


def _bounded_halfwidth(v: Any, n: Any, horizon: int, c: float, xp: Any = math) -> Any:
    """Half-width of the horizon test's interval after ``n`` of ``horizon`` units (n <= N; a
    look past the horizon is read as the look at it)."""
    t = n / horizon
    t = t - _clip0(t - 1.0)
    return c * xp.sqrt(v / t)


def _bounded_p(d: Any, v: Any, n: Any, horizon: int) -> Any:
    """The horizon test's p-value: the smallest alpha whose boundary ``d`` reaches."""
    t = np.minimum(np.asarray(n, dtype=float) / horizon, 1.0)
    return _sup_abs_bm_tail(np.abs(d) / np.sqrt(v) * np.sqrt(t))


def _difference(
    mean_c: Any,
    var_c: Any,
    n_c: Any,
    mean_t: Any,
    var_t: Any,
    n_t: Any,
    rho2: float,
    alpha: float,
    xp: Any = math,
) -> tuple[Any, Any, Any, Any]:
    """(difference, its variance, CS half-width, always-valid p) of two arms' means, for
    variances > 0."""
    d = mean_t - mean_c
    v = var_c / n_c + var_t / n_t
    n = n_c + n_t
    return d, v, _boundary(v, n, rho2, alpha, xp), _p_value(d, v, n, rho2, xp)


def _welch_p(mean_c: Any, var_c: Any, n_c: Any, mean_t: Any, var_t: Any, n_t: Any) -> Any:
    """Two-sided Welch t-test p-value (Welch-Satterthwaite degrees of freedom), for se > 0."""
    a = var_c / n_c
    b = var_t / n_t
    se2 = a + b
    t = (mean_t - mean_c) / np.sqrt(se2)
    df = se2 * se2 / (a * a / (n_c - 1) + b * b / (n_t - 1))
    return 2.0 * stdtr(df, -np.abs(t))


# --------------------------------------------------------------------------------------------
# Running sums


@dataclass(frozen=True)
class Moments:
    """Running sums of one metric in one arm (what a server keeps per arm: O(1) per event).

    The covariate sums hold an optional pre-period value per unit for CUPED (e.g. the same
    metric in the week before the experiment); they stay zero when it is unused.
    """

    n: int = 0
    total: float = 0.0
    total_sq: float = 0.0
    x_total: float = 0.0
    x_total_sq: float = 0.0
    xy_total: float = 0.0

    def __post_init__(self) -> None:
        _check_int(self.n, "n", minimum=0)
        for name in ("total", "total_sq", "x_total", "x_total_sq", "xy_total"):
            minimum = 0.0 if name.endswith("_sq") else -math.inf
            _check_number(getattr(self, name), name, minimum=minimum)

    @classmethod
    def of(cls, values: npt.ArrayLike, covariate: npt.ArrayLike | None = None) -> Moments:
        """The sums of an array of per-unit values (and of their pre-period covariate).

        Args:
            values: one metric value per unit (a 0/1 array for a conversion).
            covariate: the same units' pre-period values, for CUPED.

        Raises:
            InvalidInput: not a 1-D array of finite numbers, or the lengths differ.
        """
        y = _vector(values, "values")
        if covariate is None:
            return cls(n=len(y), total=float(y.sum()), total_sq=float(y @ y))
        x = _vector(covariate, "covariate")
        if len(x) != len(y):
            raise _fail("covariate", f"one value per unit ({len(y)} values)", f"{len(x)} values")
        return cls(
            n=len(y),
            total=float(y.sum()),
            total_sq=float(y @ y),
            x_total=float(x.sum()),
            x_total_sq=float(x @ x),
            xy_total=float(x @ y),
        )

    def add(self, value: float, covariate: float = 0.0) -> Moments:
        """These sums with one more unit."""
        return Moments(
            n=self.n + 1,
            total=self.total + value,
            total_sq=self.total_sq + value * value,
            x_total=self.x_total + covariate,
            x_total_sq=self.x_total_sq + covariate * covariate,
            xy_total=self.xy_total + covariate * value,
        )

    def merge(self, other: Moments) -> Moments:
        """The sums of both sets of units (e.g. two servers' counters, or two windows)."""
        other = _check_moments(other, "other")
        return Moments(
            n=self.n + other.n,
            total=self.total + other.total,
            total_sq=self.total_sq + other.total_sq,
            x_total=self.x_total + other.x_total,
            x_total_sq=self.x_total_sq + other.x_total_sq,
            xy_total=self.xy_total + other.xy_total,
        )

    @property
    def mean(self) -> float:
        """Mean per unit; nan when there are no units."""
        return self.total / self.n if self.n else math.nan

    @property
    def variance(self) -> float:
        """Sample variance (ddof=1); nan under 2 units; never negative."""
        if self.n < 2:
            return math.nan
        return float(_sample_variance(self.n, self.total, self.total_sq))

    @property
    def binary(self) -> bool:
        """Whether the sums are those of a 0/1 metric (whole number of events, sum = sum of
        squares)."""
        return (
            self.n > 0
            and 0.0 <= self.total <= self.n
            and abs(self.total - round(self.total)) <= 1e-6
            and abs(self.total_sq - self.total) <= 1e-9 * max(1.0, self.total)
        )

    def to_dict(self) -> dict[str, Any]:
        """The sums, mean and variance as plain JSON types (nan as None)."""
        out: dict[str, Any] = asdict(self)
        out["mean"] = _finite_or_none(self.mean)
        out["variance"] = _finite_or_none(self.variance)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Moments:
        """Sums from :meth:`to_dict`'s output (the mean and variance keys are ignored)."""
        names = ("n", "total", "total_sq", "x_total", "x_total_sq", "xy_total")
        return cls(**{k: data[k] for k in names if k in data})


def _metric_variance(m: Moments) -> float:
    """The variance a test uses for one arm: the sample variance, floored for 0/1 metrics."""
    if m.binary:
        return float(_binary_variance(m.n, m.total, m.total_sq))
    return float(_sample_variance(m.n, m.total, m.total_sq))


def _centred(n: Any, total: Any, x_total: Any, x_total_sq: Any, xy_total: Any) -> tuple[Any, Any]:
    """(centred sum of x*y, centred sum of x^2) of one arm's sums, n >= 1 (floats or arrays)."""
    return (
        xy_total - x_total * total / n,
        _clip0(x_total_sq - x_total * x_total / n),
    )


def _cuped_arm(
    mean: Any, var: Any, n: Any, x_mean: Any, x_pooled: Any, sxy: Any, sxx: Any, theta: Any
) -> tuple[Any, Any]:
    """(mean, variance) of one arm's metric minus ``theta`` times its covariate centred at the
    pooled covariate mean (floats or arrays, n >= 2)."""
    return (
        mean - theta * (x_mean - x_pooled),
        _clip0(var - (2.0 * theta * sxy - theta * theta * sxx) / (n - 1)),
    )


def _cross(m: Moments) -> tuple[float, float]:
    if m.n == 0:
        return 0.0, 0.0
    sxy, sxx = _centred(m.n, m.total, m.x_total, m.x_total_sq, m.xy_total)
    return float(sxy), float(sxx)


def cuped_theta(control: Moments, treatment: Moments) -> float:
    """CUPED's coefficient: the covariance of metric and covariate over the covariate's
    variance, pooled within the two arms.

    Pooled within arms rather than over the merged units, so a treatment effect on the metric
    does not leak into ``theta``. 0 when the covariate does not vary (or is unused).
    """
    control = _check_moments(control, "control")
    treatment = _check_moments(treatment, "treatment")
    sxy_c, sxx_c = _cross(control)
    sxy_t, sxx_t = _cross(treatment)
    sxx = sxx_c + sxx_t
    if sxx <= 0.0:
        return 0.0
    return (sxy_c + sxy_t) / sxx


def _adjusted(m: Moments, theta: float, x_pooled: float) -> tuple[float, float]:
    """(mean, variance) of one arm's metric, CUPED-adjusted when theta != 0; the variance is
    nan under 2 units."""
    if m.n == 0:
        return math.nan, math.nan
    if m.n < 2:
        return m.mean - theta * (m.x_total / m.n - x_pooled), math.nan
    var = _metric_variance(m)
    if theta == 0.0:
        return m.mean, var
    sxy, sxx = _cross(m)
    mean, var = _cuped_arm(m.mean, var, m.n, m.x_total / m.n, x_pooled, sxy, sxx, theta)
    return float(mean), float(var)


# --------------------------------------------------------------------------------------------
# Two-arm comparison


@dataclass(frozen=True)
class Comparison:
    """Treatment against control on one metric at one look.

    With ``cuped=True`` the arm means are CUPED-adjusted (each arm's mean at the pooled
    covariate mean), so ``difference == treatment_mean - control_mean`` always holds; the raw
    means are ``control.mean`` and ``treatment.mean``.
    """

    control: Moments
    treatment: Moments
    control_mean: float
    treatment_mean: float
    difference: float
    """Treatment minus control (CUPED-adjusted when ``cuped=True``)."""
    ci: tuple[float, float]
    """Always-valid (1 - alpha) confidence sequence for the difference at this look."""
    lift: float | None
    """treatment / control - 1; None when the control mean is 0 or nan."""
    lift_ci: tuple[float, float] | None
    """Delta-method interval of the lift on the same boundary."""
    p_value: float
    """Always-valid p-value at this look (1.0 before enough data)."""
    alpha: float
    ready: bool
    """False until each arm has ``min_units`` units (then ci = (-inf, inf), p = 1)."""
    horizon: int | None = None
    """The horizon test's maximum units (None: the open-ended sequence)."""
    final: bool = False
    """The horizon test has reached its horizon: this look is its last word."""

    @property
    def significant(self) -> bool:
        """Whether the difference is detected at ``alpha`` (equivalently, 0 is outside ci)."""
        return self.ready and self.p_value < self.alpha

    def to_dict(self) -> dict[str, Any]:
        """The comparison as plain JSON types; infinities and nan as None."""
        return {
            "control": self.control.to_dict(),
            "treatment": self.treatment.to_dict(),
            "control_mean": _finite_or_none(self.control_mean),
            "treatment_mean": _finite_or_none(self.treatment_mean),
            "difference": _finite_or_none(self.difference),
            "ci": _interval_json(self.ci),
            "lift": None if self.lift is None else _finite_or_none(self.lift),
            "lift_ci": _interval_json(self.lift_ci),
            "p_value": _finite_or_none(self.p_value),
            "alpha": self.alpha,
            "ready": self.ready,
            "significant": self.significant,
            "horizon": self.horizon,
            "final": self.final,
        }


def _check_plan(alpha: object, planned_units: object, min_units: object) -> tuple[float, int, int]:
    return (
        _check_alpha(alpha),
        _check_int(planned_units, "planned_units", minimum=1),
        _check_int(min_units, "min_units", minimum=2),
    )


def _estimate_and_bounds(
    d: float, v: float, n: int, rho2: float, alpha: float, horizon: int | None = None
) -> tuple[tuple[float, float], float]:
    """(ci, p) of an estimate ``d`` with variance ``v`` after ``n`` units, v = 0 included: the
    open-ended sequence, or the horizon test's when ``horizon`` is given."""
    if not (math.isfinite(d) and math.isfinite(v)):
        return (-math.inf, math.inf), 1.0
    if v <= 0.0:
        # Both arms constant: the difference is known exactly, with nothing to divide by.
        return (d, d), (1.0 if d == 0.0 else 0.0)
    if horizon is not None:
        hw = _bounded_halfwidth(v, n, horizon, bounded_critical_value(alpha))
        return (d - hw, d + hw), float(_bounded_p(d, v, n, horizon))
    hw = _boundary(v, n, rho2, alpha)
    return (d - hw, d + hw), _p_value(d, v, n, rho2)


def compare(
    control: Moments,
    treatment: Moments,
    *,
    alpha: float = 0.05,
    planned_units: int = 10_000,
    min_units: int = 100,
    cuped: bool = False,
    horizon: int | None = None,
) -> Comparison:
    """Compare treatment with control on one metric, validly at any look.

    Args:
        control: the control arm's sums.
        treatment: the treatment arm's sums.
        alpha: the level: over all looks, the chance of ever rejecting a true null of no
            difference is at most ``alpha``, and each ``ci`` covers the true difference at every
            look with probability ``1 - alpha``.
        planned_units: units (both arms together) where the interval is tuned to be narrowest;
            any number of units remains valid, this only moves where the test is sharpest.
        min_units: units each arm needs before anything is concluded (the variance estimate
            and the normal approximation need a few units).
        cuped: adjust for the pre-period covariate in the sums (CUPED).
        horizon: the experiment's maximum units (both arms): use the horizon test, valid at
            any looks up to it and sharper there than the open-ended sequence; a look past it
            is read as the look at it (:class:`SequentialTest` stops at the first such look).
            ``planned_units`` is then unused.

    Returns:
        The comparison at this look.

    Raises:
        InvalidInput: a parameter out of range, or arms that are not Moments.
    """
    control = _check_moments(control, "control")
    treatment = _check_moments(treatment, "treatment")
    alpha, planned_units, min_units = _check_plan(alpha, planned_units, min_units)
    if horizon is not None:
        horizon = _check_int(horizon, "horizon", minimum=1)
    n_c, n_t = control.n, treatment.n
    theta = cuped_theta(control, treatment) if cuped else 0.0
    x_mean = (control.x_total + treatment.x_total) / (n_c + n_t) if n_c + n_t else 0.0
    mean_c, var_c = _adjusted(control, theta, x_mean)
    mean_t, var_t = _adjusted(treatment, theta, x_mean)
    d = mean_t - mean_c
    lift: float | None = None
    if math.isfinite(mean_c) and mean_c != 0.0 and math.isfinite(mean_t):
        lift = mean_t / mean_c - 1.0
    if n_c < min_units or n_t < min_units:
        return Comparison(
            control=control,
            treatment=treatment,
            control_mean=mean_c,
            treatment_mean=mean_t,
            difference=d,
            ci=(-math.inf, math.inf),
            lift=lift,
            lift_ci=None if lift is None else (-math.inf, math.inf),
            p_value=1.0,
            alpha=alpha,
            ready=False,
            horizon=horizon,
        )
    rho2 = _rho2(alpha, planned_units)
    n = n_c + n_t
    ci, p = _estimate_and_bounds(d, var_c / n_c + var_t / n_t, n, rho2, alpha, horizon)
    lift_ci: tuple[float, float] | None = None
    if lift is not None:
        # Delta method: Var(t/c) ~ Var(t)/c^2 + t^2 Var(c)/c^4.
        v_lift = (var_t / n_t) / mean_c**2 + mean_t**2 * (var_c / n_c) / mean_c**4
        lift_ci, _ = _estimate_and_bounds(lift, v_lift, n, rho2, alpha, horizon)
    return Comparison(
        control=control,
        treatment=treatment,
        control_mean=mean_c,
        treatment_mean=mean_t,
        difference=d,
        ci=ci,
        lift=lift,
        lift_ci=lift_ci,
        p_value=float(p),
        alpha=alpha,
        ready=True,
        horizon=horizon,
        final=horizon is not None and n >= horizon,
    )


def halfwidth(sd: float, n: int, *, alpha: float, planned_units: int) -> float:
    """Half-width of the always-valid (1 - alpha) sequence for a mean of ``n`` units.

    Args:
        sd: the per-unit standard deviation.
        n: units so far (>= 1).
        alpha: the level.
        planned_units: where the sequence is tuned to be narrowest.
    """
    sd = _check_number(sd, "sd", minimum=0.0)
    n = _check_int(n, "n", minimum=1)
    alpha = _check_alpha(alpha)
    planned_units = _check_int(planned_units, "planned_units", minimum=1)
    return float(_boundary(sd * sd / n, n, _rho2(alpha, planned_units), alpha))


def always_valid_p(
    estimate: float,
    sd: float,
    n: int,
    *,
    planned_units: int,
    null: float = 0.0,
    alpha: float = 0.05,
) -> float:
    """Always-valid p-value of a mean of ``n`` units against ``null``.

    Args:
        estimate: the observed mean.
        sd: the per-unit standard deviation.
        n: units so far (>= 1).
        planned_units: where the matching sequence is tuned to be narrowest.
        null: the hypothesised mean.
        alpha: the level the mixture is tuned for; at that level the p-value is under
            ``alpha`` exactly when ``null`` is outside ``estimate +- halfwidth(...)``.
    """
    estimate = _check_number(estimate, "estimate")
    sd = _check_number(sd, "sd", minimum=0.0)
    n = _check_int(n, "n", minimum=1)
    planned_units = _check_int(planned_units, "planned_units", minimum=1)
    null = _check_number(null, "null")
    alpha = _check_alpha(alpha)
    _, p = _estimate_and_bounds(estimate - null, sd * sd / n, n, _rho2(alpha, planned_units), alpha)
    return float(p)


def mean_sequence(
    m: Moments, *, alpha: float = 0.05, planned_units: int = 10_000, min_units: int = 30
) -> tuple[float, float, float]:
    """(mean, lo, hi): a one-sample always-valid sequence for one arm's mean (e.g. the share of
    shadow rows that agree with the primary); (nan, -inf, inf) below ``min_units``.

    A 0/1 metric's variance is floored (so 100 agreeing rows out of 100 do not give the
    interval (1, 1)) and its interval is clipped to [0, 1].
    """
    m = _check_moments(m, "m")
    alpha, planned_units, min_units = _check_plan(alpha, planned_units, min_units)
    if m.n < min_units:
        return math.nan, -math.inf, math.inf
    (lo, hi), _ = _estimate_and_bounds(
        m.mean, _metric_variance(m) / m.n, m.n, _rho2(alpha, planned_units), alpha
    )
    if m.binary:
        lo, hi = max(0.0, lo), min(1.0, hi)
    return m.mean, lo, hi


def fixed_horizon_test(control: Moments, treatment: Moments) -> float:
    """Welch t-test p-value of the difference of means: valid at one planned look only.

    What a naive dashboard shows; kept for comparing with the sequential test. 1.0 when an arm
    has fewer than 2 units; with both arms constant, 1.0 for equal means and 0.0 otherwise.
    """
    control = _check_moments(control, "control")
    treatment = _check_moments(treatment, "treatment")
    if control.n < 2 or treatment.n < 2:
        return 1.0
    var_c, var_t = control.variance, treatment.variance
    if var_c <= 0.0 and var_t <= 0.0:
        return 1.0 if control.mean == treatment.mean else 0.0
    return float(_welch_p(control.mean, var_c, control.n, treatment.mean, var_t, treatment.n))


def _intersect(old: tuple[float, float] | None, new: tuple[float, float]) -> tuple[float, float]:
    if old is None:
        return new
    lo, hi = max(old[0], new[0]), min(old[1], new[1])
    if lo > hi:
        # Disjoint intervals (probability <= alpha under the model): keep the point of the old
        # interval nearest the new one, so the running interval never widens.
        lo = hi = old[1] if new[0] > old[1] else old[0]
    return lo, hi


class SequentialTest:
    """Keeps what makes peeking safe across looks of one comparison: the running minimum of the
    p-value and the running intersection of the confidence sequences (both stay valid).

    Call :meth:`update` with the cumulative sums at each look; the result's p-value never rises
    and its intervals never widen. With a ``horizon`` it is the horizon test, and the first look
    at or past the horizon is its last: later looks return that result unchanged.
    """

    def __init__(
        self,
        *,
        alpha: float = 0.05,
        planned_units: int = 10_000,
        min_units: int = 100,
        cuped: bool = False,
        horizon: int | None = None,
    ) -> None:
        self.alpha, self.planned_units, self.min_units = _check_plan(
            alpha, planned_units, min_units
        )
        self.horizon = None if horizon is None else _check_int(horizon, "horizon", minimum=1)
        self.cuped = bool(cuped)
        self.reset()

    def reset(self) -> None:
        """Forget every look (e.g. when the experiment restarts with new sums)."""
        self._p = 1.0
        self._ci: tuple[float, float] | None = None
        self._lift_ci: tuple[float, float] | None = None
        self._final: Comparison | None = None
        self.looks = 0

    def update(self, control: Moments, treatment: Moments) -> Comparison:
        """The comparison at this look, with p = the running minimum and ci/lift_ci = the
        running intersections.

        Args:
            control: the control arm's cumulative sums.
            treatment: the treatment arm's cumulative sums.
        """
        if self._final is not None:
            return self._final
        now = compare(
            control,
            treatment,
            alpha=self.alpha,
            planned_units=self.planned_units,
            min_units=self.min_units,
            cuped=self.cuped,
            horizon=self.horizon,
        )
        self.looks += 1
        if not now.ready:
            return now
        self._p = min(self._p, now.p_value)
        self._ci = _intersect(self._ci, now.ci)
        lift_ci = now.lift_ci
        if lift_ci is not None:
            self._lift_ci = _intersect(self._lift_ci, lift_ci)
            lift_ci = self._lift_ci
        result = Comparison(
            control=now.control,
            treatment=now.treatment,
            control_mean=now.control_mean,
            treatment_mean=now.treatment_mean,
            difference=now.difference,
            ci=self._ci,
            lift=now.lift,
            lift_ci=lift_ci,
            p_value=self._p,
            alpha=now.alpha,
            ready=True,
            horizon=self.horizon,
            final=now.final,
        )
        if now.final:
            self._final = result
        return result


# --------------------------------------------------------------------------------------------
# Sample-ratio mismatch


@dataclass(frozen=True)
class SrmResult:
    """The sequential sample-ratio-mismatch test at one look."""

    counts: tuple[int, ...]
    expected: tuple[float, ...]
    """Expected shares, summing to 1."""
    bayes_factor: float
    """Evidence of a mismatch at this look (Dirichlet-multinomial mixture against the
    expected multinomial)."""
    p_value: float
    """Always-valid: min(1, 1 / the largest Bayes factor so far)."""
    flagged: bool
    """p_value < alpha: the units are not split as configured."""
    alpha: float

    def to_dict(self) -> dict[str, Any]:
        """The result as plain JSON types; an infinite Bayes factor as None."""
        return {
            "counts": list(self.counts),
            "expected": list(self.expected),
            "bayes_factor": _finite_or_none(self.bayes_factor),
            "p_value": self.p_value,
            "flagged": self.flagged,
            "alpha": self.alpha,
        }


def _shares(expected: object) -> tuple[tuple[str, ...] | None, np.ndarray]:
    """(names or None, shares summing to 1) of expected weights, a mapping or a sequence."""
    names: tuple[str, ...] | None = None
    values: object = expected
    if isinstance(expected, Mapping):
        names = tuple(str(k) for k in expected)
        values = list(expected.values())
    if isinstance(values, str | bytes) or not isinstance(values, Sequence | np.ndarray):
        raise _fail("expected", "a sequence or mapping of positive weights", expected)
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise _fail("expected", "positive numbers", expected) from exc
    if arr.ndim != 1 or len(arr) < 2 or not np.all(np.isfinite(arr)) or np.any(arr <= 0.0):
        raise _fail(
            "expected",
            "at least 2 positive weights (e.g. {'control': 50, 'treatment': 50})",
            expected,
        )
    return names, arr / arr.sum()


def _counts(counts: object, names: tuple[str, ...] | None, k: int) -> np.ndarray:
    values: object = counts
    if isinstance(counts, Mapping):
        by_name = {str(key): value for key, value in counts.items()}
        if names is None or set(by_name) != set(names):
            raise _fail(
                "counts", f"one count per arm of expected ({', '.join(names or ())})", counts
            )
        values = [by_name[name] for name in names]
    if isinstance(values, str | bytes) or not isinstance(values, Sequence | np.ndarray):
        raise _fail("counts", f"{k} unit counts", counts)
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise _fail("counts", f"{k} whole numbers >= 0", counts) from exc
    if arr.shape != (k,):
        raise _fail("counts", f"{k} unit counts (one per expected share)", counts)
    if not np.all(np.isfinite(arr)) or np.any(arr < 0) or np.any(arr != np.round(arr)):
        raise _fail("counts", "whole numbers >= 0", counts)
    return arr


def _check_concentration(concentration: object) -> float:
    value = _check_number(concentration, "concentration", minimum=0.0)
    if value == 0.0:
        raise _fail("concentration", "a finite number > 0", concentration)
    return value


def _srm_log_bf(counts: Any, shares: np.ndarray, concentration: float) -> Any:
    """Log Bayes factor of a Dirichlet(concentration * shares) mixture of multinomials against
    the multinomial with ``shares``; ``counts`` has the arms on its last axis (floats or arrays).
    """
    prior = concentration * shares
    total = np.sum(counts, axis=-1)
    log_mixture = (
        gammaln(concentration)
        - gammaln(concentration + total)
        + np.sum(gammaln(prior + counts) - gammaln(prior), axis=-1)
    )
    return log_mixture - np.sum(counts * np.log(shares), axis=-1)


def srm_bayes_factor(
    counts: Sequence[float] | npt.ArrayLike | Mapping[str, float],
    expected: Sequence[float] | npt.ArrayLike | Mapping[str, float],
    *,
    concentration: float = DEFAULT_SRM_CONCENTRATION,
) -> float:
    """Bayes factor of a sample-ratio mismatch: units ``counts`` against the ``expected`` split.

    The alternative is a Dirichlet mixture of multinomials centred on the expected shares
    (Lindon and Malek 2022); the multinomial coefficient cancels. Under the expected split the
    factor is a martingale in the units, so it exceeds ``1 / alpha`` with probability at most
    ``alpha``, ever.

    Args:
        counts: units seen per arm (a sequence, or a mapping with the same keys as expected).
        expected: the configured split, as weights (normalised to shares).
        concentration: the Dirichlet's total concentration (larger: tuned to smaller mismatches).
    """
    names, shares = _shares(expected)
    arr = _counts(counts, names, len(shares))
    conc = _check_concentration(concentration)
    log_bf = float(_srm_log_bf(arr, shares, conc))
    return math.exp(log_bf) if log_bf < 709.0 else math.inf


class SequentialSrm:
    """The sequential sample-ratio-mismatch test: expected shares (e.g. split
    {control: 50, treatment: 50}) against unit counts seen so far.

    Call :meth:`update` with the cumulative unit counts at each look, as often as wanted.
    """

    def __init__(
        self,
        expected: Sequence[float] | npt.ArrayLike | Mapping[str, float],
        *,
        alpha: float = DEFAULT_SRM_ALPHA,
        concentration: float = DEFAULT_SRM_CONCENTRATION,
    ) -> None:
        self.names, self.shares = _shares(expected)
        self.alpha = _check_alpha(alpha)
        self.concentration = _check_concentration(concentration)
        self.reset()

    def reset(self) -> None:
        """Forget every look (e.g. when the split changes and counting restarts)."""
        self._max_log_bf = -math.inf
        self._last: np.ndarray | None = None

    def update(self, counts: Sequence[float] | npt.ArrayLike | Mapping[str, float]) -> SrmResult:
        """The test at this look.

        Args:
            counts: cumulative units per arm, in the order (or with the keys) of ``expected``.

        Raises:
            InvalidInput: counts of the wrong shape, negative, or lower than at the last look.
        """
        arr = _counts(counts, self.names, len(self.shares))
        if self._last is not None and np.any(arr < self._last):
            raise _fail(
                "counts",
                f"cumulative (no arm below its last count {self._last.astype(int).tolist()}; "
                "call reset() to restart)",
                arr.astype(int).tolist(),
            )
        self._last = arr
        log_bf = float(_srm_log_bf(arr, self.shares, self.concentration))
        self._max_log_bf = max(self._max_log_bf, log_bf)
        p = min(1.0, math.exp(-self._max_log_bf)) if self._max_log_bf > -709.0 else 1.0
        return SrmResult(
            counts=tuple(int(c) for c in arr),
            expected=tuple(float(s) for s in self.shares),
            bayes_factor=math.exp(log_bf) if log_bf < 709.0 else math.inf,
            p_value=p,
            flagged=p < self.alpha,
            alpha=self.alpha,
        )
