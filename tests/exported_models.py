"""ONNX graphs shaped like models exported by other frameworks and converters, built with onnx.helper.

Each reproduces something real exports do that models built by this project do not: a batch axis
written as dim_value -1, unnamed dims written as '?', weights inside If/Loop/Scan subgraphs, a 0-d
sample-rate input, a recurrent state whose batch axis is 1, an old opset.
"""

from __future__ import annotations

import pathlib
from collections.abc import Sequence

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

__all__ = [
    "save_conv_only",
    "save_data_dependent",
    "save_minus_one_batch",
    "save_stateful",
    "save_subgraph_weights",
]

Dims = Sequence[int | str | None]


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def _value_info(name: str, elem: int, dims: Dims) -> onnx.ValueInfoProto:
    """Like helper.make_tensor_value_info, but an int dim is written as dim_value even when < 0,
    and the string '?' as dim_param '?', as converters write them."""
    vi = helper.make_tensor_value_info(name, elem, None)
    shape = vi.type.tensor_type.shape
    shape.SetInParent()
    for d in dims:
        dim = shape.dim.add()
        if isinstance(d, int):
            dim.dim_value = d
        elif isinstance(d, str):
            dim.dim_param = d
    return vi


def _save(graph: onnx.GraphProto, path: pathlib.Path, opset: int) -> pathlib.Path:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 7 if opset < 13 else 8
    onnx.save(model, str(path))
    return path


