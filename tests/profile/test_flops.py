from __future__ import annotations

import pathlib

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from modelscale.model import InputChoice, ModelArtifact, make_inputs
from modelscale.profile import count_flops
from modelscale.profile.flops import node_flops
from tests.exported_models import save_subgraph_weights


def _flops(path: pathlib.Path, batch: int, **dims: int):
    art = ModelArtifact.load(path)
    ranges = {"ids": (0, 49)} if "ids" in art.signature.input_names else {}
    choice = InputChoice(dims=dims, int_ranges=ranges)
    return count_flops(art, make_inputs(art.signature, batch=batch, choice=choice))


def test_mlp_exact(mlp_path: pathlib.Path) -> None:
    f = _flops(mlp_path, batch=3)
    # MatMul 3x16 @ 16x32; Gemm 3x32 @ 32x4 (+bias); Add and Relu on 3x32
    matmul, gemm = 3 * 16 * 32, 3 * 32 * 4
    assert f.macs == matmul + gemm
    assert f.flops_by_op == {"MatMul": 2 * matmul, "Gemm": 2 * gemm + 3 * 4, "Add": 96, "Relu": 96}
    assert f.flops == 2 * (matmul + gemm) + 12 + 96 + 96
    assert f.uncounted_ops == {}


def test_conv_exact(conv_path: pathlib.Path) -> None:
    f = _flops(conv_path, batch=2)
    # output 2x8x8x8, each output element: 3 in-channels x 3x3 kernel
    assert f.macs == 2 * 8 * 8 * 8 * 3 * 3 * 3
    assert f.flops_by_op["Relu"] == 2 * 8 * 8 * 8


def test_flops_scale_with_batch_and_seq(seq_path: pathlib.Path) -> None:
    small = _flops(seq_path, batch=1, seq=8)
    assert _flops(seq_path, batch=4, seq=8).macs == 4 * small.macs
    assert _flops(seq_path, batch=1, seq=32).macs == 4 * small.macs
    assert small.macs == 8 * 8 * 8  # [1,8,8] @ [8,8]


@pytest.mark.parametrize(
    ("op", "ins", "out", "attrs", "macs"),
    [
        ("MatMul", [(2, 12, 5, 64), (2, 12, 64, 5)], (2, 12, 5, 5), {}, 2 * 12 * 5 * 64 * 5),
        ("MatMul", [(7, 3), (3,)], (7,), {}, 7 * 3),
        ("Gemm", [(8, 4), (5, 4)], (8, 5), {"transB": 1}, 8 * 5 * 4),
        ("Gemm", [(4, 8), (4, 5)], (8, 5), {"transA": 1}, 8 * 5 * 4),
        ("ConvTranspose", [(1, 4, 5, 5), (4, 2, 3, 3)], (1, 2, 7, 7), {}, 4 * 5 * 5 * 2 * 3 * 3),
        ("Conv", [(1, 4, 5, 5), (8, 2, 3, 3)], (1, 8, 3, 3), {"group": 2}, 8 * 3 * 3 * 2 * 3 * 3),
    ],
)
def test_node_formulas(op: str, ins: list, out: tuple, attrs: dict, macs: int) -> None:
    node = helper.make_node(op, [f"i{k}" for k in range(len(ins))], ["o"], **attrs)
    flops, got = node_flops(node, ins, [out])
    assert got == macs
    assert flops >= 2 * macs


def test_unknown_op_is_reported_not_guessed() -> None:
    node = helper.make_node("MysteryOp", ["a"], ["b"], domain="com.example")
    assert node_flops(node, [(2, 2)], [(2, 2)]) is None


