"""The front: how it classifies requests, and how it answers inference requests and failures."""

from __future__ import annotations

import json
import logging
import os
import sys

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient

from modelscale.serve.front import parse_target
from modelscale.serve.pipeline import Endpoint
from tests.serve.conftest import infer_body

INFER, NOT_FOUND = Endpoint.INFER, Endpoint.NOT_FOUND


@pytest.mark.parametrize(
    ("method", "path", "target"),
    [
        ("POST", "/v2/models/mlp/infer", (INFER, "mlp", None)),
        ("POST", "/v2/models/mlp/versions/2/infer", (INFER, "mlp", "2")),
        ("POST", "/v2/models/a%20b/infer", (INFER, "a%20b", None)),
        ("POST", "/v2/models/infer", (Endpoint.NOT_ALLOWED, "infer", None)),
        ("POST", "/v2/models//infer", (NOT_FOUND, None, None)),
        ("POST", "/v2/models/mlp/versions//infer", (NOT_FOUND, None, None)),
        ("POST", "/v2/models/mlp/versions/2/x/infer", (NOT_FOUND, None, None)),
        ("POST", "/v2/models/mlp/x/infer", (NOT_FOUND, None, None)),
        ("POST", "/v2/models/mlp/infer/", (NOT_FOUND, None, None)),
        ("POST", "/v2/models/mlp/ready", (Endpoint.NOT_ALLOWED, "mlp", None)),
        ("POST", "/v3/models/mlp/infer", (NOT_FOUND, None, None)),
        ("PUT", "/v2/models/mlp/infer", (Endpoint.NOT_ALLOWED, "mlp", None)),
        ("GET", "/v2/models/mlp", (Endpoint.MODEL_METADATA, "mlp", None)),
        ("HEAD", "/v2/models/mlp/versions/3", (Endpoint.MODEL_METADATA, "mlp", "3")),
        ("GET", "/v2/models/mlp/versions/3/ready", (Endpoint.MODEL_READY, "mlp", "3")),
        ("GET", "/v2/health/ready", (Endpoint.READY, None, None)),
        ("DELETE", "/v2/health/live", (Endpoint.NOT_ALLOWED, None, None)),
        ("GET", "/metrics", (Endpoint.METRICS, None, None)),
        ("GET", "/", (NOT_FOUND, None, None)),
    ],
)
def test_requests_are_classified_by_method_and_path(method, path, target) -> None:
    assert parse_target(method, path) == target


def _x() -> np.ndarray:
    return np.zeros((1, 16), dtype=np.float32)


def _counts(client: TestClient) -> dict[tuple[str, str, str], float]:
    text = client.get("/metrics").text
    out = {}
    for family in text_string_to_metric_families(text):
        if family.name == "modelscale_requests":
            for s in family.samples:
                if s.name.endswith("_total"):
                    out[(s.labels["model"], s.labels["version"], s.labels["status"])] = s.value
    return out


def test_versioned_path_serves_that_version(mlp_client: TestClient) -> None:
    r = mlp_client.post("/v2/models/mlp/versions/1/infer", json=infer_body(_x()))
    assert r.status_code == 200
    assert r.json()["model_version"] == "1"
    assert r.headers["content-type"] == "application/json"
    assert int(r.headers["content-length"]) == len(r.content)


def test_unknown_version_and_model_are_404_naming_the_field(mlp_client: TestClient) -> None:
    before = _counts(mlp_client)
    r = mlp_client.post(
        "/v2/models/mlp/versions/9/infer", json=infer_body(_x()), headers={"x-request-id": "q1"}
    )
    assert r.status_code == 404 and r.json()["field"] == "version"
    assert r.headers["x-request-id"] == "q1"
    r = mlp_client.post("/v2/models/nope/infer", json=infer_body(_x()))
    assert r.status_code == 404 and r.json()["field"] == "model"
    after = _counts(mlp_client)
    assert after[("_unknown", "", "404")] == before.get(("_unknown", "", "404"), 0) + 2


