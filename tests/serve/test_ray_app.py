"""The Ray Serve application's replica logic, in-process: routes, batching, bad input.

Serving it through a real Ray cluster from an emitted config is ``tests/plan/test_ray_e2e.py``.
"""

from __future__ import annotations

import asyncio
import json
import pathlib
import time
from typing import Any

import numpy as np
import pytest
from starlette.requests import Request
from starlette.testclient import TestClient

from modelscale.errors import InvalidInput
from modelscale.runtime.engine import Engine
from modelscale.serve.codec import decode_request
from modelscale.serve.protocol import ApiError
from modelscale.serve.ray_app import DEFAULTS, ModelServer, build_app, check_user_config

_X = {"name": "x", "shape": [1, 16], "datatype": "FP32", "data": [0.0] * 16}


def _client(server: ModelServer, *, route_prefix: str = "") -> TestClient:
    """Requests handed to ``server`` as Ray's proxy hands them (under ``route_prefix``)."""

    async def asgi(scope: Any, receive: Any, send: Any) -> None:
        if route_prefix:
            scope = {**scope, "root_path": route_prefix, "path": route_prefix + scope["path"]}
        response = await server(Request(scope, receive))
        await response(scope, receive, send)

    return TestClient(asgi)


def _body(x: np.ndarray, **extra: Any) -> dict[str, Any]:
    return {
        "inputs": [
            {"name": "x", "shape": list(x.shape), "datatype": "FP32", "data": x.ravel().tolist()}
        ],
        **extra,
    }


@pytest.fixture
def mlp_server(mlp_path: pathlib.Path) -> ModelServer:
    return ModelServer(str(mlp_path), name="mlp")


def test_v2_routes_answer_like_modelscale_serve(
    mlp_server: ModelServer, mlp_path: pathlib.Path
) -> None:
    client = _client(mlp_server)
    assert client.get("/v2/health/live").json() == {"live": True}
    assert client.get("/v2/health/ready").json() == {"ready": True}
    assert "binary_tensor_data" in client.get("/v2").json()["extensions"]
    meta = client.get("/v2/models/mlp").json()
    assert meta["name"] == "mlp" and meta["versions"] == ["1"]
    assert meta["parameters"]["max_batch_size"] == DEFAULTS["max_batch_size"]
    assert [i["name"] for i in meta["inputs"]] == ["x"]
    assert client.get("/v2/models/mlp/versions/1/ready").json()["ready"] is True

    x = np.random.default_rng(0).standard_normal((3, 16)).astype(np.float32)
    expected = Engine(mlp_path).run({"x": x})[0]
    r = client.post("/v2/models/mlp/infer", json=_body(x, id="r1"), headers={"x-request-id": "h"})
    assert r.status_code == 200 and r.headers["x-request-id"] == "h"
    out = r.json()
    assert out["id"] == "r1" and out["model_name"] == "mlp" and out["model_version"] == "1"
    y = np.array(out["outputs"][0]["data"], dtype=np.float32).reshape(out["outputs"][0]["shape"])
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5)

    r = client.post(
        "/v2/models/mlp/versions/1/infer",
        json=_body(x, parameters={"binary_data_output": True}),
    )
    head = int(r.headers["inference-header-content-length"])
    meta_out = json.loads(r.content[:head])["outputs"][0]
    y = np.frombuffer(r.content[head:], dtype=np.float32).reshape(meta_out["shape"])
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "words"),
    [
        ("POST", "/v2/models/mlp/infer", b"{not json", 400, "JSON"),
        ("POST", "/v2/models/mlp/infer", {"inputs": [{"name": "z"}]}, 400, "inputs[0].shape"),
        ("POST", "/v2/models/mlp/infer", {"inputs": [{**_X, "name": "z"}]}, 400, "input 'z'"),
        ("POST", "/v2/models/other/infer", {"inputs": []}, 404, "unknown model 'other'"),
        ("POST", "/v2/models/mlp/versions/2/infer", {"inputs": []}, 404, "no version '2'"),
        ("GET", "/v2/models/mlp/infer", None, 405, "use POST"),
        ("POST", "/v2/health/live", None, 405, "use GET"),
        ("GET", "/metrics", None, 404, "no such endpoint"),
        ("GET", "/v2/models/mlp/extra", None, 404, "no such endpoint"),
    ],
)
def test_bad_requests_get_4xx_naming_the_problem(
    mlp_server: ModelServer, method: str, path: str, body: Any, status: int, words: str
) -> None:
    client = _client(mlp_server)
    kwargs: dict[str, Any] = (
        {"content": body} if isinstance(body, bytes) else {"json": body} if body else {}
    )
    r = client.request(method, path, **kwargs)
    assert r.status_code == status, r.text
    assert words in r.json()["error"]
    assert client.get("/v2/health/ready").status_code == 200  # and it keeps serving


