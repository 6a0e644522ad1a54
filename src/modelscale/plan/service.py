"""The performance model: how long one batch takes, as a function of its size and the thread count.

A batch of ``n`` items on ``T`` intra-op threads is modelled as

    S(n, T) = a_serial + a_parallel / T + n * (b_serial + b_parallel / T)     (milliseconds)

a fixed cost and a per-item cost, each split Amdahl-style into a part threads do not speed up and a
part they divide. It is linear in its four coefficients, so it is fitted by (robust, non-negative)
least squares on relative errors from profile points; synthetic linear service times come back
exactly. With one measured thread count the split cannot be identified: the model then keeps that
thread count only. Thread counts above the largest measured one, and batches above the largest
measured batch, are extrapolations and are marked as such by ``extrapolated()``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.optimize import least_squares

from modelscale.errors import InvalidInput, invalid_parameter

__all__ = ["ServiceModel", "ServicePoint", "fit_service_model", "points_from_profile"]

# A p99/p50 spread this wide on an idle core is interference from other processes, not the model;
# capping the variability keeps one noisy profile point from turning every plan pessimistic.
_MAX_SCV = 1.0
_Z99 = 2.326


@dataclass(frozen=True)
class ServicePoint:
    """One measured batch: its size, thread count and latency statistics (ms)."""

    batch: int
    threads: int
    mean_ms: float
    p50_ms: float | None = None
    p99_ms: float | None = None

    @property
    def scv(self) -> float:
        """Squared coefficient of variation, estimated from the p50-p99 spread (normal shape)."""
        if self.p50_ms is None or self.p99_ms is None or self.mean_ms <= 0:
            return 0.0
        sd = max(self.p99_ms - self.p50_ms, 0.0) / _Z99
        return min((sd / self.mean_ms) ** 2, _MAX_SCV)


@dataclass(frozen=True)
class ServiceModel:
    """Fitted batch service time ``S(n, T)`` in milliseconds, with where it came from.

    Attributes:
        a_serial_ms: Fixed cost per batch that threads do not divide.
        a_parallel_ms: Fixed cost per batch that ``T`` threads divide by ``T``.
        b_serial_ms: Per-item cost that threads do not divide.
        b_parallel_ms: Per-item cost that threads divide.
        scv: Squared coefficient of variation of a batch's service time (median over points).
        measured_threads: Thread counts in the profile.
        measured_batches: Batch sizes in the profile.
        max_rel_residual: Largest |fit - measured| / measured over the points.
        source: Where the points came from (a knowledge-base run, a fresh measurement, synthetic).
        points: The points the fit used.
        core_factor: Per-core speed relative to the machine the points were measured on.
    """

    a_serial_ms: float
    a_parallel_ms: float
    b_serial_ms: float
    b_parallel_ms: float
    scv: float
    measured_threads: tuple[int, ...]
    measured_batches: tuple[int, ...]
    max_rel_residual: float
    source: str
    points: tuple[ServicePoint, ...] = ()
    core_factor: float = 1.0

    def time_ms(self, batch: int | np.ndarray, threads: int) -> Any:
        """Mean service time of a batch of ``batch`` items on ``threads`` threads (ms)."""
        t = float(threads)
        fixed = self.a_serial_ms + self.a_parallel_ms / t
        per_item = self.b_serial_ms + self.b_parallel_ms / t
        return (fixed + np.asarray(batch, dtype=float) * per_item) / self.core_factor

    def batch_times_ms(self, max_batch: int, threads: int) -> np.ndarray:
        """``S(n, threads)`` for n = 1..max_batch, as an array indexed by ``n - 1``."""
        return np.asarray(self.time_ms(np.arange(1, max_batch + 1), threads), dtype=float)

    def supports_threads(self, threads: int) -> bool:
        """Whether the model can say anything about ``threads`` (one measured count: only it)."""
        if len(self.measured_threads) >= 2:
            return True
        return threads in self.measured_threads

    def extrapolated(self, *, batch: int, threads: int) -> bool:
        """True when ``batch`` or ``threads`` lie beyond what was measured, or the CPU differs."""
        return (
            threads > max(self.measured_threads)
            or batch > max(self.measured_batches)
            or self.core_factor != 1.0
        )

    def with_core_factor(self, factor: float) -> ServiceModel:
        """The same model on a CPU whose cores are ``factor`` times as fast (an assumption)."""
        if not (isinstance(factor, int | float) and math.isfinite(factor) and factor > 0):
            raise invalid_parameter("core_factor", "a number > 0", factor, where="plan")
        return dataclasses.replace(self, core_factor=float(factor))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (points included)."""
        return dataclasses.asdict(self)


