"""A corpus of malformed requests: each gets a 4xx naming the field, and the server stays healthy."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient

from modelscale.config import DeploymentSpec
from tests.serve.conftest import app_client


@pytest.fixture(scope="module")
def client(mlp_path, seq_path) -> Iterator[TestClient]:
    spec = DeploymentSpec.from_dict(
        {
            "models": {
                "mlp": {"versions": {"1": {"path": str(mlp_path)}}, "batching": {"max_batch": 4}},
                "seq": {"versions": {"1": {"path": str(seq_path)}}, "batching": {"max_batch": 4}},
            }
        }
    )
    with app_client(spec) as c:
        yield c


def x_input(**over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"name": "x", "shape": [1, 16], "datatype": "FP32", "data": [0.5] * 16}
    base.update(over)
    return {k: v for k, v in base.items() if v is not ...}


def seq_inputs(ids: Any = None, mask: Any = None) -> list[dict[str, Any]]:
    ids = ids or {"name": "ids", "shape": [1, 5], "datatype": "INT64", "data": [1, 2, 3, 4, 5]}
    mask = mask or {"name": "mask", "shape": [1, 5], "datatype": "INT64", "data": [1] * 5}
    return [ids, mask]


X = np.ones(16, dtype=np.float32).tobytes()

# (case id, model path, body (dict -> JSON, bytes -> raw), extra headers, status, field named)
CORPUS: list[tuple[str, str, Any, dict[str, str], int, str]] = [
    ("empty body", "mlp", b"", {}, 400, "body"),
    ("not json", "mlp", b"hello", {}, 400, "body"),
    ("truncated json", "mlp", b'{"inputs": [{"name": "x"', {}, 400, "body"),
    ("json array", "mlp", [], {}, 400, "body"),
    ("no inputs", "mlp", {}, {}, 400, "inputs"),
    ("inputs not a list", "mlp", {"inputs": 3}, {}, 400, "inputs"),
    ("inputs empty", "mlp", {"inputs": []}, {}, 400, "inputs"),
    ("input without name", "mlp", {"inputs": [x_input(name=...)]}, {}, 400, "inputs[0].name"),
    ("name not a string", "mlp", {"inputs": [x_input(name=5)]}, {}, 400, "inputs[0].name"),
    ("shape missing", "mlp", {"inputs": [x_input(shape=...)]}, {}, 400, "inputs[0].shape"),
    (
        "shape has a string",
        "mlp",
        {"inputs": [x_input(shape=[1, "16"])]},
        {},
        400,
        "inputs[0].shape[1]",
    ),
    ("negative dim", "mlp", {"inputs": [x_input(shape=[-1, 16])]}, {}, 400, "inputs[0].shape"),
    ("zero rows", "mlp", {"inputs": [x_input(shape=[0, 16], data=[])]}, {}, 400, "inputs[0].shape"),
    ("datatype missing", "mlp", {"inputs": [x_input(datatype=...)]}, {}, 400, "inputs[0].datatype"),
    (
        "datatype unknown",
        "mlp",
        {"inputs": [x_input(datatype="FLOAT32")]},
        {},
        400,
        "inputs[0].datatype",
    ),
    (
        "datatype mismatch",
        "mlp",
        {"inputs": [x_input(datatype="INT64")]},
        {},
        400,
        "inputs[0].datatype",
    ),
    (
        "BYTES unsupported",
        "mlp",
        {"inputs": [x_input(datatype="BYTES")]},
        {},
        400,
        "inputs[0].datatype",
    ),
    ("no data", "mlp", {"inputs": [x_input(data=...)]}, {}, 400, "inputs[0].data"),
    ("too few values", "mlp", {"inputs": [x_input(data=[0.5] * 15)]}, {}, 400, "inputs[0].data"),
    (
        "ragged data",
        "mlp",
        {"inputs": [x_input(data=[[1.0, 2.0], [3.0]])]},
        {},
        400,
        "inputs[0].data",
    ),
    ("string data", "mlp", {"inputs": [x_input(data=["a"] * 16)]}, {}, 400, "inputs[0].data"),
    ("null data", "mlp", {"inputs": [x_input(data=[None] * 16)]}, {}, 400, "inputs[0].data"),
    (
        "bool data for FP32",
        "mlp",
        {"inputs": [x_input(data=[True] * 16)]},
        {},
        400,
        "inputs[0].data",
    ),
    ("wrong rank", "mlp", {"inputs": [x_input(shape=[1, 4, 4])]}, {}, 400, "inputs[0].shape"),
    ("wrong fixed dim", "mlp", {"inputs": [x_input(shape=[2, 8])]}, {}, 400, "inputs[0].shape"),
    ("unknown input", "mlp", {"inputs": [x_input(name="z")]}, {}, 400, "inputs[0].name"),
    ("duplicate input", "mlp", {"inputs": [x_input(), x_input()]}, {}, 400, "inputs[1].name"),
    (
        "over max_batch",
        "mlp",
        {"inputs": [x_input(shape=[5, 16], data=[0.5] * 80)]},
        {},
        400,
        "inputs.shape",
    ),
    ("id not a string", "mlp", {"id": 123, "inputs": [x_input()]}, {}, 400, "id"),
    (
        "unknown output",
        "mlp",
        {"inputs": [x_input()], "outputs": [{"name": "q"}]},
        {},
        400,
        "outputs[0].name",
    ),
    (
        "duplicate output",
        "mlp",
        {"inputs": [x_input()], "outputs": [{"name": "y"}, {"name": "y"}]},
        {},
        400,
        "outputs[1]",
    ),
    ("outputs not a list", "mlp", {"inputs": [x_input()], "outputs": "y"}, {}, 400, "outputs"),
    (
        "binary_data not bool",
        "mlp",
        {"inputs": [x_input()], "outputs": [{"name": "y", "parameters": {"binary_data": "yes"}}]},
        {},
        400,
        "outputs[0].parameters",
    ),
    (
        "classification",
        "mlp",
        {"inputs": [x_input()], "outputs": [{"name": "y", "parameters": {"classification": 2}}]},
        {},
        400,
        "outputs[0].parameters.classification",
    ),
    (
        "binary_data_output not bool",
        "mlp",
        {"inputs": [x_input()], "parameters": {"binary_data_output": 1}},
        {},
        400,
        "parameters",
    ),
    (
        "timeout negative",
        "mlp",
        {"inputs": [x_input()], "parameters": {"timeout": -5}},
        {},
        400,
        "parameters.timeout",
    ),
    (
        "timeout a string",
        "mlp",
        {"inputs": [x_input()], "parameters": {"timeout": "soon"}},
        {},
        400,
        "parameters.timeout",
    ),
    (
        "header length not a number",
        "mlp",
        {"inputs": [x_input()]},
        {"Inference-Header-Content-Length": "abc"},
        400,
        "Inference-Header-Content-Length",
    ),
    (
        "header length past the body",
        "mlp",
        {"inputs": [x_input()]},
        {"Inference-Header-Content-Length": "99999"},
        400,
        "Inference-Header-Content-Length",
    ),
    ("binary size wrong", "mlp", ("bin", 60, X), {}, 400, "inputs[0].parameters.binary_data_size"),
    (
        "binary body short",
        "mlp",
        ("bin", 64, X[:32]),
        {},
        400,
        "inputs[0].parameters.binary_data_size",
    ),
    (
        "binary trailing bytes",
        "mlp",
        ("bin", 64, X + b"\0\0\0\0"),
        {},
        400,
        "Inference-Header-Content-Length",
    ),
    (
        "binary size not a number",
        "mlp",
        ("bin", "64", X),
        {},
        400,
        "inputs[0].parameters.binary_data_size",
    ),
    ("data and binary both", "mlp", ("both", 64, X), {}, 400, "inputs[0].data"),
    ("missing input", "seq", {"inputs": seq_inputs()[:1]}, {}, 400, "inputs"),
    (
        "symbolic dims disagree",
        "seq",
        {
            "inputs": seq_inputs(
                mask={"name": "mask", "shape": [1, 6], "datatype": "INT64", "data": [1] * 6}
            )
        },
        {},
        400,
        "inputs[1].shape",
    ),
    (
        "batch sizes disagree",
        "seq",
        {
            "inputs": seq_inputs(
                mask={"name": "mask", "shape": [2, 5], "datatype": "INT64", "data": [1] * 10}
            )
        },
        {},
        400,
        "inputs[1].shape",
    ),
    (
        "floats for INT64",
        "seq",
        {
            "inputs": seq_inputs(
                ids={"name": "ids", "shape": [1, 5], "datatype": "INT64", "data": [1.5] * 5}
            )
        },
        {},
        400,
        "inputs[0].data",
    ),
    (
        "int beyond INT64",
        "seq",
        {
            "inputs": seq_inputs(
                ids={"name": "ids", "shape": [1, 5], "datatype": "INT64", "data": [2**70] * 5}
            )
        },
        {},
        400,
        "inputs[0].data",
    ),
    (
        "token id outside the vocabulary",
        "seq",
        {
            "inputs": seq_inputs(
                ids={"name": "ids", "shape": [1, 5], "datatype": "INT64", "data": [999] * 5}
            )
        },
        {},
        400,
        "inputs",
    ),
    ("unknown model", "nope", {"inputs": [x_input()]}, {}, 404, "model"),
    ("unknown version", "mlp/versions/7", {"inputs": [x_input()]}, {}, 404, "version"),
]


def _encode(body: Any, headers: dict[str, str]) -> tuple[bytes, dict[str, str]]:
    if isinstance(body, tuple):
        kind, size, raw = body
        item: dict[str, Any] = {
            "name": "x",
            "shape": [1, 16],
            "datatype": "FP32",
            "parameters": {"binary_data_size": size},
        }
        if kind == "both":
            item["data"] = [0.5] * 16
        head = json.dumps({"inputs": [item]}).encode()
        return head + raw, {"Inference-Header-Content-Length": str(len(head)), **headers}
    if isinstance(body, bytes):
        return body, headers
    return json.dumps(body).encode(), headers


def test_corpus_is_large_enough() -> None:
    assert len(CORPUS) >= 30


@pytest.mark.parametrize(
    ("case", "model", "body", "headers", "status", "field"), CORPUS, ids=[c[0] for c in CORPUS]
)
def test_malformed_request_gets_4xx_naming_the_field(
    client: TestClient, case, model, body, headers, status, field
) -> None:
    content, hdrs = _encode(body, headers)
    r = client.post(f"/v2/models/{model}/infer", content=content, headers=hdrs)
    assert r.status_code == status, r.text
    err = r.json()
    assert err["field"] == field, err
    assert err["error"]  # a message saying what was expected


def test_one_bad_request_in_a_batch_does_not_fail_the_others(client: TestClient) -> None:
    import concurrent.futures

    good = {"inputs": seq_inputs()}
    bad = {
        "inputs": seq_inputs(
            ids={"name": "ids", "shape": [1, 5], "datatype": "INT64", "data": [999] * 5}
        )
    }
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        codes = list(
            pool.map(
                lambda b: client.post("/v2/models/seq/infer", json=b).status_code, [good, bad] * 8
            )
        )
    assert codes == [200, 400] * 8


def test_server_is_healthy_after_the_corpus(client: TestClient) -> None:
    for case in CORPUS:
        content, hdrs = _encode(case[2], case[3])
        client.post(f"/v2/models/{case[1]}/infer", content=content, headers=hdrs)
    assert client.get("/v2/health/ready").status_code == 200
    r = client.post("/v2/models/mlp/infer", json={"inputs": [x_input()]})
    assert r.status_code == 200
    families = {f.name: f for f in text_string_to_metric_families(client.get("/metrics").text)}
    statuses = {s.labels["status"] for s in families["modelscale_requests"].samples}
    assert not any(s.startswith("5") for s in statuses), statuses
    restarts = [s.value for s in families["modelscale_replica_restarts"].samples]
    assert restarts == [0, 0]
