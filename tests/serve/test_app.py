"""The V2 protocol in-process, against a real replica process: metadata, inference, errors, metrics."""

from __future__ import annotations

import json
import pathlib

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient

from modelscale.config import DeploymentSpec
from modelscale.model import ModelArtifact
from tests.serve.conftest import app_client, infer_body


def _reference(mlp_path, x: np.ndarray) -> np.ndarray:
    return ort.InferenceSession(str(mlp_path)).run(None, {"x": x})[0]


def test_server_metadata_lists_the_binary_extension(mlp_client: TestClient) -> None:
    r = mlp_client.get("/v2")
    assert r.status_code == 200
    assert r.json()["name"] == "modelscale"
    assert "binary_tensor_data" in r.json()["extensions"]


def test_health_and_readiness(mlp_client: TestClient) -> None:
    assert mlp_client.get("/v2/health/live").status_code == 200
    assert mlp_client.get("/v2/health/ready").status_code == 200
    assert mlp_client.get("/v2/models/mlp/ready").status_code == 200
    assert mlp_client.get("/v2/models/mlp/versions/1/ready").status_code == 200


def test_model_metadata_carries_the_sha256(mlp_client: TestClient, mlp_path) -> None:
    meta = mlp_client.get("/v2/models/mlp").json()
    assert meta["name"] == "mlp" and meta["versions"] == ["1"]
    assert meta["inputs"] == [{"name": "x", "datatype": "FP32", "shape": [-1, 16]}]
    assert meta["outputs"] == [{"name": "y", "datatype": "FP32", "shape": [-1, 4]}]
    assert meta["parameters"]["sha256"] == ModelArtifact.load(mlp_path).sha256
    assert mlp_client.get("/v2/models/mlp/versions/1").json() == meta


def test_json_inference_matches_onnxruntime_and_echoes_the_id(
    mlp_client: TestClient, mlp_path
) -> None:
    x = np.random.default_rng(0).standard_normal((3, 16)).astype(np.float32)
    r = mlp_client.post("/v2/models/mlp/infer", json=infer_body(x, id="req-7"))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["id"] == "req-7" and body["model_name"] == "mlp" and body["model_version"] == "1"
    (out,) = body["outputs"]
    assert out["name"] == "y" and out["datatype"] == "FP32" and out["shape"] == [3, 4]
    np.testing.assert_allclose(
        np.array(out["data"]).reshape(3, 4), _reference(mlp_path, x), rtol=1e-5
    )


def test_nested_json_data_is_accepted(mlp_client: TestClient) -> None:
    x = np.ones((2, 16), dtype=np.float32)
    body = {"inputs": [{"name": "x", "shape": [2, 16], "datatype": "FP32", "data": x.tolist()}]}
    assert mlp_client.post("/v2/models/mlp/infer", json=body).status_code == 200


def test_binary_inference_in_and_out(mlp_client: TestClient, mlp_path) -> None:
    x = np.random.default_rng(1).standard_normal((2, 16)).astype(np.float32)
    head = json.dumps(
        {
            "inputs": [
                {
                    "name": "x",
                    "shape": [2, 16],
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": x.nbytes},
                }
            ],
            "outputs": [{"name": "y", "parameters": {"binary_data": True}}],
        }
    ).encode()
    r = mlp_client.post(
        "/v2/models/mlp/infer",
        content=head + x.tobytes(),
        headers={
            "Inference-Header-Content-Length": str(len(head)),
            "Content-Type": "application/octet-stream",
        },
    )
    assert r.status_code == 200, r.text
    n = int(r.headers["inference-header-content-length"])
    meta = json.loads(r.content[:n])
    (out,) = meta["outputs"]
    assert out["parameters"]["binary_data_size"] == 2 * 4 * 4
    y = np.frombuffer(r.content[n:], dtype=np.float32).reshape(2, 4)
    np.testing.assert_allclose(y, _reference(mlp_path, x), rtol=1e-5)


def test_binary_data_output_applies_to_all_outputs(mlp_client: TestClient) -> None:
    x = np.zeros((1, 16), dtype=np.float32)
    r = mlp_client.post(
        "/v2/models/mlp/infer", json=infer_body(x, parameters={"binary_data_output": True})
    )
    assert r.status_code == 200
    assert "inference-header-content-length" in r.headers