def test_uncounted_ops_are_listed(tmp_path: pathlib.Path) -> None:
    graph = helper.make_graph(
        [helper.make_node("Einsum", ["a", "b"], ["c"], equation="ij,jk->ik")],
        "einsum",
        [
            helper.make_tensor_value_info("a", TensorProto.FLOAT, ["n", 3]),
            helper.make_tensor_value_info("b", TensorProto.FLOAT, [3, 4]),
        ],
        [helper.make_tensor_value_info("c", TensorProto.FLOAT, ["n", 4])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    p = tmp_path / "einsum.onnx"
    onnx.save(model, str(p))
    art = ModelArtifact.load(p)
    f = count_flops(art, {"a": np.ones((2, 3), np.float32), "b": np.ones((3, 4), np.float32)})
    assert f.uncounted_ops == {"Einsum": 1}


def test_subgraphs_count_the_taken_branch_and_every_iteration(tmp_path: pathlib.Path) -> None:
    art = ModelArtifact.load(save_subgraph_weights(tmp_path / "sub.onnx"))
    f = count_flops(art, {"x": np.ones((5, 4), np.float32)})
    # the taken If branch (5x4 @ 4x8), three Loop iterations (5x8 @ 8x8), the last MatMul
    assert f.macs == 5 * 4 * 8 + 3 * 5 * 8 * 8 + 5 * 8 * 2
    assert f.flops_by_op["MatMul"] == 2 * f.macs
    assert f.uncounted_ops == {}


def test_a_while_loop_without_scan_outputs_is_uncounted_not_guessed(tmp_path: pathlib.Path) -> None:
    body = helper.make_graph(
        [
            helper.make_node("Less", ["i", "three"], ["cond_out"]),
            helper.make_node("Add", ["h_in", "h_in"], ["h_out"]),
        ],
        "body",
        [
            helper.make_tensor_value_info("i", TensorProto.INT64, []),
            helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
            helper.make_tensor_value_info("h_in", TensorProto.FLOAT, [2]),
        ],
        [
            helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
            helper.make_tensor_value_info("h_out", TensorProto.FLOAT, [2]),
        ],
        [onnx.numpy_helper.from_array(np.array(3, np.int64), "three")],
    )
    graph = helper.make_graph(
        [helper.make_node("Loop", ["", "go", "x"], ["y"], body=body)],
        "while",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])],
        [onnx.numpy_helper.from_array(np.array(True), "go")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    p = tmp_path / "while.onnx"
    onnx.save(model, str(p))
    f = count_flops(ModelArtifact.load(p), {"x": np.ones(2, np.float32)})
    assert f.uncounted_ops == {"Loop": 1} and f.flops == 0


def test_scan_counts_its_body_once_per_step(tmp_path: pathlib.Path) -> None:
    """x[T, 1, 4] scanned: each step does x_t @ w (4x8, held in the body) + state."""
    w = onnx.numpy_helper.from_array(np.ones((4, 8), np.float32), "w")
    body = helper.make_graph(
        [
            helper.make_node("MatMul", ["x_t", "w"], ["p"]),
            helper.make_node("Add", ["p", "s_in"], ["s_out"]),
            helper.make_node("Identity", ["s_out"], ["y_t"]),
        ],
        "step",
        [
            helper.make_tensor_value_info("s_in", TensorProto.FLOAT, [1, 8]),
            helper.make_tensor_value_info("x_t", TensorProto.FLOAT, [1, 4]),
        ],
        [
            helper.make_tensor_value_info("s_out", TensorProto.FLOAT, [1, 8]),
            helper.make_tensor_value_info("y_t", TensorProto.FLOAT, [1, 8]),
        ],
        [w],
    )
    graph = helper.make_graph(
        [helper.make_node("Scan", ["s0", "x"], ["s", "y"], body=body, num_scan_inputs=1)],
        "scan",
        [
            helper.make_tensor_value_info("s0", TensorProto.FLOAT, [1, 8]),
            helper.make_tensor_value_info("x", TensorProto.FLOAT, ["T", 1, 4]),
        ],
        [
            helper.make_tensor_value_info("s", TensorProto.FLOAT, [1, 8]),
            helper.make_tensor_value_info("y", TensorProto.FLOAT, ["T", 1, 8]),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    p = tmp_path / "scan.onnx"
    onnx.save(model, str(p))
    art = ModelArtifact.load(p)
    feeds = {"s0": np.zeros((1, 8), np.float32), "x": np.ones((6, 1, 4), np.float32)}
    f = count_flops(art, feeds)
    assert f.macs == 6 * 4 * 8
    assert f.flops_by_op == {"MatMul": 2 * 6 * 32, "Add": 6 * 8, "Identity": 0}


def test_a_for_loop_with_a_pass_through_condition_counts_its_trip_count(
    tmp_path: pathlib.Path,
) -> None:
    """Exporters write a for loop as Loop(M, cond=true) whose body passes cond on unchanged."""
    body = helper.make_graph(
        [
            helper.make_node("Identity", ["cond_in"], ["cond_out"]),
            helper.make_node("MatMul", ["h_in", "u"], ["h_out"]),
        ],
        "body",
        [
            helper.make_tensor_value_info("i", TensorProto.INT64, []),
            helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
            helper.make_tensor_value_info("h_in", TensorProto.FLOAT, [2, 4]),
        ],
        [
            helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
            helper.make_tensor_value_info("h_out", TensorProto.FLOAT, [2, 4]),
        ],
        [onnx.numpy_helper.from_array(np.eye(4, dtype=np.float32), "u")],
    )
    graph = helper.make_graph(
        [helper.make_node("Loop", ["m", "go", "x"], ["y"], body=body)],
        "for",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 4])],
        [
            onnx.numpy_helper.from_array(np.array(True), "go"),
            onnx.numpy_helper.from_array(np.array(5, np.int64), "m"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    p = tmp_path / "for.onnx"
    onnx.save(model, str(p))
    f = count_flops(ModelArtifact.load(p), {"x": np.ones((2, 4), np.float32)})
    assert f.macs == 5 * 2 * 4 * 4 and f.uncounted_ops == {}
