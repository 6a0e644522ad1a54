"""A corpus of malformed requests: each gets a 4xx naming the field, and the server stays healthy."""

from __future__ import annotations

import json
import pathlib
from collections.abc import Iterator
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient

from modelscale.config import DeploymentSpec
from tests.serve.conftest import app_client


def save_broadcast_model(path: pathlib.Path) -> pathlib.Path:
    """x[batch, n] + c[1, 4] -> Log -> y[batch, n]: declares any n, runs only n in (1, 4).

    The model accepts the request's shape, then fails inside ONNX Runtime at run time, as
    MiniLM does past its 512 positions; and Log gives NaN for x + c < 0.
    """
    c = numpy_helper.from_array(np.ones((1, 4), dtype=np.float32), "c")
    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "c"], ["s"]), helper.make_node("Log", ["s"], ["y"])],
        "bcast",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "n"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", "n"])],
        [c],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


@pytest.fixture(scope="module")
def client(mlp_path, seq_path, tmp_path_factory) -> Iterator[TestClient]:
    bcast = save_broadcast_model(tmp_path_factory.mktemp("bcast") / "bcast.onnx")
    spec = DeploymentSpec.from_dict(
        {
            "models": {
                "mlp": {"versions": {"1": {"path": str(mlp_path)}}, "batching": {"max_batch": 4}},
                "seq": {"versions": {"1": {"path": str(seq_path)}}, "batching": {"max_batch": 4}},
                "bcast": {"versions": {"1": {"path": str(bcast)}}, "batching": {"max_batch": 4}},
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

_DEEP = b'{"inputs": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
_TEXT = {"Content-Type": "text/plain"}

# What a hostile or careless client sends: each once made the server answer 500, drop the
# connection, or run the model before refusing.
CORPUS += [
    ("id with CR LF", "mlp", {"id": "a\r\nSet-Cookie: x=1", "inputs": [x_input()]}, {}, 400, "id"),
    ("id not Latin-1", "mlp", {"id": "\u2603 snow", "inputs": [x_input()]}, {}, 400, "id"),
    ("id with NUL", "mlp", {"id": "a\u0000b", "inputs": [x_input()]}, {}, 400, "id"),
    ("id with a tab", "mlp", {"id": "a\tb", "inputs": [x_input()]}, {}, 400, "id"),
    ("id too long", "mlp", {"id": "a" * 257, "inputs": [x_input()]}, {}, 400, "id"),
    ("id accented", "mlp", {"id": "caf\u00e9", "inputs": [x_input()]}, {}, 400, "id"),
    (
        "X-Request-Id not ASCII",
        "mlp",
        {"inputs": [x_input()]},
        {"X-Request-Id": "caf\u00e9".encode("latin-1")},
        400,
        "X-Request-Id",
    ),
    (
        "X-Request-Id too long",
        "mlp",
        {"inputs": [x_input()]},
        {"X-Request-Id": "r" * 300},
        400,
        "X-Request-Id",
    ),
    (
        "65 dims",
        "mlp",
        {"inputs": [x_input(shape=[1] * 65, data=[0.5])]},
        {},
        400,
        "inputs[0].shape",
    ),
    (
        "1000 dims",
        "mlp",
        {"inputs": [x_input(shape=[1] * 1000, data=[0.5])]},
        {},
        400,
        "inputs[0].shape",
    ),
    (
        "zero dim beside huge dims",
        "mlp",
        {"inputs": [x_input(shape=[0, 2**40, 2**40, 2**40], data=[])]},
        {},
        400,
        "inputs[0].shape",
    ),
    (
        "zero dim last",
        "mlp",
        {"inputs": [x_input(shape=[2**62, 2**62, 0], data=[])]},
        {},
        400,
        "inputs[0].shape",
    ),
    (
        "huge dims, binary",
        "mlp",
        {"inputs": [x_input(shape=[2**40, 2**40], data=..., parameters={"binary_data_size": 64})]},
        {},
        400,
        "inputs[0].parameters.binary_data_size",
    ),
    ("dim beyond int64", "mlp", {"inputs": [x_input(shape=[1, 2**70])]}, {}, 400, "inputs[0].data"),
    ("shape a dict", "mlp", {"inputs": [x_input(shape={"a": 1})]}, {}, 400, "inputs[0].shape"),
    (
        "shape of floats",
        "mlp",
        {"inputs": [x_input(shape=[1.0, 16.0])]},
        {},
        400,
        "inputs[0].shape[0]",
    ),
    ("data a dict", "mlp", {"inputs": [x_input(data={"a": 1})]}, {}, 400, "inputs[0].data"),
    (
        "data strings NaN",
        "mlp",
        {"inputs": [x_input(data=["NaN"] * 16)]},
        {},
        400,
        "inputs[0].data",
    ),
    ("input a string", "mlp", {"inputs": ["x"]}, {}, 400, "inputs[0]"),
    ("parameters a list", "mlp", {"inputs": [x_input()], "parameters": [1]}, {}, 400, "parameters"),
    (
        "datatype lower case",
        "mlp",
        {"inputs": [x_input(datatype="fp32")]},
        {},
        400,
        "inputs[0].datatype",
    ),
    ("json null", "mlp", b"null", {}, 400, "body"),
    ("json number", "mlp", b"42", {}, 400, "body"),
    ("json nested 100,000 deep", "mlp", _DEEP, {}, 400, "body"),
    (
        "byte order mark",
        "mlp",
        b"\xef\xbb\xbf" + json.dumps({"inputs": [x_input()]}).encode(),
        {},
        400,
        "body",
    ),
    ("invalid UTF-8", "mlp", b'{"id": "\xff\xfe", "inputs": []}', {}, 400, "body"),
    ("Content-Type text/plain", "mlp", {"inputs": [x_input()]}, _TEXT, 415, "Content-Type"),
    (
        "Content-Type multipart",
        "mlp",
        {"inputs": [x_input()]},
        {"Content-Type": "multipart/form-data; boundary=x"},
        415,
        "Content-Type",
    ),
    (
        "Content-Type XML",
        "mlp",
        {"inputs": [x_input()]},
        {"Content-Type": "application/xml"},
        415,
        "Content-Type",
    ),
    (
        "model fails at run time on a shape it declares",
        "bcast",
        {"inputs": [{"name": "x", "shape": [1, 5], "datatype": "FP32", "data": [0.5] * 5}]},
        {},
        400,
        "inputs",
    ),
    (
        "negative token id",
        "seq",
        {
            "inputs": seq_inputs(
                ids={"name": "ids", "shape": [1, 5], "datatype": "INT64", "data": [-999] * 5}
            )
        },
        {},
        400,
        "inputs",
    ),
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
    assert len(CORPUS) >= 80


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
    import psutil

    def corpus() -> None:
        for case in CORPUS:
            content, hdrs = _encode(case[2], case[3])
            client.post(f"/v2/models/{case[1]}/infer", content=content, headers=hdrs)

    corpus()
    rss = psutil.Process().memory_info().rss
    for _ in range(3):
        corpus()
    # The front runs in this process: whatever the corpus costs, it does not accumulate.
    assert psutil.Process().memory_info().rss - rss < 50 * 2**20
    assert client.get("/v2/health/ready").status_code == 200
    r = client.post("/v2/models/mlp/infer", json={"inputs": [x_input()]})
    assert r.status_code == 200
    families = {f.name: f for f in text_string_to_metric_families(client.get("/metrics").text)}
    statuses = {
        s.labels["status"]
        for s in families["modelscale_requests"].samples
        if s.value > 0  # the 5xx series exist from the start, at 0
    }
    assert not any(s.startswith("5") for s in statuses), statuses
    restarts = [s.value for s in families["modelscale_replica_restarts"].samples]
    assert restarts == [0, 0, 0]


@pytest.mark.parametrize(
    "content_type",
    [
        None,
        "application/json",
        "application/json; charset=utf-8",
        "APPLICATION/JSON",
        "application/x-www-form-urlencoded",  # curl -d
        "application/vnd.kserve+json",
    ],
)
def test_json_content_types_are_taken(client: TestClient, content_type: str | None) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    body = json.dumps({"inputs": [x_input()]}).encode()
    r = client.post("/v2/models/mlp/infer", content=body, headers=headers)
    assert r.status_code == 200, r.text


def test_a_valid_request_id_is_echoed_in_body_and_header(client: TestClient) -> None:
    r = client.post("/v2/models/mlp/infer", json={"id": "req-42 a/b:c", "inputs": [x_input()]})
    assert r.status_code == 200
    assert r.json()["id"] == "req-42 a/b:c" and r.headers["x-request-id"] == "req-42 a/b:c"
    r = client.post(
        "/v2/models/mlp/infer", json={"inputs": [x_input()]}, headers={"X-Request-Id": "h-1"}
    )
    assert r.headers["x-request-id"] == "h-1"


def test_an_invalid_request_id_is_counted_as_the_400_it_got(client: TestClient) -> None:
    def count() -> float:
        text = client.get("/metrics").text
        for family in text_string_to_metric_families(text):
            if family.name == "modelscale_requests":
                return sum(
                    s.value
                    for s in family.samples
                    if s.labels["model"] == "mlp" and s.labels["status"] == "400"
                )
        return 0.0

    before = count()
    r = client.post("/v2/models/mlp/infer", json={"id": "a\r\nb", "inputs": [x_input()]})
    # The bad id is not echoed (a server-made id may be, for finding the request in the log).
    assert r.status_code == 400 and "\n" not in r.headers.get("x-request-id", "")
    assert r.headers.get("x-request-id") != "a\r\nb"
    client.get("/v2/health/live")  # the recorder is off the request path: let it run
    assert count() == before + 1


def test_non_finite_outputs_are_null_and_named(client: TestClient) -> None:
    # Log(x + 1): x = -2 gives NaN, x = -1 gives -inf; JSON carries neither.
    x = {"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [-2.0, -1.0, 0.0, 1.0]}
    r = client.post("/v2/models/bcast/infer", json={"inputs": [x]})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["parameters"]["non_finite_outputs"] == "y"
    assert body["outputs"][0]["data"][:3] == [None, None, 0.0]
    x["data"] = [0.0, 1.0, 2.0, 3.0]
    body = client.post("/v2/models/bcast/infer", json={"inputs": [x]}).json()
    assert "parameters" not in body


def test_engine_errors_carry_no_source_paths(client: TestClient) -> None:
    x = {"name": "x", "shape": [1, 5], "datatype": "FP32", "data": [0.5] * 5}
    r = client.post("/v2/models/bcast/infer", json={"inputs": [x]})
    assert r.status_code == 400
    message = r.json()["error"]
    assert "broadcast" in message.lower(), message
    assert ".cc:" not in message and ".h:" not in message and "onnxruntime::" not in message


def test_a_trailing_slash_is_a_404_with_a_hint_never_a_redirect(client: TestClient) -> None:
    r = client.get("/v2/models/mlp/", headers={"Host": "evil.example"}, follow_redirects=False)
    assert r.status_code == 404 and "location" not in r.headers
    assert "/v2/models/mlp?" in r.json()["error"]
