"""Drift windows, feedback and accuracy of a real server over real HTTP, recorded in a real
knowledge base; the model has the dims converters write ('?' and an odd name)."""

from __future__ import annotations

import json
import pathlib
import time
from typing import Any

import httpx
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from modelscale.config import DeploymentSpec
from modelscale.model import ModelArtifact
from modelscale.serve import start_server
from modelscale.store import open_store
from tests.cli.helpers import invoke

pytestmark = pytest.mark.e2e

D_IN, CLASSES = 6, 3
W = np.random.default_rng(3).standard_normal((D_IN, CLASSES)).astype(np.float32)


def save_classifier(path: pathlib.Path) -> pathlib.Path:
    """x['?', 6] -> MatMul -> Softmax -> probs['batch_size', 3]."""
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "w"], ["z"]),
            helper.make_node("Softmax", ["z"], ["probs"], axis=-1),
        ],
        "clf",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["?", D_IN])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["batch_size", CLASSES])],
        [numpy_helper.from_array(W, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def predict(x: np.ndarray) -> np.ndarray:
    return (x @ W).argmax(axis=1)


def _spec(path: pathlib.Path, tmp_path: pathlib.Path, **monitor: Any) -> DeploymentSpec:
    # A strict false discovery rate: these tests check what the server does with a window, so
    # a clean window must not be the one in a thousand that the tests flag by chance (bench/
    # monitor.py measures the false alarm rate at the default 0.01).
    monitor = {"alpha": 0.001, **monitor}
    return DeploymentSpec.from_dict(
        {
            "models": {
                "clf": {
                    "versions": {"1": {"path": str(path)}},
                    "batching": {"max_batch": 8, "max_wait_ms": 1},
                    "monitor": {"window_s": 3600, "window_requests": 200, **monitor},
                }
            },
            "log": {"path": str(tmp_path / "logs"), "flush_s": 0.2},
        }
    )


def _infer(c: httpx.Client, x: np.ndarray, rid: str | None = None) -> httpx.Response:
    body: dict[str, Any] = {
        "inputs": [
            {"name": "x", "shape": list(x.shape), "datatype": "FP32", "data": x.ravel().tolist()}
        ]
    }
    if rid is not None:
        body["id"] = rid
    return c.post("/v2/models/clf/infer", json=body)


def _windows(c: httpx.Client, n: int, timeout_s: float = 15.0) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout_s
    while True:
        views = c.get("/v2/monitor").json()["models"]
        windows = views[0]["windows"] if views else []
        if len(windows) >= n or time.monotonic() > deadline:
            return windows
        time.sleep(0.2)


def test_windows_pass_clean_traffic_and_flag_a_shift_with_the_alert_recorded(
    clf: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    rng = np.random.default_rng(1)
    with start_server(_spec(clf, tmp_path)) as server, httpx.Client(base_url=server.url) as c:
        for _ in range(150):
            assert _infer(c, rng.standard_normal((1, D_IN)).astype(np.float32)).status_code == 200
        # The open window, tested as it stands.
        deadline = time.monotonic() + 10
        while (current := c.get("/v2/monitor").json()["models"][0]["current"]) is None or current[
            "drift"
        ]["rows"] < 150:
            assert time.monotonic() < deadline, current
            time.sleep(0.2)
        assert current["verdict"] == "ok" and current["drift"]["domain"] is None
        status = invoke("monitor", "status", server.url)
        assert status.exit_code == 0, status.output
        assert "clf v1 open window, so far:" in status.stdout and "150 rows" in status.stdout
        for _ in range(70):
            assert _infer(c, rng.standard_normal((1, D_IN)).astype(np.float32)).status_code == 200
        first = _windows(c, 1)
        assert len(first) == 1
        assert first[0]["verdict"] == "ok", first[0]["drift"]["drifted"]
        for _ in range(220):
            x = rng.standard_normal((1, D_IN)).astype(np.float32)
            x[:, 2] += 2.0  # one input feature moves by two standard deviations
            assert _infer(c, x).status_code == 200
        both = _windows(c, 2)
        metrics = c.get("/metrics").text
    latest = both[0]
    assert latest["verdict"] == "drift"
    assert "x[2]" in latest["drift"]["drifted"]
    assert not {"x[0]", "x[1]", "x[3]", "x[4]", "x[5]"} & set(latest["drift"]["drifted"])
    assert 'modelscale_monitor_windows_total{model="clf",verdict="drift"}' in metrics
    status = invoke("monitor", "status", "clf", "-n", "3", "--json")
    assert status.exit_code == 0, status.output
    # Newest first: the rest closed when the server stopped (too few rows), then the shift.
    verdicts = [w["verdict"] for w in json.loads(status.stdout)["windows"]]
    assert verdicts == ["too few rows", "drift", "ok"]
    store = open_store()
    try:
        runs = store.runs(model="clf", kind="drift")
    finally:
        store.close()
    windows = [r for r in runs if "verdict" in r.results]
    alerts = [r.results["alert"] for r in runs if "alert" in r.results]
    assert len(windows) >= 2 and windows[0].model_version == ModelArtifact.load(clf).sha256
    assert any(a["sli"] == "drift" and a["state"] == "firing" for a in alerts), alerts
    files = list((tmp_path / "logs" / "monitor" / "model=clf" / "version=1").glob("*.json"))
    assert len(files) >= 2


def test_feedback_joins_labels_and_realized_accuracy_equals_the_offline_one(
    clf: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    rng = np.random.default_rng(2)
    x = rng.standard_normal((200, D_IN)).astype(np.float32)
    truth = np.where(rng.random(200) < 0.7, predict(x), (predict(x) + 1) % CLASSES)
    with start_server(_spec(clf, tmp_path)) as server, httpx.Client(base_url=server.url) as c:
        served = []
        for i in range(200):
            r = _infer(c, x[i : i + 1], rid=f"q{i}")
            assert r.headers["x-request-id"] == f"q{i}"
            served.append(int(np.argmax(r.json()["outputs"][0]["data"])))
        items = [{"id": f"q{i}", "label": [int(truth[i])]} for i in range(200)]
        r = c.post("/v2/models/clf/feedback", json={"items": items})
        assert r.status_code == 200 and r.json() == {"accepted": 200}
        _infer(c, x[:1])  # one more request: the window (200 requests) closes
        window = _windows(c, 1)[0]
        counts = c.get("/v2/monitor").json()["feedback"]["clf"]
    offline = float(np.mean(np.asarray(served) == truth))
    realized = window["accuracy"]["realized"]
    assert realized["n"] == 200
    assert realized["value"] == offline  # exactly: the same rows, the same predictions
    assert realized["lo"] <= offline <= realized["hi"]
    estimate = window["accuracy"]["estimate"]
    assert estimate["method"].startswith("confidence-based estimate")
    assert counts["joined"] == 200


def test_feedback_refuses_bad_input_with_the_reason_and_keeps_what_it_had(
    clf: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    spec = _spec(clf, tmp_path, label_ttl_s=2)
    x = np.zeros((2, D_IN), np.float32)
    with start_server(spec) as server, httpx.Client(base_url=server.url) as c:
        assert _infer(c, x, rid="two-rows").status_code == 200
        assert _infer(c, x[:1], rid="old").status_code == 200
        url = "/v2/models/clf/feedback"
        ok = c.post(url, json={"id": "two-rows", "label": [1, 2]})
        assert ok.status_code == 200 and ok.json() == {"accepted": 1}
        cases = [
            ({"id": "nobody", "label": 1}, 404, "'nobody' is not one this server answered"),
            ({"id": "two-rows", "label": 1}, 400, "answered 2 row(s); feedback gave 1"),
            ({"id": "two-rows", "label": [1.5, 2]}, 400, "not a whole number"),
            ({"id": "two-rows", "label": ["a", 2]}, 400, "is not a number"),
            ({"id": "two-rows", "label": [True, 2]}, 400, "is not a number"),
            ({"id": "two-rows"}, 400, 'exactly the keys "id" and "label"'),
            ({"items": []}, 400, "expected 1 to 10000"),
            ([1, 2], 400, "expected a JSON object"),
        ]
        for body, status, message in cases:
            r = c.post(url, json=body)
            assert r.status_code == status, (body, r.text)
            assert message in r.json()["error"], (body, r.text)
        nan = c.post(url, content=b'{"id": "two-rows", "label": [NaN, 1]}')
        assert nan.status_code == 400 and "not JSON" in nan.json()["error"]
        big = c.post(url, content=b"[" + b"1," * 600_000 + b"1]")
        assert big.status_code == 413
        assert c.get(url).status_code == 405
        unknown_model = c.post("/v2/models/nomodel/feedback", json={"id": "x", "label": 1})
        assert unknown_model.status_code == 404
        time.sleep(2.2)
        expired = c.post(url, json={"id": "old", "label": 1})
        assert expired.status_code == 404 and "older than monitor.label_ttl_s" in expired.text
        batch = c.post(url, json={"items": [{"id": "old", "label": 1}, {"id": "zz", "label": 0}]})
        assert batch.status_code == 200
        assert batch.json() == {"accepted": 0, "unknown": ["zz"], "expired": ["old"]}
        counts = c.get("/v2/monitor").json()["feedback"]["clf"]
        metrics = c.get("/metrics").text
    assert counts["joined"] == 1  # the one good label is still there, nothing else joined
    assert counts["unknown"] == 2 and counts["expired"] == 2
    assert counts["invalid"] == 8
    assert 'modelscale_feedback_total{model="clf",result="unknown"} 2.0' in metrics


def test_a_model_without_a_baseline_still_takes_feedback(
    tmp_path: pathlib.Path,
) -> None:
    path = save_classifier(tmp_path / "plain.onnx")
    with start_server(_spec(path, tmp_path)) as server, httpx.Client(base_url=server.url) as c:
        assert _infer(c, np.zeros((1, D_IN), np.float32), rid="a").status_code == 200
        r = c.post("/v2/models/clf/feedback", json={"id": "a", "label": 0})
        assert r.status_code == 200
        assert c.get("/v2/monitor").json()["models"] == []


def test_monitoring_off_answers_feedback_404(clf: pathlib.Path, tmp_path: pathlib.Path) -> None:
    raw = DeploymentSpec.from_dict(
        {
            "models": {
                "clf": {"versions": {"1": {"path": str(clf)}}, "monitor": {"enabled": False}}
            },
            "log": {"path": str(tmp_path / "logs")},
        }
    )
    with start_server(raw) as server, httpx.Client(base_url=server.url) as c:
        r = c.post("/v2/models/clf/feedback", json={"id": "a", "label": 0})
        assert r.status_code == 404