def test_x_request_id_header_is_echoed(mlp_client: TestClient) -> None:
    x = np.zeros((1, 16), dtype=np.float32)
    r = mlp_client.post("/v2/models/mlp/infer", json=infer_body(x), headers={"X-Request-ID": "abc"})
    assert r.headers["x-request-id"] == "abc"


@pytest.mark.parametrize(
    ("path", "status", "field"),
    [
        ("/v2/models/nope", 404, "model"),
        ("/v2/models/mlp/versions/9", 404, "version"),
        ("/v2/models/nope/ready", 404, "model"),
    ],
)
def test_unknown_models_and_versions_are_404_naming_what_exists(
    mlp_client: TestClient, path, status, field
) -> None:
    r = mlp_client.get(path)
    assert r.status_code == status
    assert r.json()["field"] == field
    assert "mlp" in r.json()["error"] or "1" in r.json()["error"]


def test_unknown_route_and_wrong_method(mlp_client: TestClient) -> None:
    assert mlp_client.get("/v3/nothing").status_code == 404
    assert "error" in mlp_client.get("/v3/nothing").json()
    r = mlp_client.get("/v2/models/mlp/infer")
    assert r.status_code == 405 and "error" in r.json()


def test_oversized_body_is_413(mlp_path) -> None:
    from modelscale.config import DeploymentSpec
    from tests.serve.conftest import app_client

    data = DeploymentSpec.single(mlp_path, name="mlp").model_dump(mode="json")
    data["server"]["max_body_mb"] = 0.001  # ~1 KiB
    spec = DeploymentSpec.from_dict(data)
    with app_client(spec) as client:
        x = np.full((8, 16), 0.123456789, dtype=np.float32)  # ~2.5 KiB of JSON
        r = client.post("/v2/models/mlp/infer", json=infer_body(x))
        assert r.status_code == 413 and r.json()["field"] == "body"

        def chunks():
            yield b'{"inputs": ['
            for _ in range(200):
                yield b"          "

        r = client.post("/v2/models/mlp/infer", content=chunks())  # no Content-Length: streamed
        assert r.status_code == 413
        ok = client.post(
            "/v2/models/mlp/infer", json=infer_body(np.zeros((1, 16), dtype=np.float32))
        )
        assert ok.status_code == 200


def test_metrics_parse_and_count_requests(mlp_client: TestClient) -> None:
    x = np.zeros((2, 16), dtype=np.float32)
    for _ in range(3):
        assert mlp_client.post("/v2/models/mlp/infer", json=infer_body(x)).status_code == 200
    mlp_client.post("/v2/models/mlp/infer", json={"inputs": []})
    r = mlp_client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(r.text)}
    ok = [
        s
        for s in families["modelscale_requests"].samples
        if s.name == "modelscale_requests_total" and s.labels["status"] == "200"
    ]
    assert ok and ok[0].value >= 3 and ok[0].labels["model"] == "mlp"
    bad = [s for s in families["modelscale_requests"].samples if s.labels.get("status") == "400"]
    assert bad
    for name in (
        "modelscale_request_duration_seconds",
        "modelscale_queue_duration_seconds",
        "modelscale_batch_size",
        "modelscale_inference_duration_seconds",
        "modelscale_batch_roundtrip_seconds",
        "modelscale_queue_depth",
        "modelscale_replicas_ready",
    ):
        assert name in families, name
    ready = [s for s in families["modelscale_replicas_ready"].samples]
    assert ready[0].value == 1
    buckets = [
        s.labels["le"]
        for s in families["modelscale_request_duration_seconds"].samples
        if s.name.endswith("_bucket")
    ]
    assert "0.1" in buckets and "0.05" in buckets  # common SLOs are bucket edges
    sizes = [
        s
        for s in families["modelscale_batch_size"].samples
        if s.name == "modelscale_batch_size_sum"
    ]
    assert sizes[0].value >= 6


