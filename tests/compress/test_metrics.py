from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import f1_score

from modelscale.compress.metrics import METRICS, bootstrap_change, get_metric
from modelscale.errors import InvalidInput

LOGITS = np.array([[2.0, 1.0, 0.0], [0.0, 3.0, 1.0], [1.0, 0.0, 2.0], [0.0, 1.0, 5.0]])
LABELS = np.array([0, 1, 1, 2])


def test_accuracy_top5_and_f1_known_answers() -> None:
    assert METRICS["accuracy"].value(LOGITS, LABELS) == pytest.approx(0.75)
    assert METRICS["top5"].value(LOGITS, LABELS) == pytest.approx(1.0)
    expected = f1_score(LABELS, LOGITS.argmax(1), average="macro")
    assert METRICS["f1"].value(LOGITS, LABELS) == pytest.approx(expected)


def test_top5_misses_a_label_outside_the_top_five() -> None:
    scores = np.tile(np.arange(10.0), (2, 1))  # top five are classes 5..9
    assert METRICS["top5"].value(scores, np.array([9, 0])) == pytest.approx(0.5)


def test_regression_and_fidelity_known_answers() -> None:
    pred = np.array([[1.0, 2.0], [3.0, 5.0]])
    truth = np.array([[1.0, 1.0], [3.0, 3.0]])
    assert METRICS["mae"].value(pred, truth) == pytest.approx((0 + 1 + 0 + 2) / 4)
    assert METRICS["rmse"].value(pred, truth) == pytest.approx(np.sqrt((0 + 1 + 0 + 4) / 4))
    a = np.array([[1.0, 0.0], [0.0, 2.0]])
    b = np.array([[1.0, 1.0], [0.0, -3.0]])
    assert METRICS["cosine"].value(a, b) == pytest.approx((1 / np.sqrt(2) - 1) / 2)
    assert METRICS["agreement"].value(a, b) == pytest.approx(0.5)
    assert METRICS["cosine"].value(np.zeros((1, 3)), np.zeros((1, 3))) == pytest.approx(1.0)


def test_identical_outputs_have_a_zero_change_and_zero_width_ci() -> None:
    assert bootstrap_change(METRICS["accuracy"], (LOGITS, LABELS), (LOGITS, LABELS)) == (0, 0, 0)


def test_bootstrap_is_seeded_and_brackets_the_change() -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 500)
    base = np.eye(3)[labels]
    cand = base.copy()
    cand[:50] = np.eye(3)[(labels[:50] + 1) % 3]  # exactly 50 of 500 now wrong
    metric = METRICS["accuracy"]
    change, lo, hi = bootstrap_change(metric, (base, labels), (cand, labels), seed=3)
    assert change == pytest.approx(-0.1)
    assert lo < change < hi
    # Paired: every resample has some of the 50 flips, and none can make accuracy better.
    assert hi < 0
    # A binomial-ish width: sqrt(0.1 * 0.9 / 500) ~ 0.013, so the 95% interval is ~ +-0.026.
    assert 0.03 < hi - lo < 0.07
    assert bootstrap_change(metric, (base, labels), (cand, labels), seed=3) == (change, lo, hi)


def test_rmse_and_f1_bootstrap_without_loops_match_direct_resamples() -> None:
    rng = np.random.default_rng(1)
    truth = rng.standard_normal((40, 2))
    base, cand = truth + 0.1 * rng.standard_normal((40, 2)), truth + 0.3
    _, lo, hi = bootstrap_change(METRICS["rmse"], (base, truth), (cand, truth), resamples=500)
    direct = []
    for _ in range(500):
        i = rng.integers(0, 40, 40)
        direct.append(
            np.sqrt(((cand[i] - truth[i]) ** 2).mean())
            - np.sqrt(((base[i] - truth[i]) ** 2).mean())
        )
    assert lo == pytest.approx(np.quantile(direct, 0.025), abs=0.03)
    assert hi == pytest.approx(np.quantile(direct, 0.975), abs=0.03)


def test_callable_metrics_per_example_and_scalar() -> None:
    def hits(outputs: np.ndarray, target: np.ndarray) -> np.ndarray:
        return (outputs.argmax(1) == target).astype(float)

    def acc(outputs: np.ndarray, target: np.ndarray) -> float:
        return float((outputs.argmax(1) == target).mean())

    for fn in (hits, acc):
        metric = get_metric(fn)
        assert metric.value(LOGITS, LABELS) == pytest.approx(0.75)
        change, lo, hi = bootstrap_change(
            metric, (LOGITS, LABELS), (LOGITS[::-1], LABELS), resamples=50
        )
        assert lo <= change <= hi


def test_unknown_metric_is_refused_with_the_names() -> None:
    with pytest.raises(
        InvalidInput, match="'metric' parameter of compress must be one of accuracy"
    ):
        get_metric("auc")
