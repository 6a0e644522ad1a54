"""Metrics as per-example statistics, and the paired bootstrap of a metric's change.

Every metric is a mean of per-example statistics passed through a reducer: accuracy is the mean of
0/1 hits, RMSE the square root of the mean squared error, macro F1 a function of the mean
true-positive, false-positive and false-negative indicators per class. That shape makes the paired
bootstrap cheap: a resample is a vector of counts, and one matrix product gives every resample's
means at once.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np

from modelscale.errors import InvalidInput, invalid_parameter

__all__ = [
    "METRICS",
    "Metric",
    "MetricFn",
    "bootstrap_change",
    "get_metric",
    "metric_value",
]

MetricFn = Callable[[np.ndarray, np.ndarray], object]
"""A user metric: ``fn(outputs, target)`` returning a float, or one score per example."""

Task = Literal["classification", "regression", "fidelity", "custom"]

_EPS = 1e-12


@dataclass(frozen=True)
class Metric:
    """How to score outputs against a target (labels, or the original model's outputs)."""

    name: str
    task: Task
    higher_is_better: bool
    stats: Callable[[np.ndarray, np.ndarray], np.ndarray]
    """Per-example statistics, shape [N, K]."""
    reduce: Callable[[np.ndarray], np.ndarray]
    """Means of the statistics, shape [..., K], to metric values, shape [...]."""
    fn: MetricFn | None = None
    """A user callable behind ``stats``; one that gives a single number is recomputed on every
    resample instead of being averaged."""

    def value(self, outputs: np.ndarray, target: np.ndarray) -> float:
        """The metric of ``outputs`` against ``target`` on the whole set."""
        return metric_value(self, self.stats(outputs, target))

    def per_example(self, outputs: np.ndarray, target: np.ndarray) -> bool:
        """Whether the metric is a mean of per-example statistics (so it bootstraps by counts)."""
        if self.fn is None:
            return True
        return np.ndim(np.asarray(self.fn(outputs, target))) == 1


def metric_value(metric: Metric, stats: np.ndarray) -> float:
    """The metric's value from per-example statistics."""
    return float(metric.reduce(stats.mean(axis=0)))


def _identity(means: np.ndarray) -> np.ndarray:
    return means[..., 0]


def _as_2d(x: np.ndarray) -> np.ndarray:
    return x.reshape(len(x), -1).astype(np.float64, copy=False)


def _accuracy(outputs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    return (_as_2d(outputs).argmax(axis=1) == labels.reshape(-1)).astype(np.float64)[:, None]


def _top5(outputs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    scores = _as_2d(outputs)
    k = min(5, scores.shape[1])
    top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    return (top == labels.reshape(-1, 1)).any(axis=1).astype(np.float64)[:, None]


def _f1_stats(outputs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    scores = _as_2d(outputs)
    classes = scores.shape[1]
    pred = scores.argmax(axis=1)
    y = labels.reshape(-1).astype(np.int64)
    eye = np.eye(classes)
    hit = (pred == y)[:, None]
    tp = eye[y] * hit
    fp = eye[pred] * ~hit
    fn = eye[y] * ~hit
    return np.concatenate([tp, fp, fn], axis=1)


def _f1_reduce(means: np.ndarray) -> np.ndarray:
    tp, fp, fn = np.split(means, 3, axis=-1)
    support = tp + fn
    denom = 2 * tp + fp + fn
    f1 = np.where(denom > 0, 2 * tp / np.maximum(denom, _EPS), 0.0)
    # Macro F1 over the classes present in the labels, as scikit-learn's labels=unique(y) does.
    present = support > 0
    return np.asarray((f1 * present).sum(axis=-1) / np.maximum(present.sum(axis=-1), 1))


def _abs_err(outputs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    return np.abs(_as_2d(outputs) - _as_2d(labels)).mean(axis=1)[:, None]


def _sq_err(outputs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    return ((_as_2d(outputs) - _as_2d(labels)) ** 2).mean(axis=1)[:, None]


def _sqrt(means: np.ndarray) -> np.ndarray:
    return np.sqrt(means[..., 0])


def _cosine(outputs: np.ndarray, reference: np.ndarray) -> np.ndarray:
    a, b = _as_2d(outputs), _as_2d(reference)
    num = (a * b).sum(axis=1)
    den = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    # Two all-zero rows are identical; one zero row against a non-zero one shares no direction.
    same = np.all(a == b, axis=1)
    return np.where(den > 0, num / np.maximum(den, _EPS), np.where(same, 1.0, 0.0))[:, None]


def _agreement(outputs: np.ndarray, reference: np.ndarray) -> np.ndarray:
    return (_as_2d(outputs).argmax(axis=1) == _as_2d(reference).argmax(axis=1)).astype(np.float64)[
        :, None
    ]


METRICS: dict[str, Metric] = {
    "accuracy": Metric("accuracy", "classification", True, _accuracy, _identity),
    "top5": Metric("top5", "classification", True, _top5, _identity),
    "f1": Metric("f1", "classification", True, _f1_stats, _f1_reduce),
    "mae": Metric("mae", "regression", False, _abs_err, _identity),
    "rmse": Metric("rmse", "regression", False, _sq_err, _sqrt),
    "cosine": Metric("cosine", "fidelity", True, _cosine, _identity),
    "agreement": Metric("agreement", "fidelity", True, _agreement, _identity),
}
"""Built-in metrics by name. Fidelity metrics compare against the original model's outputs."""


def _custom(fn: MetricFn, *, higher_is_better: bool) -> Metric:
    name = getattr(fn, "__name__", None) or type(fn).__name__

    def stats(outputs: np.ndarray, target: np.ndarray) -> np.ndarray:
        scores = np.asarray(fn(outputs, target), dtype=np.float64)
        if scores.ndim == 1 and len(scores) == len(outputs):
            return scores[:, None]
        if scores.ndim == 0:
            return np.full((len(outputs), 1), float(scores))
        raise InvalidInput(
            f"The metric {name!r} returned an array of shape {list(scores.shape)}; expected a "
            f"number or one score per example ({len(outputs)}).",
            field="metric",
        )

    return Metric(name, "custom", higher_is_better, stats, _identity, fn=fn)


def get_metric(metric: str | MetricFn | Metric, *, higher_is_better: bool = True) -> Metric:
    """Resolve a metric name (one of ``METRICS``), a ``Metric``, or a callable."""
    if isinstance(metric, Metric):
        return metric
    if isinstance(metric, str):
        if metric not in METRICS:
            raise invalid_parameter(
                "metric", f"one of {', '.join(METRICS)} or a callable", metric, where="compress"
            )
        return METRICS[metric]
    if callable(metric):
        try:
            inspect.signature(metric).bind(None, None)
        except (TypeError, ValueError):
            raise invalid_parameter(
                "metric", "a callable taking (outputs, target)", metric, where="compress"
            ) from None
        return _custom(metric, higher_is_better=higher_is_better)
    raise invalid_parameter(
        "metric", f"one of {', '.join(METRICS)} or a callable", metric, where="compress"
    )


def bootstrap_change(
    metric: Metric,
    base: tuple[np.ndarray, np.ndarray],
    cand: tuple[np.ndarray, np.ndarray],
    *,
    resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[float, float, float]:
    """Paired bootstrap of the change ``metric(cand) - metric(base)`` on the same examples.

    Args:
        metric: The metric.
        base: ``(outputs, target)`` of the original model.
        cand: ``(outputs, target)`` of the candidate (same examples, same order).
        resamples: Bootstrap resamples.
        confidence: Level of the percentile interval.
        seed: Seed of the resampling generator; the same seed gives the same interval.

    Returns:
        ``(change, low, high)``: the change on the whole set and its interval.
    """
    n = len(base[0])
    change = metric.value(*cand) - metric.value(*base)
    if n < 2 or resamples < 1:
        return change, change, change
    rng = np.random.default_rng(seed)
    alpha = (1 - confidence) / 2
    if not metric.per_example(*base):
        diffs = np.empty(resamples)
        for i in range(resamples):
            idx = rng.integers(0, n, n)
            diffs[i] = metric.value(cand[0][idx], cand[1][idx]) - metric.value(
                base[0][idx], base[1][idx]
            )
    else:
        s_base, s_cand = metric.stats(*base), metric.stats(*cand)
        # Counts of each example per resample: the same counts for both models make it paired.
        counts = rng.multinomial(n, np.full(n, 1.0 / n), size=resamples).astype(np.float64)
        diffs = metric.reduce(counts @ s_cand / n) - metric.reduce(counts @ s_base / n)
    lo, hi = np.quantile(diffs, [alpha, 1 - alpha])
    return float(change), float(lo), float(hi)