def test_concurrent_requests_are_batched_and_split_back(mlp_client: TestClient, mlp_path) -> None:
    import concurrent.futures

    rng = np.random.default_rng(5)
    xs = [rng.standard_normal((1, 16)).astype(np.float32) for _ in range(16)]

    def call(x: np.ndarray) -> np.ndarray:
        r = mlp_client.post("/v2/models/mlp/infer", json=infer_body(x))
        assert r.status_code == 200
        return np.array(r.json()["outputs"][0]["data"]).reshape(1, 4)

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        outs = list(pool.map(call, xs))
    for x, y in zip(xs, outs, strict=True):
        np.testing.assert_allclose(y, _reference(mlp_path, x), rtol=1e-5)


def test_a_model_onnxruntime_cannot_load_fails_startup_with_the_reason(tmp_path) -> None:
    import onnx
    from onnx import TensorProto, helper

    from modelscale.config import DeploymentSpec
    from modelscale.errors import ServerError
    from tests.serve.conftest import app_client

    node = helper.make_node("NoSuchOp", ["x"], ["y"], domain="example.unknown")
    graph = helper.make_graph(
        [node],
        "bad",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 2])],
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("example.unknown", 1)],
    )
    model.ir_version = 8
    path = tmp_path / "bad.onnx"
    onnx.save(model, str(path))
    with (
        pytest.raises(ServerError, match="failed to load"),
        app_client(DeploymentSpec.single(path)),
    ):
        pass


def _save_streaming_model(path: pathlib.Path) -> pathlib.Path:
    """x[batch, 4] * sr and state[2, batch, 3] + sr, with sr a 0-d sample rate: an exported
    streaming model's shape (a scalar input, a state whose batch is on axis 1)."""
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [
            helper.make_node("Cast", ["sr"], ["srf"], to=TensorProto.FLOAT),
            helper.make_node("Mul", ["x", "srf"], ["y"]),
            helper.make_node("Add", ["state", "srf"], ["state_out"]),
        ],
        "streaming",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4]),
            helper.make_tensor_value_info("sr", TensorProto.INT64, []),
            helper.make_tensor_value_info("state", TensorProto.FLOAT, [2, "batch", 3]),
        ],
        [
            helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4]),
            helper.make_tensor_value_info("state_out", TensorProto.FLOAT, [2, "batch", 3]),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def test_a_scalar_input_and_a_state_batched_on_axis_1_are_served_unbatched(tmp_path) -> None:
    spec = DeploymentSpec.single(_save_streaming_model(tmp_path / "s.onnx"), name="s")
    with app_client(spec) as client:
        meta = client.get("/v2/models/s").json()
        # Requests are never stacked: a scalar has no batch axis to stack along, and the state's
        # batch is not on axis 0.
        assert meta["parameters"]["max_batch_size"] == 0
        assert [i["shape"] for i in meta["inputs"]] == [[-1, 4], [], [2, -1, 3]]
        x = {"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}
        sr = {"name": "sr", "shape": [], "datatype": "INT64", "data": [2]}
        state = {"name": "state", "shape": [2, 1, 3], "datatype": "FP32", "data": [0] * 6}
        r = client.post("/v2/models/s/infer", json={"inputs": [x, sr, state]})
        assert r.status_code == 200, r.text
        outputs = {o["name"]: o for o in r.json()["outputs"]}
        assert outputs["y"]["data"] == [2.0, 4.0, 6.0, 8.0]
        assert outputs["state_out"]["shape"] == [2, 1, 3]
        sr["shape"] = [1]
        r = client.post("/v2/models/s/infer", json={"inputs": [x, sr, state]})
        assert r.status_code == 400 and r.json()["field"] == "inputs[1].shape"


def test_a_dim_written_as_minus_one_is_dynamic(tmp_path) -> None:
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])],
        "exported",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [-1, 3, "?", "?"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [-1, 3, "?", "?"])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(tmp_path / "m.onnx"))
    spec = DeploymentSpec.single(tmp_path / "m.onnx", name="m", max_batch=4)
    with app_client(spec) as client:
        meta = client.get("/v2/models/m").json()
        assert meta["inputs"][0]["shape"] == [-1, 3, -1, -1]
        assert meta["parameters"]["max_batch_size"] == 4  # batchable: axis 0 is dynamic
        x = {"name": "x", "shape": [2, 3, 5, 7], "datatype": "FP32", "data": [-1.0] * 210}
        r = client.post("/v2/models/m/infer", json={"inputs": [x]})
        assert r.status_code == 200, r.text
        assert r.json()["outputs"][0]["shape"] == [2, 3, 5, 7]
