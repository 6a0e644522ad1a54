"""A served version's windows on their own: when they close, what a closed one holds, alerts that
fire and resolve once, the domain classifier's rate limit, and the accuracy drop rule."""

from __future__ import annotations

import numpy as np
import pytest

from modelscale.model import ModelArtifact
from modelscale.monitor import Baseline, BaselineOptions, DriftOptions, build_baseline
from modelscale.monitor.feedback import FeedbackItem, Labels, PendingPredictions
from modelscale.monitor.windows import ModelWatch, accuracy_of
from tests.monitor.test_server import CLASSES, D_IN, W, predict, save_classifier

T0 = 1_800_000_000.0


@pytest.fixture(scope="module")
def baseline(tmp_path_factory: pytest.TempPathFactory) -> Baseline:
    path = save_classifier(tmp_path_factory.mktemp("w") / "clf.onnx")
    x = np.random.default_rng(0).standard_normal((2_000, D_IN)).astype(np.float32)
    return build_baseline(
        ModelArtifact.load(path, name="clf"), {"x": x}, labels=predict(x), options=BaselineOptions()
    )


def _watch(baseline: Baseline, **kw: object) -> ModelWatch:
    args: dict[str, object] = {
        "options": DriftOptions(alpha=0.001),
        "window_s": 60.0,
        "window_requests": None,
        "accuracy_drop": 0.05,
        "domain": True,
        "now": T0,
    }
    args.update(kw)
    return ModelWatch("clf", "1", baseline, **args)  # type: ignore[arg-type]


def _fold(w: ModelWatch, n: int, *, shift: float = 0.0, seed: int = 0, at: float = T0) -> None:
    x = np.random.default_rng(seed).standard_normal((n, D_IN)).astype(np.float32)
    x[:, 0] += shift
    z = x @ W
    probs = np.exp(z - z.max(axis=1, keepdims=True))
    probs /= probs.sum(axis=1, keepdims=True)
    w.fold({"x": x}, {"probs": probs.astype(np.float32)}, requests=n, times=(at, at))


def test_windows_close_on_the_clock_aligned_to_it_or_when_full(baseline: Baseline) -> None:
    w = _watch(baseline)
    assert w.start == T0 - T0 % 60 and w.deadline == w.start + 60
    _fold(w, 500)
    assert not w.due(w.deadline - 1) and w.due(w.deadline)
    counted = _watch(baseline, window_requests=300)
    _fold(counted, 299)
    assert not counted.due(T0) and counted.full(1)
    _fold(counted, 1)
    assert counted.due(T0)
    result, profile = counted.close(T0 + 1, None)
    assert profile.rows == 300 and result.end == T0 + 1
    assert counted.start == T0 + 1 and counted.deadline == w.deadline  # the period still ends there


def test_a_clean_window_passes_and_a_shifted_one_fires_once_then_resolves(
    baseline: Baseline,
) -> None:
    w = _watch(baseline, domain=False)
    _fold(w, 400, seed=1)
    clean, _ = w.close(w.deadline, None)
    assert clean.verdict == "ok" and w.alerts(clean, w.deadline) == []
    for k in range(2):
        _fold(w, 400, shift=2.0, seed=2 + k)
        shifted, _ = w.close(w.deadline, None)
        assert shifted.verdict == "drift" and "x[0]" in shifted.drift["drifted"]
        events = w.alerts(shifted, w.deadline)
        fired = [e for e in events if e.sli == "drift"]
        assert [e.state for e in fired] == (["firing"] if k == 0 else [])
    _fold(w, 400, seed=9)
    back, _ = w.close(w.deadline, None)
    events = [e for e in w.alerts(back, w.deadline) if e.sli == "drift"]
    assert [e.state for e in events] == ["resolved"]
    assert events[0].sha256 == baseline.model["sha256"]
    assert events[0].as_result().kind == "drift"


def test_the_domain_classifier_runs_at_most_once_per_domain_every_s(baseline: Baseline) -> None:
    w = _watch(baseline, window_requests=200, domain_every_s=60.0)
    results = []
    for k in range(3):
        _fold(w, 200, seed=k)
        results.append(w.close(T0 + 10 * k + 1, None)[0])
    assert "auc" in results[0].drift["domain"]
    assert "skipped" in results[1].drift["domain"] and "skipped" in results[2].drift["domain"]
    _fold(w, 200, seed=7)
    later = w.close(T0 + 100, None)[0]
    assert "auc" in later.drift["domain"]


def test_realized_accuracy_comes_from_labels_of_the_window_and_outranks_the_estimate(
    baseline: Baseline,
) -> None:
    w = _watch(baseline, domain=False)
    pending = PendingPredictions(ttl_s=3600, capacity=1000)
    labels = Labels(task="classification", keep_s=3600)
    x = np.random.default_rng(3).standard_normal((100, D_IN)).astype(np.float32)
    wrong = (predict(x) + 1) % CLASSES
    for i in range(100):
        pending.add(f"r{i}", w.start + 1, "1", predict(x[i : i + 1]))
        _, p = pending.take(f"r{i}", w.start + 2)
        assert p is not None
        labels.join(FeedbackItem(f"r{i}", (int(wrong[i]),)), p)
    _fold(w, 200, seed=4, at=w.start + 1)
    result, _ = w.close(w.deadline, labels)
    acc = result.accuracy
    assert acc["labelled"] == 100 and acc["realized"]["value"] == 0.0
    assert acc["estimate"]["value"] > 0.5  # confident predictions: the estimate cannot see it
    assert acc["drop"] and result.verdict == "accuracy"
    texts = [e.detail for e in w.alerts(result, w.deadline) if e.sli == "accuracy"]
    assert texts and texts[0].startswith("realized accuracy 0.000")


def test_mae_drops_when_the_error_grows(baseline: Baseline) -> None:
    base = Baseline(
        **{
            **baseline.__dict__,
            "metric": "mae",
            "task": "regression",
            "reference_metric": {
                "metric": "mae",
                "value": 1.0,
                "lo": 0.9,
                "hi": 1.1,
                "n": 100,
                "level": 0.95,
            },
            "calibration": None,
        }
    )
    preds = np.zeros(100)
    worse = accuracy_of(preds, np.full(100, 2.0), None, base, 0.05)
    better = accuracy_of(preds, np.full(100, 0.5), None, base, 0.05)
    assert worse["drop"] and not better["drop"]
    few = accuracy_of(preds[:10], np.full(10, 5.0), None, base, 0.05)
    assert not few["drop"]  # under 30 labels the realized metric alone does not alert


def test_a_failing_domain_classifier_leaves_the_window_tested_and_recorded(
    baseline: Baseline,
) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise ValueError("only one class in a fold")

    w = _watch(baseline, domain_runner=broken)
    _fold(w, 300, seed=5)
    result, _ = w.close(w.deadline, None)
    assert result.verdict == "ok"
    assert result.drift["domain"] == {
        "error": "ValueError: only one class in a fold",
        "drift": False,
    }
