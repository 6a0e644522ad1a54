"""Fixtures for the compression tests: the digits example, a model that INT8 hurts, fast timing."""

from __future__ import annotations

import pathlib
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from modelscale.examples import ExampleBuild, build_example
from modelscale.profile import MeasureOptions

# Timing is not what these tests check; a few runs per point keep the suite quick.
FAST = MeasureOptions(warmup_runs=1, warmup_s=0.0, min_runs=3, min_time_s=0.005, max_time_s=0.05)


def fast(**overrides: Any) -> dict[str, Any]:
    """Keyword arguments for ``compress`` that keep a test to seconds."""
    return {"measure": FAST, "resamples": 200, "threads": 1, **overrides}


@pytest.fixture(scope="session")
def digits() -> ExampleBuild:
    return build_example("digits")


def save_outlier_mlp(path: pathlib.Path) -> pathlib.Path:
    """x[batch, 16] -> MatMul(w1) -> Relu -> MatMul(w2) -> y[batch, 8], named first/second.

    Row 0 of w1 is 1000x the others, so per-tensor INT8 rounds the rest of w1 to zero: the first
    MatMul is by far the most sensitive node. Its input feature is 1000x smaller (see
    ``outlier_inputs``), so every feature matters as much to y and no activation is extreme.
    """
    rng = np.random.default_rng(0)
    w1 = rng.standard_normal((16, 64)).astype(np.float32)
    w1[0, :] *= 1000.0
    w2 = rng.standard_normal((64, 8)).astype(np.float32)
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["h"], name="first"),
        helper.make_node("Relu", ["h"], ["r"], name="relu"),
        helper.make_node("MatMul", ["r", "w2"], ["y"], name="second"),
    ]
    graph = helper.make_graph(
        nodes,
        "outlier_mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 8])],
        [numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(w2, "w2")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


@pytest.fixture(scope="session")
def outlier_mlp(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    return save_outlier_mlp(tmp_path_factory.mktemp("outlier") / "outlier.onnx")


def outlier_inputs(rows: int, seed: int = 1) -> np.ndarray:
    """Inputs for the outlier model: feature 0 is 1000x smaller than the rest."""
    x = np.random.default_rng(seed).standard_normal((rows, 16)).astype(np.float32)
    x[:, 0] *= 1e-3
    return x


@pytest.fixture(scope="session")
def outlier_eval(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    """200 rows of inputs for the outlier model, no labels."""
    path = tmp_path_factory.mktemp("outlier_eval") / "eval.npz"
    np.savez(path, x=outlier_inputs(200))
    return path


def run_plain(path: str | pathlib.Path, feeds: dict[str, np.ndarray], output: str) -> np.ndarray:
    """Outputs from a plain onnxruntime session: independent of the code under test."""
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return np.asarray(sess.run([output], feeds)[0])
