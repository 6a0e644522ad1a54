"""Fixtures for server tests: in-process apps with real replica processes, and a slow test model."""

from __future__ import annotations

import contextlib
import pathlib
from collections.abc import Iterator

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from starlette.testclient import TestClient

from modelscale.config import DeploymentSpec
from modelscale.serve import ServerProcess
from modelscale.serve.front import build_front


@contextlib.contextmanager
def app_client(spec: DeploymentSpec, *, api_key: str | None = None) -> Iterator[TestClient]:
    """A TestClient over the V2 app of ``spec``; replicas start on enter and stop on exit."""
    front = build_front(spec, api_key=api_key, manage_registry=True)
    with TestClient(front, raise_server_exceptions=True) as client:
        client.app_state = front.state  # type: ignore[attr-defined]
        yield client


def save_slow_model(path: pathlib.Path, *, width: int = 256, layers: int = 24) -> pathlib.Path:
    """x[batch, width] -> outer product [batch, width, width] -> `layers` x (MatMul + Tanh) -> mean.

    Compute-bound: ~2*layers*width^3 FLOP per row, so time grows with rows and batching saves
    little; one weight matrix shared by every layer keeps the file small.
    """
    rng = np.random.default_rng(3)
    w = (rng.standard_normal((width, width)) / np.sqrt(width)).astype(np.float32)
    nodes = [
        helper.make_node("Unsqueeze", ["x", "ax2"], ["col"]),
        helper.make_node("Unsqueeze", ["x", "ax1"], ["row"]),
        helper.make_node("MatMul", ["col", "row"], ["t0"]),
    ]
    for i in range(layers):
        nodes.append(helper.make_node("MatMul", [f"t{i}", "w"], [f"m{i}"]))
        nodes.append(helper.make_node("Tanh", [f"m{i}"], [f"t{i + 1}"]))
    nodes.append(helper.make_node("ReduceMean", [f"t{layers}", "ax1"], ["y"], keepdims=0))
    graph = helper.make_graph(
        nodes,
        "slow",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", width])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", width])],
        [
            numpy_helper.from_array(w, "w"),
            numpy_helper.from_array(np.array([1], dtype=np.int64), "ax1"),
            numpy_helper.from_array(np.array([2], dtype=np.int64), "ax2"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


@pytest.fixture(scope="session")
def slow_path(models_dir: pathlib.Path) -> pathlib.Path:
    """A model that takes milliseconds per row on one thread (x[batch, 256])."""
    return save_slow_model(models_dir / "slow.onnx")


@pytest.fixture(scope="module")
def mlp_client(mlp_path: pathlib.Path) -> Iterator[TestClient]:
    """One replica of the MLP (x[batch,16] -> y[batch,4]), max_batch 8, shared by a module."""
    spec = DeploymentSpec.single(mlp_path, name="mlp", max_batch=8, max_wait_ms=2)
    with app_client(spec) as client:
        yield client


def infer_body(x: np.ndarray, **extra: object) -> dict[str, object]:
    """A JSON V2 request for the MLP."""
    return {
        "inputs": [
            {"name": "x", "shape": list(x.shape), "datatype": "FP32", "data": x.ravel().tolist()}
        ],
        **extra,
    }


@pytest.fixture
def server_factory() -> Iterator:
    """Start ``modelscale serve`` processes (``ServerProcess`` options as keywords), ready;
    each is stopped at the end of the test."""
    started: list[ServerProcess] = []

    def start(spec: DeploymentSpec, **options: object) -> ServerProcess:
        server = ServerProcess(spec, **options).start()  # type: ignore[arg-type]
        started.append(server)
        server.wait_ready(120)
        return server

    yield start
    for s in started:
        s.close()
