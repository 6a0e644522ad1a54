"""FLOPs and MACs of a model at a concrete input shape.

Shapes come from one real run of the unoptimised graph with every intermediate exposed, so each
node's count uses the exact shapes ONNX Runtime saw (no gaps where static shape inference gives up,
as it often does on exported transformers). The ops that dominate real models are counted exactly
(MatMul, Gemm, Conv, ConvTranspose, their integer and QLinear forms, fused attention); elementwise,
normalisation and pooling ops roughly (a fixed cost per element, documented below); anything else is
listed as uncounted. No maintained library does this for arbitrary ONNX graphs at run-time shapes,
hence this module.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import onnx

from modelscale.model.artifact import ModelArtifact
from modelscale.runtime import Engine, EngineOptions

__all__ = ["FlopCount", "count_flops", "node_flops"]

Shape = tuple[int, ...]

# Rough FLOPs per output element for ops that are not multiply-accumulate bound.
_ELEMENTWISE_COST = {
    **dict.fromkeys(
        (
            "Add",
            "Sub",
            "Mul",
            "Div",
            "Relu",
            "LeakyRelu",
            "PRelu",
            "Neg",
            "Abs",
            "Max",
            "Min",
            "Sqrt",
            "Reciprocal",
            "Pow",
            "Exp",
            "Log",
            "Erf",
            "Tanh",
            "Sigmoid",
            "Clip",
            "Where",
            "Equal",
            "Less",
            "Greater",
            "LessOrEqual",
            "GreaterOrEqual",
            "IsNaN",
            "IsInf",
            "Xor",
            "BitShift",
            "Not",
            "And",
            "Or",
            "Cast",
            "Floor",
            "Ceil",
            "Round",
            "Sin",
            "Cos",
            "Sign",
            "Mod",
        ),
        1,
    ),
    **dict.fromkeys(("HardSigmoid", "HardSwish", "Elu", "Selu", "Softplus"), 3),
    **dict.fromkeys(("Gelu", "FastGelu", "BiasGelu", "QuickGelu"), 8),
    **dict.fromkeys(("Softmax", "LogSoftmax"), 5),
    **dict.fromkeys(
        (
            "LayerNormalization",
            "SimplifiedLayerNormalization",
            "SkipLayerNormalization",
            "BatchNormalization",
            "InstanceNormalization",
            "GroupNormalization",
        ),
        8,
    ),
    "QuantizeLinear": 3,
    "DequantizeLinear": 2,
    "DynamicQuantizeLinear": 4,
}
# Reductions cost one FLOP per input element.
_REDUCE_OPS = {
    "ReduceMean",
    "ReduceSum",
    "ReduceMax",
    "ReduceMin",
    "ReduceL2",
    "ReduceProd",
    "ReduceSumSquare",
    "GlobalAveragePool",
    "GlobalMaxPool",
}
_MATMUL_OPS = {
    "MatMul",
    "MatMulInteger",
    "QLinearMatMul",
    "FusedMatMul",
    "MatMulNBits",
    "DynamicQuantizeMatMul",
    "MatMulIntegerToFloat",
}
_CONV_OPS = {"Conv", "ConvInteger", "QLinearConv", "FusedConv"}
_SHAPE_ONLY = {
    "Shape",
    "Reshape",
    "Transpose",
    "Squeeze",
    "Unsqueeze",
    "Concat",
    "Slice",
    "Gather",
    "Constant",
    "ConstantOfShape",
    "Identity",
    "Flatten",
    "Expand",
    "Range",
    "Split",
    "Size",
    "Tile",
    "Pad",
    "GatherElements",
    "ScatterND",
    "NonZero",
    "Dropout",
    "CastLike",
    "Unique",
    "TopK",
    "ArgMax",
    "ArgMin",
    "GatherND",
    "Trilu",
    "ZipMap",
    "Resize",
    "DepthToSpace",
    "SpaceToDepth",
}


@dataclass(frozen=True)
class FlopCount:
    """FLOPs (2 per multiply-accumulate, plus rough elementwise costs) at one set of input shapes."""

    input_shapes: dict[str, list[int]]
    flops: int
    macs: int
    flops_by_op: dict[str, int]
    uncounted_ops: dict[str, int] = field(default_factory=dict)
    """Op types (with node counts) that had no formula or no shapes; their cost is not included."""
    shape_source: str = "onnxruntime run"


def _numel(shape: Shape) -> int:
    return int(math.prod(shape))


def _matmul_macs(a: Shape, b: Shape) -> int:
    a2 = (1, *a) if len(a) == 1 else a
    b2 = (*b, 1) if len(b) == 1 else b
    m, k = a2[-2], a2[-1]
    n = b2[-1]
    batch = np.broadcast_shapes(tuple(a2[:-2]), tuple(b2[:-2]))
    return _numel(tuple(batch)) * m * k * n


def _attr(node: onnx.NodeProto, name: str, default: object) -> object:
    for a in node.attribute:
        if a.name == name:
            return onnx.helper.get_attribute_value(a)
    return default


def node_flops(
    node: onnx.NodeProto, in_shapes: list[Shape | None], out_shapes: list[Shape | None]
) -> tuple[int, int] | None:
    """(flops, macs) of one node, or None when the op has no formula or shapes are missing."""
    op = node.op_type
    out0 = out_shapes[0] if out_shapes else None
    if op in _MATMUL_OPS:
        a, b = in_shapes[0], (in_shapes[3] if op == "QLinearMatMul" else in_shapes[1])
        if a is None or b is None:
            return None
        if op == "MatMulNBits":  # B is packed; K and N are attributes
            k, n = int(_attr(node, "K", 0)), int(_attr(node, "N", 0))  # type: ignore[call-overload]
            macs = _numel(a[:-1]) * k * n
        else:
            macs = _matmul_macs(a, b)
        return 2 * macs, macs
    if op == "Gemm":
        a, b = in_shapes[0], in_shapes[1]
        if a is None or b is None or out0 is None:
            return None
        k = a[0] if _attr(node, "transA", 0) else a[1]
        macs = out0[0] * out0[1] * k
        bias = _numel(out0) if len(in_shapes) > 2 and in_shapes[2] is not None else 0
        return 2 * macs + bias, macs
    if op in _CONV_OPS:
        w = in_shapes[3] if op == "QLinearConv" else in_shapes[1]
        if w is None or out0 is None:
            return None
        # weight: (Cout, Cin/group, *kernel)
        macs = _numel(out0) * _numel(w[1:])
        return 2 * macs, macs
    if op == "ConvTranspose":
        x, w = in_shapes[0], in_shapes[1]
        if x is None or w is None:
            return None
        # weight: (Cin, Cout/group, *kernel); every input element scatters into Cout/group * kernel
        macs = _numel(x) * _numel(w[1:])
        return 2 * macs, macs
    if op in ("Attention", "MultiHeadAttention"):
        x = in_shapes[0]
        if x is None or out0 is None or len(x) != 3:
            return None
        n_batch, n_seq, hidden = x
        qkv = in_shapes[1] if op == "Attention" and len(in_shapes) > 1 else None
        macs = n_batch * n_seq * hidden * qkv[-1] if qkv is not None else 0  # fused projection
        macs += 2 * n_batch * n_seq * n_seq * out0[-1]  # QK^T and attention x V
        return 2 * macs, macs
    if op in ("MaxPool", "AveragePool", "LpPool"):
        if out0 is None:
            return None
        kernel = _attr(node, "kernel_shape", [])
        return _numel(out0) * _numel(tuple(kernel)), 0  # type: ignore[arg-type]
    if op in _REDUCE_OPS:
        if in_shapes[0] is None:
            return None
        return _numel(in_shapes[0]), 0
    if op in _ELEMENTWISE_COST:
        if out0 is None:
            return None
        return _ELEMENTWISE_COST[op] * _numel(out0), 0
    if op in _SHAPE_ONLY:
        return 0, 0
    return None


def _exposed_model(proto: onnx.ModelProto) -> onnx.ModelProto:
    """A copy whose graph outputs are every node output of the top-level graph."""
    exposed = onnx.ModelProto()
    exposed.CopyFrom(proto)
    have = {o.name for o in exposed.graph.output}
    for node in exposed.graph.node:
        for name in node.output:
            if name and name not in have:
                exposed.graph.output.append(onnx.ValueInfoProto(name=name))
                have.add(name)
    return exposed


def _initializer_shapes(proto: onnx.ModelProto) -> dict[str, Shape]:
    shapes = {t.name: tuple(int(d) for d in t.dims) for t in proto.graph.initializer}
    for node in proto.graph.node:
        if node.op_type == "Constant":
            value = _attr(node, "value", None)
            if isinstance(value, onnx.TensorProto):
                shapes[node.output[0]] = tuple(int(d) for d in value.dims)
    return shapes


def count_flops(artifact: ModelArtifact, feeds: Mapping[str, np.ndarray]) -> FlopCount:
    """Count FLOPs and MACs of ``artifact`` when run on ``feeds``."""
    proto = artifact.proto()
    exposed = _exposed_model(proto)
    engine = Engine(
        exposed.SerializeToString(),
        EngineOptions(intra_op_threads=1, graph_optimization="disable"),
    )
    outputs = engine.run(feeds)
    shapes: dict[str, Shape] = _initializer_shapes(proto)
    shapes.update({k: tuple(v.shape) for k, v in feeds.items()})
    for name, value in zip(engine.output_names, outputs, strict=True):
        if isinstance(value, np.ndarray):
            shapes[name] = tuple(value.shape)

    flops_by_op: Counter[str] = Counter()
    uncounted: Counter[str] = Counter()
    total_flops = total_macs = 0
    for node in proto.graph.node:
        counted = node_flops(
            node,
            [shapes.get(n) if n else None for n in node.input],
            [shapes.get(n) if n else None for n in node.output],
        )
        if counted is None:
            uncounted[node.op_type] += 1
            continue
        flops, macs = counted
        flops_by_op[node.op_type] += flops
        total_flops += flops
        total_macs += macs
    return FlopCount(
        input_shapes={k: list(v.shape) for k, v in feeds.items()},
        flops=total_flops,
        macs=total_macs,
        flops_by_op=dict(flops_by_op.most_common()),
        uncounted_ops=dict(uncounted),
    )
