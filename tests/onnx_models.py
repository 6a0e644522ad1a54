"""Small real ONNX models built with onnx.helper, for tests that need exact, known structure."""

from __future__ import annotations

import pathlib

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

__all__ = [
    "save_conv",
    "save_mlp",
    "save_onnx_ml_classifier",
    "save_seq_model",
    "save_unloadable",
]


def _init(name: str, arr: np.ndarray) -> onnx.TensorProto:
    return numpy_helper.from_array(arr, name)


def save_mlp(
    path: pathlib.Path, *, d_in: int = 16, d_hidden: int = 32, d_out: int = 4
) -> pathlib.Path:
    """x[batch, d_in] -> MatMul+Add+Relu -> Gemm -> y[batch, d_out]."""
    rng = np.random.default_rng(0)
    w1 = rng.standard_normal((d_in, d_hidden)).astype(np.float32)
    b1 = rng.standard_normal(d_hidden).astype(np.float32)
    w2 = rng.standard_normal((d_out, d_hidden)).astype(np.float32)
    b2 = rng.standard_normal(d_out).astype(np.float32)
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["h0"]),
        helper.make_node("Add", ["h0", "b1"], ["h1"]),
        helper.make_node("Relu", ["h1"], ["h2"]),
        helper.make_node("Gemm", ["h2", "w2", "b2"], ["y"], transB=1),
    ]
    graph = helper.make_graph(
        nodes,
        "mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", d_in])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", d_out])],
        [_init("w1", w1), _init("b1", b1), _init("w2", w2), _init("b2", b2)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def save_conv(path: pathlib.Path, *, batch: int | str = "N") -> pathlib.Path:
    """x[batch,3,8,8] -> Conv(8 out, 3x3, pad 1) -> Relu -> y[batch,8,8,8]; batch may be fixed."""
    rng = np.random.default_rng(1)
    w = rng.standard_normal((8, 3, 3, 3)).astype(np.float32)
    b = rng.standard_normal(8).astype(np.float32)
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1], kernel_shape=[3, 3]),
        helper.make_node("Relu", ["c"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "conv",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, 8, 8, 8])],
        [_init("w", w), _init("b", b)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def save_seq_model(
    path: pathlib.Path, *, vocab: int = 50, dim: int = 8, seq: str | None = "seq"
) -> pathlib.Path:
    """ids[batch, seq] (int64) + mask[batch, seq] -> Gather embedding -> MatMul -> out[batch, seq, dim].

    ``seq=None`` leaves the sequence axis unnamed, as some exporters do.
    """
    rng = np.random.default_rng(2)
    emb = rng.standard_normal((vocab, dim)).astype(np.float32)
    w = rng.standard_normal((dim, dim)).astype(np.float32)
    nodes = [
        helper.make_node("Gather", ["emb", "ids"], ["e"]),
        helper.make_node("Cast", ["mask"], ["maskf"], to=TensorProto.FLOAT),
        helper.make_node("Unsqueeze", ["maskf", "axes"], ["mask3"]),
        helper.make_node("Mul", ["e", "mask3"], ["em"]),
        helper.make_node("MatMul", ["em", "w"], ["out"]),
    ]
    seq_dim: str | None = seq
    ids = helper.make_tensor_value_info("ids", TensorProto.INT64, ["batch", seq_dim])
    mask = helper.make_tensor_value_info("mask", TensorProto.INT64, ["batch", seq_dim])
    graph = helper.make_graph(
        nodes,
        "seq",
        [ids, mask],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["batch", seq_dim, dim])],
        [_init("emb", emb), _init("w", w), _init("axes", np.array([2], dtype=np.int64))],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def save_onnx_ml_classifier(path: pathlib.Path) -> pathlib.Path:
    """LinearClassifier + ZipMap, the shape of a converted scikit-learn logistic regression."""
    nodes = [
        helper.make_node(
            "LinearClassifier",
            ["x"],
            ["label", "scores"],
            domain="ai.onnx.ml",
            classlabels_ints=[0, 1, 2],
            coefficients=[0.1 * i for i in range(12)],
            intercepts=[0.0, 0.1, 0.2],
            post_transform="SOFTMAX",
        ),
        helper.make_node(
            "ZipMap",
            ["scores"],
            ["probabilities"],
            domain="ai.onnx.ml",
            classlabels_int64s=[0, 1, 2],
        ),
    ]
    seq_map = helper.make_sequence_type_proto(
        helper.make_map_type_proto(
            TensorProto.INT64, helper.make_tensor_type_proto(TensorProto.FLOAT, [])
        )
    )
    graph = helper.make_graph(
        nodes,
        "ml",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 4])],
        [
            helper.make_tensor_value_info("label", TensorProto.INT64, [None]),
            helper.make_value_info("probabilities", seq_map),
        ],
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("ai.onnx.ml", 3)]
    )
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def save_unloadable(path: pathlib.Path) -> pathlib.Path:
    """Valid ONNX that ONNX Runtime refuses: it uses an op no opset defines (NoSuchOp)."""
    graph = helper.make_graph(
        [helper.make_node("NoSuchOp", ["x"], ["y"])],
        "bad",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path