def test_bad_input_is_400_naming_the_field_and_counted(mlp_client: TestClient) -> None:
    before = _counts(mlp_client).get(("mlp", "1", "400"), 0)
    r = mlp_client.post(
        "/v2/models/mlp/infer",
        json={"id": "r7", "inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP32"}]},
    )
    assert r.status_code == 400 and r.json()["field"] == "inputs[0].data"
    r = mlp_client.post("/v2/models/mlp/infer", content=b"{not json")
    assert r.status_code == 400 and r.json()["field"] == "body"
    assert _counts(mlp_client)[("mlp", "1", "400")] == before + 2


def test_the_request_id_in_the_body_wins_over_the_header(mlp_client: TestClient) -> None:
    r = mlp_client.post(
        "/v2/models/mlp/infer", json=infer_body(_x(), id="body-id"), headers={"x-request-id": "h"}
    )
    assert r.status_code == 200
    assert r.headers["x-request-id"] == "body-id" and r.json()["id"] == "body-id"


def test_unknown_routes_and_wrong_methods_are_404_and_405(mlp_client: TestClient) -> None:
    r = mlp_client.post("/v2/models/mlp/predict", json=infer_body(_x()))
    assert r.status_code == 404 and "no such endpoint" in r.json()["error"]
    r = mlp_client.put("/v2/models/mlp/infer", json=infer_body(_x()))
    assert r.status_code == 405 and "error" in r.json()
    assert mlp_client.get("/v2/models/mlp").status_code == 200


def _call(
    client: TestClient, path: str, messages: list[dict], *, root_path: str = ""
) -> list[dict]:
    """Run one raw ASGI request through the client's app, on the loop its replicas answer on."""
    sent: list[dict] = []

    async def receive() -> dict:
        return messages.pop(0)

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": "POST",
        "path": path,
        "root_path": root_path,
        "headers": [(b"content-type", b"application/json")],
        "query_string": b"",
    }
    client.portal.call(client.app, scope, receive, send)  # type: ignore[union-attr]
    return sent


def test_under_a_root_path_the_same_routes_answer(mlp_client: TestClient) -> None:
    body = json.dumps(infer_body(_x())).encode()
    path = "/api/v2/models/mlp/versions/1/infer"
    sent = _call(mlp_client, path, [{"type": "http.request", "body": body}], root_path="/api")
    assert sent[0]["status"] == 200 and json.loads(sent[1]["body"])["model_version"] == "1"
    path = "/api/v2/models/nope/infer"
    sent = _call(mlp_client, path, [{"type": "http.request", "body": body}], root_path="/api")
    assert sent[0]["status"] == 404 and json.loads(sent[1]["body"])["field"] == "model"


def test_an_unexpected_failure_is_logged_and_answered_500(
    mlp_client: TestClient, monkeypatch, caplog
) -> None:
    runtime = mlp_client.app_state.registry.runtimes()[0]  # type: ignore[attr-defined]

    def broken(request):
        raise RuntimeError("boom")

    monkeypatch.setattr(runtime, "submit", broken)
    before = _counts(mlp_client).get(("mlp", "1", "500"), 0)
    with caplog.at_level(logging.ERROR, logger="modelscale.serve"):
        r = mlp_client.post("/v2/models/mlp/infer", json=infer_body(_x()))
    assert r.status_code == 500 and "server log" in r.json()["error"]
    assert "unexpected failure serving /v2/models/mlp/infer" in caplog.text
    monkeypatch.undo()
    assert _counts(mlp_client)[("mlp", "1", "500")] == before + 1


def test_a_client_that_disconnects_mid_body_is_not_counted(mlp_client: TestClient) -> None:
    before = _counts(mlp_client)
    messages = [
        {"type": "http.request", "body": b'{"inputs": [', "more_body": True},
        {"type": "http.disconnect"},
    ]
    sent = _call(mlp_client, "/v2/models/mlp/infer", messages)
    assert sent[0]["status"] == 400 and sent[1]["body"] == b""
    assert _counts(mlp_client) == before


@pytest.mark.skipif(not hasattr(os, "SCHED_BATCH"), reason="Linux scheduling policy")
def test_replicas_run_as_batch_processes(mlp_client: TestClient) -> None:
    pool = mlp_client.app_state.registry.runtimes()[0].backend  # type: ignore[attr-defined]
    assert pool.pids and all(os.sched_getscheduler(p) == os.SCHED_BATCH for p in pool.pids)
    assert sys.platform.startswith("linux")