def points_from_profile(
    points: Iterable[Mapping[str, Any] | Any], *, dims: Mapping[str, int] | None = None
) -> list[ServicePoint]:
    """Service points from profile sweep points (``SweepPoint`` objects or their stored dicts).

    Only points whose dims equal ``dims`` are kept, so a profile swept over several sequence
    lengths yields the points of one of them.
    """
    want = dict(dims or {})
    out = []
    for p in points:
        get: Any = p.get if isinstance(p, Mapping) else (lambda k, _p=p: getattr(_p, k, None))
        if dict(get("dims") or {}) != want:
            continue
        mean = get("mean_ms")
        if mean is None or not math.isfinite(float(mean)) or float(mean) <= 0:
            continue
        out.append(
            ServicePoint(
                batch=int(get("batch")),
                threads=int(get("threads")),
                mean_ms=float(mean),
                p50_ms=_float_or_none(get("p50_ms")),
                p99_ms=_float_or_none(get("p99_ms")),
            )
        )
    return out


def _float_or_none(value: Any) -> float | None:
    return None if value is None else float(value)


def fit_service_model(
    points: Sequence[ServicePoint], *, source: str = "profile points"
) -> ServiceModel:
    """Fit ``S(n, T)`` to measured points (relative least squares, non-negative, outlier-robust).

    Args:
        points: At least two batch sizes for at least one thread count.
        source: A note of where the points came from, kept with the model.
    """
    pts = [p for p in points if p.mean_ms > 0 and p.batch >= 1 and p.threads >= 1]
    batches = sorted({p.batch for p in pts})
    threads = sorted({p.threads for p in pts})
    if len(batches) < 2:
        raise InvalidInput(
            "Fitting the service time needs profile points at two or more batch sizes; got "
            f"{batches or 'none'}. Profile the model at more batch sizes, e.g. 'batches' 1,4,16.",
            field="profile",
        )
    n = np.array([p.batch for p in pts], dtype=float)
    inv_t = np.array([1.0 / p.threads for p in pts])
    y = np.array([p.mean_ms for p in pts])
    if len(threads) >= 2:
        design = np.column_stack([np.ones_like(n), inv_t, n, n * inv_t])
    else:
        # One thread count: the serial/parallel split is not identified; keep it all "serial"
        # and let supports_threads() restrict planning to the measured count.
        design = np.column_stack([np.ones_like(n), n])
    coef = _robust_nonneg_fit(design, y)
    if len(threads) < 2:
        coef = np.array([coef[0], 0.0, coef[1], 0.0])
    fitted = np.column_stack([np.ones_like(n), inv_t, n, n * inv_t]) @ coef
    residual = float(np.max(np.abs(fitted - y) / y))
    scvs = [p.scv for p in pts]
    return ServiceModel(
        a_serial_ms=float(coef[0]),
        a_parallel_ms=float(coef[1]),
        b_serial_ms=float(coef[2]),
        b_parallel_ms=float(coef[3]),
        scv=float(np.median(scvs)) if scvs else 0.0,
        measured_threads=tuple(threads),
        measured_batches=tuple(batches),
        max_rel_residual=residual,
        source=source,
        points=tuple(sorted(pts, key=lambda p: (p.threads, p.batch))),
    )


def _robust_nonneg_fit(design: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Least squares on relative residuals with coefficients >= 0 and a soft-L1 loss.

    Relative residuals weigh a 0.1 ms batch as much as a 200 ms one; soft-L1 with a 5% scale lets
    one point disturbed by another process pull the fit far less than squares would.
    """
    scaled = design / y[:, None]
    start, *_ = np.linalg.lstsq(scaled, np.ones_like(y), rcond=None)
    start = np.clip(start, 0.0, None) + 1e-9

    def residuals(c: np.ndarray) -> np.ndarray:
        return scaled @ c - 1.0

    fit = least_squares(
        residuals,
        start,
        bounds=(0.0, np.inf),
        loss="soft_l1",
        f_scale=0.05,
        x_scale="jac",
        xtol=1e-12,
        ftol=1e-12,
        gtol=1e-12,
    )
    return np.asarray(fit.x, dtype=float)