def save_minus_one_batch(
    path: pathlib.Path, *, opset: int = 17, hw: str | None = "?"
) -> pathlib.Path:
    """x[-1, 3, ?, ?] -> Conv -> Relu -> GlobalAveragePool -> Flatten -> MatMul -> y[-1, 4].

    The batch axis is dim_value -1 and the two spatial axes are unnamed (dim_param '?' by default,
    or no value with ``hw=None``), as an image model converted from another framework has them.
    """
    rng = _rng(3)
    w = rng.standard_normal((8, 3, 3, 3)).astype(np.float32)
    fc = rng.standard_normal((8, 4)).astype(np.float32)
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1], kernel_shape=[3, 3]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("GlobalAveragePool", ["r"], ["g"]),
        helper.make_node("Flatten", ["g"], ["f"]),
        helper.make_node("MatMul", ["f", "fc"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "minus_one",
        [_value_info("x", TensorProto.FLOAT, [-1, 3, hw, hw])],
        [_value_info("y", TensorProto.FLOAT, [-1, 4])],
        [numpy_helper.from_array(w, "w"), numpy_helper.from_array(fc, "fc")],
    )
    return _save(graph, path, opset)


def save_conv_only(path: pathlib.Path, *, opset: int = 17) -> pathlib.Path:
    """x[N, 3, 8, 8] -> Conv -> Relu -> y[N, 4, 8, 8]: nothing that dynamic INT8 quantizes."""
    rng = _rng(4)
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1], kernel_shape=[3, 3]),
        helper.make_node("Relu", ["c"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "conv_only",
        [_value_info("x", TensorProto.FLOAT, ["N", 3, 8, 8])],
        [_value_info("y", TensorProto.FLOAT, ["N", 4, 8, 8])],
        [numpy_helper.from_array(w, "w")],
    )
    return _save(graph, path, opset)


def save_subgraph_weights(path: pathlib.Path) -> pathlib.Path:
    """x[batch, 4] with weights inside an If (both branches) and a Loop body.

    - ``If(flag)``: each branch holds its own initializer named ``w`` (4x8 in ``then``, 4x8 in
      ``else``, different values) and does ``x @ w``; flag is computed as ``sum(x) > -1e9``, true.
    - ``Loop`` with trip count 3 over ``h[batch, 8]``: its body holds ``u`` (8x8) and does
      ``h = h @ u``, and emits ``h`` as a scan output.
    - The main graph holds ``v`` (8x2): ``y = h_final @ v``.

    Parameters: 32 + 32 + 64 + 16 = 144. MACs at batch B: 32 B (the taken branch) + 3 x 64 B
    (three iterations) + 16 B.
    """
    rng = _rng(5)

    def init(name: str, shape: tuple[int, ...]) -> onnx.TensorProto:
        return numpy_helper.from_array(rng.standard_normal(shape).astype(np.float32), name)

    then_branch = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["t"])],
        "then",
        [],
        [_value_info("t", TensorProto.FLOAT, ["batch", 8])],
        [init("w", (4, 8))],
    )
    else_branch = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["e"])],
        "else",
        [],
        [_value_info("e", TensorProto.FLOAT, ["batch", 8])],
        [init("w", (4, 8))],
    )
    body = helper.make_graph(
        [
            helper.make_node("Identity", ["cond_in"], ["cond_out"]),
            helper.make_node("MatMul", ["h_in", "u"], ["h_out"]),
            helper.make_node("Identity", ["h_out"], ["h_scan"]),
        ],
        "body",
        [
            _value_info("i", TensorProto.INT64, []),
            _value_info("cond_in", TensorProto.BOOL, []),
            _value_info("h_in", TensorProto.FLOAT, ["batch", 8]),
        ],
        [
            _value_info("cond_out", TensorProto.BOOL, []),
            _value_info("h_out", TensorProto.FLOAT, ["batch", 8]),
            _value_info("h_scan", TensorProto.FLOAT, ["batch", 8]),
        ],
        [init("u", (8, 8))],
    )
    nodes = [
        helper.make_node("ReduceSum", ["x"], ["s"], keepdims=0),
        helper.make_node("Greater", ["s", "low"], ["flag"]),
        helper.make_node("If", ["flag"], ["h0"], then_branch=then_branch, else_branch=else_branch),
        helper.make_node("Loop", ["trip", "", "h0"], ["h3", "hs"], body=body),
        helper.make_node("MatMul", ["h3", "v"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "subgraphs",
        [_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [
            _value_info("y", TensorProto.FLOAT, ["batch", 2]),
            _value_info("hs", TensorProto.FLOAT, [3, "batch", 8]),
        ],
        [
            numpy_helper.from_array(np.array(-1e9, np.float32), "low"),
            numpy_helper.from_array(np.array(3, np.int64), "trip"),
            init("v", (8, 2)),
        ],
    )
    return _save(graph, path, 17)


def save_stateful(path: pathlib.Path, *, opset: int = 17) -> pathlib.Path:
    """A streaming audio model: x[batch, 16], state[2, batch, 8], sr (0-d int64).

    ``sr`` picks a gain from a two-entry table (0 or 1, as a model that accepts two sample rates
    by index would): any other value fails inside the model, at a node named after it. Outputs
    y[batch, 4] and the next state[2, batch, 8].
    """
    rng = _rng(6)
    w = rng.standard_normal((16, 8)).astype(np.float32)
    fc = rng.standard_normal((8, 4)).astype(np.float32)
    nodes = [
        helper.make_node("Gather", ["gains", "sr"], ["gain"], name="check_sr"),
        helper.make_node("MatMul", ["x", "w"], ["h"]),
        helper.make_node("Mul", ["h", "gain"], ["hg"]),
        helper.make_node("Add", ["state", "hg"], ["state_out"]),  # [2, B, 8] + [B, 8]
        helper.make_node("ReduceMean", ["state_out"], ["m"], axes=[0], keepdims=0)
        if opset < 18
        else helper.make_node("ReduceMean", ["state_out", "axes0"], ["m"], keepdims=0),
        helper.make_node("MatMul", ["m", "fc"], ["y"]),
    ]
    inits = [
        numpy_helper.from_array(np.array([1.0, 0.5], np.float32), "gains"),
        numpy_helper.from_array(w, "w"),
        numpy_helper.from_array(fc, "fc"),
    ]
    if opset >= 18:
        inits.append(numpy_helper.from_array(np.array([0], np.int64), "axes0"))
    graph = helper.make_graph(
        nodes,
        "stateful",
        [
            _value_info("x", TensorProto.FLOAT, ["batch", 16]),
            _value_info("state", TensorProto.FLOAT, [2, "batch", 8]),
            _value_info("sr", TensorProto.INT64, []),
        ],
        [
            _value_info("y", TensorProto.FLOAT, ["batch", 4]),
            _value_info("state_out", TensorProto.FLOAT, [2, "batch", 8]),
        ],
        inits,
    )
    return _save(graph, path, opset)


def save_data_dependent(path: pathlib.Path) -> pathlib.Path:
    """x[N, 4] -> rows with x[:, 0] > 0 (Compress) -> MatMul -> Relu -> y[?, 3].

    The activations' row count depends on the values, so it differs between calibration batches.
    """
    rng = _rng(7)
    nodes = [
        helper.make_node("Gather", ["x", "idx"], ["c0"], axis=1),
        helper.make_node("Greater", ["c0", "zero"], ["keep"]),
        helper.make_node("Compress", ["x", "keep"], ["xs"], axis=0),
        helper.make_node("MatMul", ["xs", "w"], ["h"]),
        helper.make_node("Relu", ["h"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "data_dependent",
        [_value_info("x", TensorProto.FLOAT, ["N", 4])],
        [_value_info("y", TensorProto.FLOAT, [None, 3])],
        [
            numpy_helper.from_array(rng.standard_normal((4, 3)).astype(np.float32), "w"),
            numpy_helper.from_array(np.array(0.0, np.float32), "zero"),
            numpy_helper.from_array(np.array(0, np.int64), "idx"),
        ],
    )
    return _save(graph, path, 17)
