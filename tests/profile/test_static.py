from __future__ import annotations

import pathlib

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from modelscale.model import ModelArtifact
from modelscale.profile import static_profile
from tests.exported_models import save_subgraph_weights


def test_mlp(mlp_path: pathlib.Path) -> None:
    s = static_profile(ModelArtifact.load(mlp_path))
    assert s.parameters == 16 * 32 + 32 + 4 * 32 + 4
    assert s.parameter_tensors == 4
    assert s.bytes_by_dtype == {"float": 4 * s.parameters}
    assert s.op_histogram == {"MatMul": 1, "Add": 1, "Relu": 1, "Gemm": 1}
    assert s.weight_memory_bytes == {
        "fp32": 4 * s.parameters,
        "fp16": 2 * s.parameters,
        "int8": s.parameters,
        "int4": s.parameters // 2,
    }
    assert s.file_bytes == mlp_path.stat().st_size


def test_index_buffers_and_scalars_are_not_parameters(tmp_path: pathlib.Path) -> None:
    """position_ids-like int64 buffers and folded scalar constants are not learned weights."""
    w = numpy_helper.from_array(np.ones((4, 4), np.float16), "w")
    pos = numpy_helper.from_array(np.arange(64, dtype=np.int64), "pos")
    scale = numpy_helper.from_array(np.array(0.125, np.float32), "scale")
    const = helper.make_node(
        "Constant", [], ["k"], value=numpy_helper.from_array(np.ones(3, np.float32))
    )
    graph = helper.make_graph(
        [const, helper.make_node("MatMul", ["x", "w"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT16, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT16, [1, 4])],
        [w, pos, scale],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    p = tmp_path / "m.onnx"
    onnx.save(model, str(p))
    s = static_profile(ModelArtifact.load(p))
    assert s.parameters == 16 + 3  # w and the Constant node's vector
    assert s.bytes_by_dtype == {"int64": 512, "float": 4 + 12, "float16": 32}
    assert s.op_histogram == {"Constant": 1, "MatMul": 1}


def test_weights_inside_if_and_loop_subgraphs_count_per_tensor(tmp_path: pathlib.Path) -> None:
    """Both If branches hold a tensor named w: two tensors, both counted; the Loop body's too."""
    s = static_profile(ModelArtifact.load(save_subgraph_weights(tmp_path / "sub.onnx")))
    assert s.parameters == 4 * 8 + 4 * 8 + 8 * 8 + 8 * 2
    assert s.parameter_tensors == 4
    assert s.op_histogram["MatMul"] == 4  # two branches, the loop body, the main graph
