"""Realized metrics with bootstrap intervals, softmax_top, and the CBPE confidence calibration."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.special import softmax
from sklearn.isotonic import IsotonicRegression
from sklearn.metrics import accuracy_score, f1_score, mean_absolute_error

from modelscale.errors import InvalidInput
from modelscale.monitor.accuracy import (
    CBPE_METHOD,
    METRICS,
    MIN_REFERENCE_ROWS,
    ConfidenceCalibration,
    Estimate,
    MetricCI,
    _bootstrap_macro_f1,
    realized_metric,
    softmax_top,
)


def classes(seed: int, n: int, k: int = 4, hit: float = 0.7) -> tuple[np.ndarray, np.ndarray]:
    """(predictions, labels): labels uniform over k classes, predictions right with P(hit)."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, k, n)
    pred = np.where(rng.random(n) < hit, labels, rng.integers(0, k, n))
    return pred, labels


def calibrated(seed: int, n: int, a: float = 8.0, b: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """(scores, correct) from a perfectly calibrated model: correct ~ Bernoulli(score)."""
    rng = np.random.default_rng(seed)
    scores = np.clip(rng.beta(a, b, n), 0.1, 1.0)
    return scores, rng.random(n) < scores


# --- realized_metric -----------------------------------------------------------------------


def test_metrics_are_the_three_named() -> None:
    assert METRICS == ("accuracy", "f1", "mae")


@pytest.mark.parametrize("seed", range(5))
def test_values_equal_sklearn_exactly(seed: int) -> None:
    pred, labels = classes(seed, 97 + seed * 31, k=3 + seed)
    assert realized_metric(pred, labels).value == accuracy_score(labels, pred)
    assert realized_metric(pred, labels, metric="f1").value == f1_score(
        labels, pred, average="macro"
    )
    rng = np.random.default_rng(seed)
    y, yhat = rng.normal(size=50), rng.normal(size=50)
    assert realized_metric(yhat, y, metric="mae").value == mean_absolute_error(y, yhat)


def test_f1_counts_a_class_only_predicted_and_takes_float_class_ids() -> None:
    labels = np.array([0, 0, 1, 1, 1, 2])
    pred = np.array([0, 3, 1, 1, 0, 2])  # class 3 appears only among predictions
    expected = f1_score(labels, pred, average="macro")
    got = realized_metric(pred.astype(float), labels.astype(float), metric="f1")
    assert got.value == expected
    assert got.lo <= got.value <= got.hi


def test_vectorised_f1_bootstrap_matches_sklearn_per_resample() -> None:
    pred, labels = classes(3, 40, k=5, hit=0.6)
    boot = _bootstrap_macro_f1(labels, pred, 30, np.random.default_rng(7))
    idx = np.random.default_rng(7).integers(0, 40, size=(30, 40))
    expected = [f1_score(labels[i], pred[i], average="macro") for i in idx]
    np.testing.assert_allclose(boot, expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize("metric", METRICS)
def test_interval_holds_the_value_and_is_reproducible(metric: str) -> None:
    pred, labels = classes(1, 300)
    ci = realized_metric(pred, labels, metric=metric, level=0.9, resamples=500, seed=4)
    assert isinstance(ci, MetricCI)
    assert ci.lo <= ci.value <= ci.hi
    assert ci.lo < ci.hi
    assert (ci.metric, ci.n, ci.level) == (metric, 300, 0.9)
    assert realized_metric(pred, labels, metric=metric, level=0.9, resamples=500, seed=4) == ci
    other = realized_metric(pred, labels, metric=metric, level=0.9, resamples=500, seed=5)
    # Accuracy's interval is Wilson's (no resampling); F1's and MAE's are bootstrapped.
    assert (other == ci) if metric == "accuracy" else (other != ci)
    assert json.loads(json.dumps(ci.to_dict())) == ci.to_dict()


def test_accuracy_interval_has_the_binomial_width() -> None:
    pred, labels = classes(2, 4000, hit=0.8)
    ci = realized_metric(pred, labels)
    p = ci.value
    expected = 2 * 1.96 * np.sqrt(p * (1 - p) / 4000)
    assert ci.hi - ci.lo == pytest.approx(expected, rel=0.15)


def test_accuracy_interval_covers_the_truth_about_95_percent() -> None:
    rng = np.random.default_rng(0)
    hits = 0
    for seed in range(200):
        labels = rng.integers(0, 3, 150)
        pred = np.where(rng.random(150) < 0.75, labels, (labels + 1) % 3)
        ci = realized_metric(pred, labels, resamples=400, seed=seed)
        hits += ci.lo <= 0.75 <= ci.hi
    assert 0.88 <= hits / 200 <= 0.99


def test_large_windows_are_bootstrapped_in_chunks() -> None:
    pred, labels = classes(5, 50_000)
    ci = realized_metric(pred, labels, resamples=200)
    assert ci.lo < ci.value < ci.hi
    assert ci.value == accuracy_score(labels, pred)


def test_one_row_gives_a_zero_width_bootstrap_and_a_wide_wilson_interval() -> None:
    ci = realized_metric([2.0], [2.5], metric="mae")
    assert ci.value == ci.lo == ci.hi == 0.5
    acc = realized_metric([2], [2])
    assert acc.value == acc.hi == 1.0 and acc.n == 1
    assert acc.lo == pytest.approx(0.2065, abs=1e-4)  # one right answer says little


def test_accuracy_interval_is_wilsons_and_not_degenerate_without_errors() -> None:
    ci = realized_metric(np.zeros(60, np.int64), np.zeros(60, np.int64))
    # Wilson's score interval for 60 of 60 at 95%: the bootstrap would give [1, 1].
    assert ci.hi == 1.0 and ci.lo == pytest.approx(0.9398, abs=1e-4)


def test_no_rows_is_refused() -> None:
    with pytest.raises(InvalidInput, match="at least one labelled row; got 0") as err:
        realized_metric([], [])
    assert err.value.field == "labels"


def test_lengths_must_match() -> None:
    with pytest.raises(InvalidInput, match="got 3 predictions and 2 labels"):
        realized_metric([1, 2, 3], [1, 2])


def test_labels_must_be_whole_numbers_for_a_classifier() -> None:
    with pytest.raises(
        InvalidInput, match=r"labels must be whole numbers for a classifier; got 1.5 at row 3"
    ) as err:
        realized_metric([0, 1, 1, 1], [0, 1, 1, 1.5], metric="f1")
    assert err.value.field == "labels"
    with pytest.raises(InvalidInput, match=r"predictions must be whole numbers.*row 0"):
        realized_metric([0.7, 1], [0, 1])
    # MAE takes any numbers.
    assert realized_metric([0.5, 1.0], [1.5, 1.0], metric="mae").value == 0.5


def test_nan_labels_are_refused_with_their_row() -> None:
    with pytest.raises(InvalidInput, match=r"labels must be finite.*got nan at row 2") as err:
        realized_metric([1, 2, 3], [1, 2, np.nan], metric="mae")
    assert err.value.field == "labels"


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"metric": "auc"}, "metric"),
        ({"level": 1.0}, "level"),
        ({"level": 0}, "level"),
        ({"resamples": 0}, "resamples"),
        ({"seed": -1}, "seed"),
    ],
)
def test_bad_options_are_refused(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(InvalidInput) as err:
        realized_metric([1, 0], [1, 1], **kwargs)  # type: ignore[arg-type]
    assert err.value.field == field


def test_non_numbers_and_matrices_are_refused() -> None:
    with pytest.raises(InvalidInput, match="not numbers"):
        realized_metric(["cat", "dog"], ["cat", "cat"])
    with pytest.raises(InvalidInput, match=r"1-D array.*shape \(2, 2\)"):
        realized_metric([[1, 0], [0, 1]], [1, 0])


# --- softmax_top ---------------------------------------------------------------------------


def test_softmax_top_of_logits() -> None:
    logits = np.random.default_rng(0).normal(size=(20, 5)) * 3
    top, prob = softmax_top(logits)
    np.testing.assert_array_equal(top, logits.argmax(axis=1))
    np.testing.assert_allclose(prob, softmax(logits, axis=1).max(axis=1), rtol=1e-12)
    assert top.dtype == np.int64


def test_softmax_top_keeps_probabilities() -> None:
    probs = softmax(np.random.default_rng(1).normal(size=(10, 3)), axis=1)
    top, prob = softmax_top(probs)
    np.testing.assert_allclose(prob, probs.max(axis=1), rtol=1e-12)
    np.testing.assert_array_equal(top, probs.argmax(axis=1))
    # Within the 1e-3 tolerance still counts as probabilities.
    _, prob = softmax_top(np.array([[0.7, 0.3004], [0.5, 0.5]]))
    np.testing.assert_allclose(prob, [0.7 / 1.0004, 0.5])


def test_softmax_top_treats_the_array_as_logits_when_any_row_is_not_probabilities() -> None:
    # The first row alone would pass as probabilities; the second cannot.
    top, prob = softmax_top(np.array([[0.2, 0.8], [2.0, -1.0]]))
    np.testing.assert_allclose(prob, softmax(np.array([[0.2, 0.8], [2.0, -1.0]]), axis=1).max(1))
    assert top.tolist() == [1, 0]


def test_softmax_top_is_stable_for_huge_logits_and_breaks_ties_low() -> None:
    top, prob = softmax_top(np.array([[1000.0, -1000.0, 0.0], [5.0, 5.0, -800.0]]))
    assert np.isfinite(prob).all()
    np.testing.assert_allclose(prob, [1.0, 0.5])
    assert top.tolist() == [0, 0]


@pytest.mark.parametrize(
    ("value", "match"),
    [
        (np.array([0.1, 0.9]), "at least 2 classes"),
        (np.ones((3, 1)), "column_stack"),
        (np.array([[np.nan, 1.0]]), "row 0"),
        ([["a", "b"]], "not numbers"),
    ],
)
def test_softmax_top_refuses_bad_arrays(value: object, match: str) -> None:
    with pytest.raises(InvalidInput, match=match):
        softmax_top(value)  # type: ignore[arg-type]


# --- ConfidenceCalibration -----------------------------------------------------------------


@pytest.fixture(scope="module")
def calibration() -> ConfidenceCalibration:
    scores, correct = calibrated(0, 2000)
    return ConfidenceCalibration.fit(scores, correct)


def test_fit_refuses_a_small_reference() -> None:
    scores, correct = calibrated(0, MIN_REFERENCE_ROWS - 1)
    with pytest.raises(InvalidInput, match="at least 50 labelled reference rows; got 49"):
        ConfidenceCalibration.fit(scores, correct)


@pytest.mark.parametrize(
    ("scores", "correct", "match"),
    [
        (np.full(60, 1.5), np.ones(60, bool), r"scores must be top-class probabilities.*1\.5"),
        (np.full(60, 0.9), np.full(60, 2), "correct must be booleans.*got 2 at row 0"),
        (np.full(60, 0.9), np.ones(59, bool), "got 60 scores and 59"),
    ],
)
def test_fit_refuses_bad_reference_rows(scores: object, correct: object, match: str) -> None:
    with pytest.raises(InvalidInput, match=match):
        ConfidenceCalibration.fit(scores, correct)  # type: ignore[arg-type]


def test_the_map_is_monotone_isotonic_regression(calibration: ConfidenceCalibration) -> None:
    assert np.all(np.diff(calibration.knots_x) > 0)
    assert np.all(np.diff(calibration.knots_p) >= 0)
    scores, correct = calibrated(0, 2000)
    iso = IsotonicRegression(y_min=0, y_max=1, out_of_bounds="clip").fit(scores, correct)
    # Where blocks hold many rows, the Jeffreys smoothing of their values hardly shows.
    grid = np.linspace(0.6, 1.0, 401)
    np.testing.assert_allclose(calibration.calibrate(grid), iso.predict(grid), atol=0.02)
    assert calibration.calibrate([0.0])[0] == calibration.knots_p[0]  # clipped below
    assert calibration.n_reference == 2000
    assert calibration.reference_accuracy == pytest.approx(correct.mean())


def test_blocks_take_their_jeffreys_posterior_mean() -> None:
    scores = np.repeat([0.2, 0.5, 0.9], 20)
    correct = np.concatenate([np.arange(20) < 5, np.arange(20) < 10, np.ones(20, bool)])
    cal = ConfidenceCalibration.fit(scores, correct, draws=20)
    assert cal.knots_x == (0.2, 0.5, 0.9)
    np.testing.assert_allclose(cal.knots_p, [5.5 / 21, 10.5 / 21, 20.5 / 21])
    iso = IsotonicRegression(out_of_bounds="clip").fit(scores, correct)
    np.testing.assert_allclose(iso.predict([0.2, 0.5, 0.9]), [0.25, 0.5, 1.0])
    np.testing.assert_allclose(cal.calibrate([0.0, 0.35, 1.0]), [5.5 / 21, 8 / 21, 20.5 / 21])


def test_an_error_free_reference_still_gives_an_interval() -> None:
    scores = np.linspace(0.9, 1.0, 200)
    cal = ConfidenceCalibration.fit(scores, np.ones(200, bool))
    est = cal.estimate(np.full(200, 0.95))
    assert est.value < 1.0
    assert est.lo < est.value <= est.hi == 1.0


def test_estimate_fields_and_method(calibration: ConfidenceCalibration) -> None:
    scores, _ = calibrated(1, 300)
    est = calibration.estimate(scores, level=0.9)
    assert isinstance(est, Estimate)
    assert est.method == CBPE_METHOD == "confidence-based estimate (CBPE)"
    assert (est.n, est.level) == (300, 0.9)
    assert est.lo < est.value < est.hi
    assert est.value == pytest.approx(calibration.calibrate(scores).mean())
    assert json.loads(json.dumps(est.to_dict())) == est.to_dict()


@pytest.mark.parametrize("shape", [(8.0, 1.0), (2.0, 1.0)])
def test_estimate_covers_the_realized_accuracy_of_calibrated_windows(
    calibration: ConfidenceCalibration, shape: tuple[float, float]
) -> None:
    """Windows from the reference's distribution and from a shifted one (far less confident
    scores); the model stays calibrated, which is what CBPE assumes."""
    covered = 0
    for seed in range(200):
        scores, correct = calibrated(100 + seed, 200, *shape)
        est = calibration.estimate(scores)
        covered += est.lo <= correct.mean() <= est.hi
    assert covered / 200 >= 0.9


def test_interval_narrows_with_more_rows_and_a_bigger_reference() -> None:
    small_ref = ConfidenceCalibration.fit(*calibrated(0, 100))
    big_ref = ConfidenceCalibration.fit(*calibrated(0, 5000))
    window, _ = calibrated(9, 2000)
    few, many = big_ref.estimate(window[:20]), big_ref.estimate(window)
    assert many.hi - many.lo < few.hi - few.lo
    small = small_ref.estimate(window)
    assert big_ref.estimate(window).hi - big_ref.estimate(window).lo < small.hi - small.lo


def test_fit_is_reproducible_by_seed() -> None:
    scores, correct = calibrated(3, 300)
    a = ConfidenceCalibration.fit(scores, correct, seed=1, draws=40)
    assert a == ConfidenceCalibration.fit(scores, correct, seed=1, draws=40)
    assert a.grid_sd != ConfidenceCalibration.fit(scores, correct, seed=2, draws=40).grid_sd


def test_round_trip_through_json(calibration: ConfidenceCalibration) -> None:
    stored = json.dumps(calibration.to_dict())
    data = json.loads(stored)
    assert all(isinstance(v, float) for v in data["knots_x"] + data["grid_sd"])
    back = ConfidenceCalibration.from_dict(data)
    assert back == calibration
    scores, _ = calibrated(4, 100)
    assert back.estimate(scores) == calibration.estimate(scores)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"version": 2}, "version"),
        ({"knots_x": [0.5, 0.4]}, "knots_x"),
        ({"knots_p": [0.9, 0.1]}, "knots_p"),
        ({"grid_sd": [0.1]}, "grid_sd"),
        ({"grid": "nope"}, "grid"),
        ({"n_reference": 0}, "n_reference"),
    ],
)
def test_from_dict_refuses_broken_data(change: dict[str, object], field: str) -> None:
    data = {
        "version": 1,
        "knots_x": [0.4, 0.9],
        "knots_p": [0.3, 0.8],
        "grid": [0.4, 0.6, 0.9],
        "grid_sd": [0.1, 0.1, 0.05],
        "n_reference": 100,
        "reference_accuracy": 0.8,
        "draws": 200,
        "seed": 0,
    }
    ConfidenceCalibration.from_dict(data)  # the unbroken form loads
    with pytest.raises(InvalidInput) as err:
        ConfidenceCalibration.from_dict({**data, **change})
    assert err.value.field == field


def test_from_dict_names_missing_fields() -> None:
    with pytest.raises(InvalidInput, match="got none for draws") as err:
        ConfidenceCalibration.from_dict({"version": 1})
    assert err.value.field == "draws"
    with pytest.raises(InvalidInput, match="must be a mapping"):
        ConfidenceCalibration.from_dict([1, 2])  # type: ignore[arg-type]


def test_estimate_refuses_bad_windows(calibration: ConfidenceCalibration) -> None:
    with pytest.raises(InvalidInput, match="at least one row; got 0"):
        calibration.estimate([])
    with pytest.raises(InvalidInput, match=r"softmax_top\(logits\)"):
        calibration.estimate([0.5, 3.2])
    with pytest.raises(InvalidInput) as err:
        calibration.estimate([0.5], level=95)
    assert err.value.field == "level"