def test_a_route_prefix_is_stripped(mlp_server: ModelServer) -> None:
    client = _client(mlp_server, route_prefix="/mlp-app")
    assert client.get("/v2/models/mlp").json()["name"] == "mlp"
    x = np.zeros((1, 16), dtype=np.float32)
    assert client.post("/v2/models/mlp/infer", json=_body(x)).status_code == 200


def test_oversized_body_is_413(mlp_path: pathlib.Path) -> None:
    client = _client(ModelServer(str(mlp_path), max_body_mb=0.001))
    x = np.zeros((64, 16), dtype=np.float32)
    r = client.post("/v2/models/mlp/infer", json=_body(x))
    assert r.status_code == 413 and "max_body_mb" in r.json()["error"]


def _decoded(server: ModelServer, ids: np.ndarray, **params: Any) -> Any:
    body = {
        "inputs": [
            {"name": "ids", "shape": list(ids.shape), "datatype": "INT64", "data": ids.ravel().tolist()},
            {
                "name": "mask",
                "shape": list(ids.shape),
                "datatype": "INT64",
                "data": [1] * ids.size,
            },
        ],
        "parameters": params,
    }  # fmt: skip
    return decode_request(json.dumps(body).encode(), None, server.contract)


def test_a_batch_stacks_equal_shapes_and_isolates_the_bad_request(seq_path: pathlib.Path) -> None:
    server = ModelServer(str(seq_path))
    engine = Engine(seq_path)
    good = [np.array([[1, 2, 3, 4]]), np.array([[5, 6, 7, 8], [9, 1, 2, 3]])]
    other_len = np.array([[4, 4]])
    bad = np.array([[1, 2, 3, 999]])  # a token id outside the vocabulary of 50
    reqs = [_decoded(server, a) for a in (good[0], bad, other_len, good[1])]
    expired = _decoded(server, good[0], timeout=0.001)
    now = time.monotonic()
    items = [(r, now) for r in reqs]
    items.append((expired, now - 10.0))  # waited 10 s: long past its 1 ms timeout
    replies = asyncio.run(server.infer_rows(items))
    for i, arr in ((0, good[0]), (2, other_len), (3, good[1])):
        want = engine.run({"ids": arr, "mask": np.ones_like(arr)})[0]
        np.testing.assert_allclose(replies[i]["out"], want, rtol=1e-5)
    assert isinstance(replies[1], ApiError) and replies[1].status == 400
    assert "model rejected the input" in str(replies[1])
    assert isinstance(replies[4], ApiError) and replies[4].status == 504


def test_args_and_user_config_are_checked(mlp_path: pathlib.Path, tmp_path: pathlib.Path) -> None:
    for args, words in (
        ({}, "args.model_path must be the path"),
        ({"model_path": str(tmp_path / "none.onnx")}, "no file at"),
        ({"model_path": str(mlp_path), "p99_ms": 10}, "args.p99_ms is not an argument"),
        ({"model_path": str(mlp_path), "threads": 0}, "args.threads must be an integer"),
        ({"model_path": str(mlp_path), "name": "a/b"}, "without '/'"),
        ({"model_path": str(mlp_path), "max_body_mb": -1}, "args.max_body_mb must be"),
        ("model.onnx", "must be a mapping"),
    ):
        with pytest.raises(InvalidInput, match=words.replace("(", r"\(")):
            build_app(args)  # type: ignore[arg-type]
    for config, words in (
        ({"max_batch": 8}, "user_config.max_batch is not a setting"),
        ({"max_batch_size": 0}, "max_batch_size must be an integer >= 1"),
        ({"intra_op_threads": True}, "intra_op_threads must be an integer"),
        ({"batch_wait_timeout_s": -0.1}, "batch_wait_timeout_s must be a number"),
        ({"batch_wait_timeout_s": float("nan")}, "batch_wait_timeout_s must be a number"),
        ([1, 2], "must be a mapping"),
    ):
        with pytest.raises(InvalidInput, match=words):
            check_user_config(config)  # type: ignore[arg-type]


def test_reconfigure_changes_batching_and_threads_in_place(mlp_path: pathlib.Path) -> None:
    server = ModelServer(str(mlp_path))
    engine = server.engine
    server.reconfigure({"max_batch_size": 16, "batch_wait_timeout_s": 0.002})
    assert server.engine is engine  # same threads: the session is kept
    assert server.contract.max_batch == 16
    assert server.contract.serving["max_wait_ms"] == pytest.approx(2.0)
    server.reconfigure({"intra_op_threads": 2})
    assert server.engine is not engine and server.engine.options.intra_op_threads == 2
    with pytest.raises(InvalidInput):
        server.reconfigure({"max_batch_size": -1})
    assert server.engine.options.intra_op_threads == 2  # a bad update leaves it as it was
