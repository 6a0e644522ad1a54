"""How accurate a deployed model is: measured where labels came back, estimated where they did not.

Ground-truth labels arrive for some logged predictions ("feedback"). On those rows
``realized_metric`` gives the exact metric (the very number scikit-learn gives) and a percentile
bootstrap interval. For the rest, ``ConfidenceCalibration`` estimates accuracy without labels in
the manner of NannyML's confidence-based performance estimation (CBPE): on a labelled reference
set it learns a monotone map from the model's top-class probability to the chance that the
prediction is right, and the estimate for a window of traffic is the mean of that chance over
the window's rows, with an interval that counts both the luck of the window and the doubt in the
map itself.

CBPE assumes the map still holds on the new traffic: a shift of the inputs (noise, blur, a new
camera) that moves the model's confidence along with its accuracy is estimated well; a change of
what the labels mean (concept shift: two classes swapped, a new definition) is not, because the
model stays just as confident while it becomes wrong. Feedback labels are the check on that.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from modelscale.errors import InvalidInput

__all__ = [
    "CBPE_METHOD",
    "DEFAULT_DRAWS",
    "METRICS",
    "MIN_REFERENCE_ROWS",
    "ConfidenceCalibration",
    "Estimate",
    "MetricCI",
    "realized_metric",
    "softmax_top",
]

METRICS = ("accuracy", "f1", "mae")
"""Metrics ``realized_metric`` computes; f1 is macro F1 over the classes present in labels or
predictions (scikit-learn's ``f1_score(average="macro")``)."""

MIN_REFERENCE_ROWS = 50
"""Fewest labelled reference rows a calibration is fitted on: below that the map is mostly noise."""

DEFAULT_DRAWS = 200
"""Posterior draws of the calibration map behind its uncertainty curve."""

CBPE_METHOD = "confidence-based estimate (CBPE)"

_CLASSIFIER_METRICS = frozenset({"accuracy", "f1"})
# Bootstrap work is done in chunks of at most this many array elements, so a window of a million
# rows does not ask for a [1000, 1_000_000] index array (8 GB) at once.
_CHUNK_ELEMENTS = 1 << 22
_PROB_TOLERANCE = 1e-3
_FORMAT_VERSION = 1


@dataclass(frozen=True)
class MetricCI:
    """A metric measured on labelled rows, with its interval (Wilson's for accuracy, a
    percentile bootstrap for F1 and MAE).

    Attributes:
        metric: One of ``METRICS``.
        value: The metric on exactly these rows.
        lo: Lower end of the interval.
        hi: Upper end of the interval.
        n: Rows it was measured on.
        level: Coverage the interval aims at, e.g. 0.95.
    """

    metric: str
    value: float
    lo: float
    hi: float
    n: int
    level: float

    def to_dict(self) -> dict[str, Any]:
        """The fields as plain JSON types."""
        return asdict(self)


@dataclass(frozen=True)
class Estimate:
    """Accuracy estimated without labels, with an interval.

    Attributes:
        value: Estimated accuracy of the window: the mean calibrated P(correct) of its rows.
        lo: Lower end of the interval.
        hi: Upper end of the interval.
        n: Rows in the window.
        level: Coverage the interval aims at, e.g. 0.95.
        method: How it was estimated, for whoever reads the number later.
    """

    value: float
    lo: float
    hi: float
    n: int
    level: float
    method: str = CBPE_METHOD

    def to_dict(self) -> dict[str, Any]:
        """The fields as plain JSON types."""
        return asdict(self)


# --------------------------------------------------------------------------------------------
# Input checks


def _check_level(level: object) -> float:
    if isinstance(level, bool) or not isinstance(level, int | float) or not 0.0 < level < 1.0:
        raise InvalidInput(
            f"level must be a number between 0 and 1 (exclusive), e.g. 0.95; got {level!r}",
            field="level",
        )
    return float(level)


def _check_int(value: object, name: str, *, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise InvalidInput(f"{name} must be a whole number >= {minimum}; got {value!r}", field=name)
    return int(value)


def _vector(values: npt.ArrayLike, name: str) -> np.ndarray:
    """``values`` as a 1-D float64 array; InvalidInput if it is not one."""
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InvalidInput(
            f"{name} must be a 1-D array of numbers; got values that are not numbers ({exc})",
            field=name,
        ) from exc
    if arr.ndim != 1:
        raise InvalidInput(
            f"{name} must be a 1-D array of numbers (one per row); got an array of shape "
            f"{arr.shape}",
            field=name,
        )
    return arr


def _first_bad(mask: np.ndarray) -> int:
    return int(np.flatnonzero(mask)[0])


def _check_finite(arr: np.ndarray, name: str) -> None:
    bad = ~np.isfinite(arr)
    if bad.any():
        row = _first_bad(bad)
        raise InvalidInput(
            f"{name} must be finite numbers (no NaN or infinity); got {arr[row]} at row {row}",
            field=name,
        )


def _check_whole(arr: np.ndarray, name: str, hint: str = "") -> None:
    bad = arr != np.round(arr)
    if bad.any():
        row = _first_bad(bad)
        raise InvalidInput(
            f"{name} must be whole numbers for a classifier; got {arr[row]:g} at row {row}{hint}",
            field=name,
        )


def _check_probabilities(arr: np.ndarray, name: str) -> None:
    _check_finite(arr, name)
    bad = (arr < 0.0) | (arr > 1.0)
    if bad.any():
        row = _first_bad(bad)
        raise InvalidInput(
            f"{name} must be top-class probabilities in [0, 1]; got {arr[row]:g} at row {row} "
            "(pass softmax_top(logits)[1], not logits)",
            field=name,
        )


# --------------------------------------------------------------------------------------------
# Realized metrics on labelled rows


def _bootstrap_means(per_row: np.ndarray, resamples: int, rng: np.random.Generator) -> np.ndarray:
    """Means of ``per_row`` over ``resamples`` resamples of its rows with replacement."""
    n = len(per_row)
    out = np.empty(resamples)
    step = max(1, _CHUNK_ELEMENTS // n)
    for start in range(0, resamples, step):
        stop = min(resamples, start + step)
        idx = rng.integers(0, n, size=(stop - start, n))
        out[start:stop] = per_row[idx].mean(axis=1)
    return out


def _bootstrap_macro_f1(
    labels: np.ndarray, predictions: np.ndarray, resamples: int, rng: np.random.Generator
) -> np.ndarray:
    """Macro F1 of each of ``resamples`` resamples, over the classes present in that resample.

    Per class and resample it counts true, predicted and correctly predicted rows with one
    ``bincount`` per chunk (offset by resample), so it costs O(resamples x (rows + classes)).
    """
    n = len(labels)
    codes = np.unique(np.concatenate([labels, predictions]), return_inverse=True)[1]
    true_code, pred_code = codes[:n], codes[n:]
    hit = (true_code == pred_code).astype(np.float64)
    k = int(codes.max()) + 1
    out = np.empty(resamples)
    step = max(1, _CHUNK_ELEMENTS // (n + k))
    for start in range(0, resamples, step):
        stop = min(resamples, start + step)
        r = stop - start
        idx = rng.integers(0, n, size=(r, n))
        offset = (np.arange(r) * k)[:, None]
        size = r * k
        n_true = np.bincount((offset + true_code[idx]).ravel(), minlength=size).reshape(r, k)
        n_pred = np.bincount((offset + pred_code[idx]).ravel(), minlength=size).reshape(r, k)
        tp = np.bincount(
            (offset + true_code[idx]).ravel(), weights=hit[idx].ravel(), minlength=size
        ).reshape(r, k)
        denom = n_true + n_pred
        present = denom > 0
        # F1 = 2TP / (2TP + FP + FN) = 2TP / (true + predicted), as scikit-learn computes it.
        f1 = np.divide(2.0 * tp, denom, out=np.zeros_like(tp), where=present)
        out[start:stop] = f1.sum(axis=1) / present.sum(axis=1)
    return out


def realized_metric(
    predictions: npt.ArrayLike,
    labels: npt.ArrayLike,
    *,
    metric: str = "accuracy",
    level: float = 0.95,
    resamples: int = 1000,
    seed: int = 0,
) -> MetricCI:
    """Measure a metric on the rows that have labels, with an interval: Wilson's score interval
    for accuracy, a percentile bootstrap for F1 and MAE.

    ``value`` is exactly what scikit-learn gives on these rows (``accuracy_score``,
    ``f1_score(average="macro")``, ``mean_absolute_error``). The interval resamples the rows with
    replacement ``resamples`` times (one ``[resamples, n]`` index array, in chunks when that would
    be large) and takes the ``(1 - level) / 2`` and ``(1 + level) / 2`` quantiles of the metric
    over the resamples; it is widened to contain ``value`` in the rare case bootstrap skew leaves
    it outside (macro F1 on few rows). With one row every resample is that row, so
    ``lo == hi == value``: a single label says nothing about spread.

    Args:
        predictions: Predicted class ids (accuracy, f1) or predicted values (mae), one per row.
        labels: True class ids or values, one per row.
        metric: One of ``METRICS``.
        level: Coverage the interval aims at, in (0, 1).
        resamples: Bootstrap resamples.
        seed: Seed of the resampling, so the interval is reproducible.

    Returns:
        The metric, its interval and the number of rows.

    Raises:
        InvalidInput: An unknown metric, a bad level or resample count, arrays of different
            lengths, no rows, non-finite values, or class ids that are not whole numbers.
    """
    if metric not in METRICS:
        raise InvalidInput(
            f"metric must be one of {', '.join(METRICS)}; got {metric!r}", field="metric"
        )
    level = _check_level(level)
    resamples = _check_int(resamples, "resamples", minimum=1)
    seed = _check_int(seed, "seed", minimum=0)
    pred = _vector(predictions, "predictions")
    true = _vector(labels, "labels")
    if len(pred) != len(true):
        raise InvalidInput(
            f"predictions and labels must have one entry per row each; got {len(pred)} "
            f"predictions and {len(true)} labels",
            field="labels",
        )
    if len(true) == 0:
        raise InvalidInput(f"{metric} needs at least one labelled row; got 0 rows", field="labels")
    _check_finite(true, "labels")
    _check_finite(pred, "predictions")

    from sklearn.metrics import accuracy_score, f1_score, mean_absolute_error

    rng = np.random.default_rng(seed)
    if metric in _CLASSIFIER_METRICS:
        _check_whole(true, "labels")
        _check_whole(pred, "predictions", " (pass the predicted class, not its probability)")
        true_ids, pred_ids = true.astype(np.int64), pred.astype(np.int64)
        if metric == "accuracy":
            value = float(accuracy_score(true_ids, pred_ids))
            # Wilson's score interval, not the bootstrap: a sample with no error (60 labels of a
            # 98%-accurate model often has none) makes every resample perfect and the bootstrap
            # interval [1, 1]; measured on digits with 30% feedback, the bootstrap covered the
            # full-feedback accuracy in 83.5% of windows and Wilson's in 98%.
            lo, hi = _wilson(int((true_ids == pred_ids).sum()), len(true_ids), level)
            return MetricCI(metric, value, min(lo, value), max(hi, value), len(true_ids), level)
        else:
            value = float(f1_score(true_ids, pred_ids, average="macro"))
            boot = _bootstrap_macro_f1(true_ids, pred_ids, resamples, rng)
    else:
        value = float(mean_absolute_error(true, pred))
        boot = _bootstrap_means(np.abs(pred - true), resamples, rng)

    alpha = 1.0 - level
    lo, hi = np.quantile(boot, [alpha / 2.0, 1.0 - alpha / 2.0])
    return MetricCI(
        metric=metric,
        value=value,
        lo=min(float(lo), value),
        hi=max(float(hi), value),
        n=len(true),
        level=level,
    )


def _wilson(k: int, n: int, level: float) -> tuple[float, float]:
    from scipy.stats import norm

    z = float(norm.ppf(0.5 + level / 2.0))
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, float(centre - half)), min(1.0, float(centre + half))


# --------------------------------------------------------------------------------------------
# Scores from model outputs


def softmax_top(logits_or_probs: npt.ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """The top class and its probability per row, from logits or from probabilities.

    The array counts as probabilities when every entry is non-negative and every row sums to 1
    within 1e-3 (rows are then renormalised to sum to exactly 1); otherwise it is taken as
    logits and a softmax is applied, computed as ``1 / sum(exp(z - max z))`` for the top class
    so large logits cannot overflow. The decision is made for the whole array, not per row, so
    one batch is never half logits and half probabilities. Ties go to the lowest class id.

    Args:
        logits_or_probs: A [rows, classes] array with at least 2 classes.

    Returns:
        ``(top_class, top_prob)``: int64 class ids and float64 probabilities, one per row.

    Raises:
        InvalidInput: Not a 2-D array of finite numbers with at least 2 columns.
    """
    name = "logits_or_probs"
    try:
        arr = np.asarray(logits_or_probs, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InvalidInput(
            f"{name} must be a [rows, classes] array of numbers; got values that are not "
            f"numbers ({exc})",
            field=name,
        ) from exc
    if arr.ndim != 2 or arr.shape[1] < 2:
        raise InvalidInput(
            f"{name} must be a [rows, classes] array with at least 2 classes; got shape "
            f"{arr.shape} (for one sigmoid output p, pass np.column_stack([1 - p, p]))",
            field=name,
        )
    bad = ~np.isfinite(arr)
    if bad.any():
        row = int(np.argwhere(bad)[0, 0])
        raise InvalidInput(
            f"{name} must be finite numbers; got a NaN or infinity at row {row}", field=name
        )
    top_class = arr.argmax(axis=1).astype(np.int64)
    if len(arr) == 0:
        return top_class, np.zeros(0)
    sums = arr.sum(axis=1)
    if (arr >= 0.0).all() and np.all(np.abs(sums - 1.0) <= _PROB_TOLERANCE):
        return top_class, arr.max(axis=1) / sums
    shifted = arr - arr.max(axis=1, keepdims=True)
    return top_class, 1.0 / np.exp(shifted).sum(axis=1)


# --------------------------------------------------------------------------------------------
# Confidence calibration (CBPE)


def _pav_blocks(
    scores: np.ndarray, correct: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Isotonic regression of ``correct`` on ``scores``, as its constant blocks.

    Rows with equal scores are pooled first (as scikit-learn's ``IsotonicRegression`` does), then
    scikit-learn's pool-adjacent-violators fits the pooled means weighted by their counts.

    Returns:
        Per block: the lowest and highest score in it, its correct rows and its rows.
    """
    from sklearn.isotonic import isotonic_regression

    unique, inverse = np.unique(scores, return_inverse=True)
    counts = np.bincount(inverse).astype(np.float64)
    hits = np.bincount(inverse, weights=correct.astype(np.float64))
    fitted = isotonic_regression(
        hits / counts, sample_weight=counts, y_min=0.0, y_max=1.0, increasing=True
    )
    # A new block starts wherever the fitted value changes.
    starts = np.flatnonzero(np.r_[True, np.diff(fitted) != 0.0])
    ends = np.r_[starts[1:], len(unique)] - 1
    return (
        unique[starts],
        unique[ends],
        np.add.reduceat(hits, starts),
        np.add.reduceat(counts, starts),
    )


def _smooth(hits: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Jeffreys posterior means of the blocks, made monotone again (weighted by rows)."""
    from sklearn.isotonic import isotonic_regression

    return np.asarray(
        isotonic_regression((hits + 0.5) / (rows + 1.0), sample_weight=rows, increasing=True)
    )


def _curve(lo_x: np.ndarray, hi_x: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Knots of the piecewise-linear map: flat across each block, linear between blocks."""
    x = np.column_stack([lo_x, hi_x]).ravel()
    y = np.repeat(values, 2)
    # A one-score block would give a repeated knot; np.interp wants strictly increasing x.
    keep = np.r_[True, np.diff(x) > 0.0]
    return x[keep], y[keep]


def _uncertainty_grid(scores: np.ndarray) -> np.ndarray:
    """Score points the calibration's spread is stored at: dense where the reference is dense
    (quantiles) and evenly across its range (where shifted traffic may land)."""
    quantiles = np.quantile(scores, np.linspace(0.0, 1.0, 41))
    even = np.linspace(scores.min(), scores.max(), 41)
    return np.unique(np.concatenate([quantiles, even]))


def _floats(values: Any, name: str, *, length: int | None = None) -> tuple[float, ...]:
    if not isinstance(values, list | tuple) or not values:
        raise InvalidInput(
            f"calibration field {name!r} must be a non-empty list of numbers; got {values!r:.80}",
            field=name,
        )
    try:
        out = tuple(float(v) for v in values)
    except (TypeError, ValueError) as exc:
        raise InvalidInput(
            f"calibration field {name!r} must hold numbers only; got {values!r:.80}", field=name
        ) from exc
    if not all(math.isfinite(v) for v in out):
        raise InvalidInput(
            f"calibration field {name!r} must hold finite numbers; got {values!r:.80}", field=name
        )
    if length is not None and len(out) != length:
        raise InvalidInput(
            f"calibration field {name!r} must have {length} entries to match its grid; got "
            f"{len(out)}",
            field=name,
        )
    return out


@dataclass(frozen=True)
class ConfidenceCalibration:
    """A monotone map from a model's top-class probability to P(prediction is correct).

    Fitted on a labelled reference set by ``fit``; ``estimate`` turns the scores of a window of
    unlabelled traffic into an estimated accuracy with an interval. Everything is plain floats, so
    ``to_dict()`` goes straight into a JSON column and ``from_dict()`` brings it back.

    Attributes:
        knots_x: Scores where the map's pieces meet, strictly increasing; the map is linear
            between knots and constant (clipped) outside them.
        knots_p: P(correct) at each knot, non-decreasing.
        grid: Scores the calibration's uncertainty is stored at, strictly increasing.
        grid_sd: Standard deviation of P(correct) across posterior draws of the map, per grid
            score.
        n_reference: Labelled reference rows the map was fitted on.
        reference_accuracy: Accuracy of the model on those rows.
        draws: Posterior draws behind ``grid_sd``.
        seed: Seed of those draws.
    """

    knots_x: tuple[float, ...]
    knots_p: tuple[float, ...]
    grid: tuple[float, ...]
    grid_sd: tuple[float, ...]
    n_reference: int
    reference_accuracy: float
    draws: int
    seed: int

    @classmethod
    def fit(
        cls,
        scores: npt.ArrayLike,
        correct: npt.ArrayLike,
        *,
        seed: int = 0,
        draws: int = DEFAULT_DRAWS,
    ) -> ConfidenceCalibration:
        """Fit the map and its uncertainty on labelled reference rows.

        The map: isotonic regression of ``correct`` on ``scores`` (scikit-learn's
        pool-adjacent-violators, ties pooled), whose constant blocks of k correct out of m rows
        then take their Jeffreys posterior mean (k + 1/2) / (m + 1) instead of k / m, re-made
        monotone. Without that, a block of 200 right answers would claim the model is never
        wrong there, and the interval of a window that lands in it would have width zero.

        The uncertainty: ``draws`` times, resample the reference rows with replacement, refit the
        isotonic blocks, draw each block's P(correct) from Beta(k + 1/2, m - k + 1/2), make the
        draws monotone, and evaluate the map on ``grid``; keep the standard deviation across
        draws per grid score. The resampling moves the block edges (where the map is least
        sure, between confident and unconfident scores); the Beta draw keeps error-free blocks
        uncertain. Counting both is deliberately on the wide side.

        Args:
            scores: The model's top-class probability per reference row (after softmax).
            correct: Whether the model's top class was the true label, per row (booleans or 0/1).
            seed: Seed of the draws.
            draws: Posterior draws of the map (at least 20).

        Returns:
            The fitted calibration.

        Raises:
            InvalidInput: Fewer than ``MIN_REFERENCE_ROWS`` rows, arrays of different lengths,
                scores outside [0, 1], or ``correct`` not booleans.
        """
        seed = _check_int(seed, "seed", minimum=0)
        draws = _check_int(draws, "draws", minimum=20)
        s = _vector(scores, "scores")
        c = _vector(correct, "correct")
        if len(s) != len(c):
            raise InvalidInput(
                f"scores and correct must have one entry per reference row each; got {len(s)} "
                f"scores and {len(c)} correct flags",
                field="correct",
            )
        if len(s) < MIN_REFERENCE_ROWS:
            raise InvalidInput(
                f"a confidence calibration needs at least {MIN_REFERENCE_ROWS} labelled reference "
                f"rows; got {len(s)}",
                field="scores",
            )
        _check_probabilities(s, "scores")
        bad = (c != 0.0) & (c != 1.0)
        if bad.any():
            row = _first_bad(bad)
            raise InvalidInput(
                f"correct must be booleans (or 0/1), one per row; got {c[row]:g} at row {row}",
                field="correct",
            )

        lo_x, hi_x, hits, rows = _pav_blocks(s, c)
        knots_x, knots_p = _curve(lo_x, hi_x, _smooth(hits, rows))

        grid = _uncertainty_grid(s)
        from sklearn.isotonic import isotonic_regression

        rng = np.random.default_rng(seed)
        curves = np.empty((draws, len(grid)))
        n = len(s)
        for b in range(draws):
            idx = rng.integers(0, n, size=n)
            b_lo, b_hi, b_hits, b_rows = _pav_blocks(s[idx], c[idx])
            drawn = rng.beta(b_hits + 0.5, b_rows - b_hits + 0.5)
            drawn = isotonic_regression(drawn, sample_weight=b_rows, increasing=True)
            cx, cy = _curve(b_lo, b_hi, np.asarray(drawn))
            curves[b] = np.interp(grid, cx, cy)

        return cls(
            knots_x=tuple(float(v) for v in knots_x),
            knots_p=tuple(float(v) for v in knots_p),
            grid=tuple(float(v) for v in grid),
            grid_sd=tuple(float(v) for v in curves.std(axis=0, ddof=1)),
            n_reference=n,
            reference_accuracy=float(c.mean()),
            draws=draws,
            seed=seed,
        )

    def calibrate(self, scores: npt.ArrayLike) -> np.ndarray:
        """P(correct) per row for these top-class probabilities (clipped outside the reference)."""
        s = _vector(scores, "scores")
        _check_probabilities(s, "scores")
        return self._map(s)

    def _map(self, s: np.ndarray) -> np.ndarray:
        return np.interp(s, np.asarray(self.knots_x), np.asarray(self.knots_p))

    def estimate(self, scores: npt.ArrayLike, *, level: float = 0.95) -> Estimate:
        """Estimate the accuracy of a window of traffic from its scores alone.

        ``value`` is the mean calibrated P(correct) p_i over the window's n rows. The interval is
        ``value +- z * sqrt(V_window + V_map)``, clipped to [0, 1], with z the normal quantile
        for ``level``:

        - ``V_window = sum p_i (1 - p_i) / n^2``: the variance of the window's realized accuracy
          if each row is right with probability p_i (Poisson-binomial), the luck of the draw;
        - ``V_map = (mean_i sd(s_i))^2``: the doubt in the map itself, with sd(s) the spread of
          the calibration's posterior draws at score s (interpolated from ``grid_sd``). The
          errors of the map at the window's rows are strongly correlated (they share blocks), and
          the standard deviation of a mean is at most the mean of the standard deviations, so
          this bound is conservative rather than optimistic. It is kept on purpose: under a
          covariate shift the map itself drifts a little (on the digits example, low contrast
          makes the model underconfident), which no reference-based term can see. On a design
          split of that example the exact spread of the window mean over the draws (about 25%
          narrower) covered 87% of shifted windows, this bound 100% (bench/monitor_accuracy.py).

        Scores below (above) the reference's lowest (highest) score get the map's and the
        spread's end values, so a window mostly outside the reference's range is extrapolated.
        It is only as good as CBPE's assumption that the map still holds on this traffic: a
        concept shift (labels changing meaning while the inputs look the same) is not seen.

        Args:
            scores: The model's top-class probability per row of the window.
            level: Coverage the interval aims at, in (0, 1).

        Returns:
            The estimate, its interval and the number of rows.

        Raises:
            InvalidInput: No rows, scores outside [0, 1], or a bad level.
        """
        level = _check_level(level)
        s = _vector(scores, "scores")
        _check_probabilities(s, "scores")
        n = len(s)
        if n == 0:
            raise InvalidInput(
                "estimating accuracy needs the scores of at least one row; got 0 rows",
                field="scores",
            )
        p = self._map(s)
        value = float(p.mean())
        v_window = float(np.sum(p * (1.0 - p))) / n**2
        sd_map = float(np.interp(s, np.asarray(self.grid), np.asarray(self.grid_sd)).mean())
        z = statistics.NormalDist().inv_cdf(0.5 + level / 2.0)
        half = z * math.sqrt(v_window + sd_map**2)
        return Estimate(
            value=value,
            lo=max(0.0, value - half),
            hi=min(1.0, value + half),
            n=n,
            level=level,
        )

    def to_dict(self) -> dict[str, Any]:
        """The calibration as plain JSON types (numbers and lists of floats)."""
        fields = {
            name: list(value) if isinstance(value, tuple) else value
            for name, value in asdict(self).items()
        }
        return {"version": _FORMAT_VERSION, **fields}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ConfidenceCalibration:
        """Rebuild a calibration from ``to_dict()``'s output.

        Raises:
            InvalidInput: Not a mapping of the expected fields, an unknown format version, or
                fields that are inconsistent (unsorted knots, probabilities outside [0, 1]).
        """
        if not isinstance(data, Mapping):
            raise InvalidInput(
                f"a stored calibration must be a mapping (from to_dict()); got "
                f"{type(data).__name__}",
                field="calibration",
            )
        expected = {"version", *cls.__dataclass_fields__}
        missing = sorted(expected - set(data))
        if missing:
            raise InvalidInput(
                f"a stored calibration needs the fields {', '.join(sorted(expected))}; got none "
                f"for {', '.join(missing)}",
                field=missing[0],
            )
        if data["version"] != _FORMAT_VERSION:
            raise InvalidInput(
                f"a stored calibration must be format version {_FORMAT_VERSION}; got "
                f"{data['version']!r}",
                field="version",
            )
        knots_x = _floats(data["knots_x"], "knots_x")
        knots_p = _floats(data["knots_p"], "knots_p", length=len(knots_x))
        grid = _floats(data["grid"], "grid")
        grid_sd = _floats(data["grid_sd"], "grid_sd", length=len(grid))
        for name, xs in (("knots_x", knots_x), ("grid", grid)):
            if np.any(np.diff(xs) <= 0.0):
                raise InvalidInput(
                    f"calibration field {name!r} must be strictly increasing; got {list(xs)!r:.80}",
                    field=name,
                )
        if np.any(np.diff(knots_p) < 0.0) or knots_p[0] < 0.0 or knots_p[-1] > 1.0:
            raise InvalidInput(
                "calibration field 'knots_p' must be non-decreasing probabilities in [0, 1]; got "
                f"{list(knots_p)!r:.80}",
                field="knots_p",
            )
        if min(grid_sd) < 0.0:
            raise InvalidInput(
                f"calibration field 'grid_sd' must be standard deviations >= 0; got {min(grid_sd)}",
                field="grid_sd",
            )
        return cls(
            knots_x=knots_x,
            knots_p=knots_p,
            grid=grid,
            grid_sd=grid_sd,
            n_reference=_check_int(data["n_reference"], "n_reference", minimum=1),
            reference_accuracy=float(data["reference_accuracy"]),
            draws=_check_int(data["draws"], "draws", minimum=1),
            seed=_check_int(data["seed"], "seed", minimum=0),
        )
