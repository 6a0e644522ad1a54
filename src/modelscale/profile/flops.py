"""FLOPs and MACs of a model at a concrete input shape.

Shapes come from one real run of the unoptimised graph with every intermediate exposed, so each
node's count uses the exact shapes ONNX Runtime saw (no gaps where static shape inference gives up,
as it often does on exported transformers). The ops that dominate real models are counted exactly
(MatMul, Gemm, Conv, ConvTranspose, their integer and QLinear forms, fused attention); elementwise,
normalisation and pooling ops roughly (a fixed cost per element, documented below); anything else is
listed as uncounted. No maintained library does this for arbitrary ONNX graphs at run-time shapes,
hence this module.

Subgraphs count too, at the values the run gave them:

- ``If``: the branch taken at the given inputs (its condition is a value of the run). Only when the
  condition is unknown, the costlier branch.
- ``Loop``: one iteration of the body, run on the loop's initial values, times the number of
  iterations: the length of the loop's scan outputs when it has some, else the trip count ``M``
  of a loop whose condition cannot end it (no condition, or one that starts true and that the body
  passes on unchanged). A loop whose iteration count cannot be known that way (a while loop
  without scan outputs) is listed as uncounted rather than guessed.
- ``Scan``: one iteration of the body, on the first slice of each scan input, times the scan
  length.

An iteration's shapes are the first iteration's: a body whose shapes grow from one iteration to
the next is counted at its first. Ops inside subgraphs are added to ``flops_by_op`` under their own
op type; a subgraph that cannot be run on its own lists its control op as uncounted.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import onnx

from modelscale.errors import ModelscaleError
from modelscale.model.artifact import ModelArtifact
from modelscale.profile.graphrun import Scope, run_exposed, run_subgraph, subgraphs

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


_CONTROL_OPS = {"If", "Loop", "Scan"}


@dataclass
class _Tally:
    by_op: Counter[str] = field(default_factory=Counter)
    uncounted: Counter[str] = field(default_factory=Counter)
    macs: int = 0

    @property
    def flops(self) -> int:
        return int(sum(self.by_op.values()))

    def merge(self, other: _Tally) -> None:
        self.by_op.update(other.by_op)
        self.uncounted.update(other.uncounted)
        self.macs += other.macs


def _count_graph(
    model: onnx.ModelProto, graph: onnx.GraphProto, scope: Scope, tally: _Tally, times: int
) -> None:
    for node in graph.node:
        if node.op_type in _CONTROL_OPS and node.domain in ("", "ai.onnx"):
            if not _count_control(model, node, scope, tally, times):
                tally.uncounted[node.op_type] += 1
            continue
        counted = node_flops(
            node,
            [scope.shape(n) if n else None for n in node.input],
            [scope.shape(n) if n else None for n in node.output],
        )
        if counted is None:
            tally.uncounted[node.op_type] += 1
            continue
        flops, macs = counted
        tally.by_op[node.op_type] += flops * times
        tally.macs += macs * times


def _count_body(
    model: onnx.ModelProto,
    graph: onnx.GraphProto,
    values: list[object],
    scope: Scope,
    tally: _Tally,
    times: int,
) -> bool:
    """Run subgraph ``graph`` once with formal inputs ``values`` and count it ``times`` times."""
    if len(values) != len(graph.input):
        return False
    inputs = {vi.name: v for vi, v in zip(graph.input, values, strict=True)}
    try:
        run = run_subgraph(model, graph, inputs, scope)  # type: ignore[arg-type]
    except ModelscaleError:
        return False
    if run is None:
        return False
    _count_graph(model, graph, Scope.of(graph, run, scope), tally, times)
    return True


def _true(value: object) -> bool:
    return isinstance(value, np.ndarray) and value.size == 1 and bool(value.reshape(-1)[0])


def _passes_condition_on(body: onnx.GraphProto) -> bool:
    """Whether a Loop body's condition output is its condition input, directly or via Identity."""
    if len(body.input) < 2 or not body.output:
        return False
    cond_in, cond_out = body.input[1].name, body.output[0].name
    if cond_out == cond_in:
        return True
    return any(
        n.op_type == "Identity" and list(n.output) == [cond_out] and list(n.input) == [cond_in]
        for n in body.node
    )


def _count_control(
    model: onnx.ModelProto, node: onnx.NodeProto, scope: Scope, tally: _Tally, times: int
) -> bool:
    """Count an If, Loop or Scan node's subgraph by the rules in the module docstring."""
    graphs = dict(subgraphs(node))
    if node.op_type == "If":
        cond = scope.get(node.input[0])
        if isinstance(cond, np.ndarray) and cond.size == 1:
            taken = graphs["then_branch" if bool(cond.reshape(-1)[0]) else "else_branch"]
            return _count_body(model, taken, [], scope, tally, times)
        costliest: _Tally | None = None
        for branch in graphs.values():
            t = _Tally()
            if _count_body(model, branch, [], scope, t, times) and (
                costliest is None or t.flops > costliest.flops
            ):
                costliest = t
        if costliest is not None:
            tally.merge(costliest)
        return costliest is not None
    if node.op_type == "Loop":
        carried = list(node.input[2:])
        scan_outputs = node.output[len(carried) :]
        has_cond = len(node.input) > 1 and bool(node.input[1])
        cond = scope.get(node.input[1]) if has_cond else np.array(True)
        trip = scope.get(node.input[0]) if node.input and node.input[0] else None
        scanned_shape = scope.shape(scan_outputs[0]) if scan_outputs else None
        # A condition that starts true and that the body passes on unchanged (as exporters write
        # a for loop) ends nothing: the trip count alone decides.
        for_loop = not has_cond or (_true(cond) and _passes_condition_on(graphs["body"]))
        if scanned_shape:
            iterations = int(scanned_shape[0])
        elif for_loop and isinstance(trip, np.ndarray) and trip.size == 1:
            iterations = int(trip.reshape(-1)[0])
        else:
            return False
        if iterations <= 0:
            return True
        first = [np.array(0, dtype=np.int64), cond, *(scope.get(n) for n in carried)]
        return _count_body(model, graphs["body"], first, scope, tally, times * iterations)
    # Scan (opset 9+): initial states, then the scanned inputs.
    n_scan = int(_attr(node, "num_scan_inputs", 0))  # type: ignore[call-overload]
    n_state = len(node.input) - n_scan
    scanned = [scope.get(n) for n in node.input[n_state:]]
    if n_scan < 1 or not all(isinstance(v, np.ndarray) and v.ndim for v in scanned):
        return False
    axes = list(_attr(node, "scan_input_axes", None) or [0] * n_scan)  # type: ignore[call-overload]
    arrays = [np.asarray(v) for v in scanned]
    axes = [a % v.ndim for a, v in zip(axes, arrays, strict=True)]
    iterations = arrays[0].shape[axes[0]]
    if iterations <= 0:
        return True
    states = [scope.get(n) for n in node.input[:n_state]]
    slices = [np.take(v, 0, axis=a) for v, a in zip(arrays, axes, strict=True)]
    return _count_body(model, graphs["body"], [*states, *slices], scope, tally, times * iterations)


def count_flops(artifact: ModelArtifact, feeds: Mapping[str, np.ndarray]) -> FlopCount:
    """Count FLOPs and MACs of ``artifact`` when run on ``feeds`` (subgraphs included, see above)."""
    proto = artifact.proto()
    scope = Scope.of(proto.graph, run_exposed(proto, feeds))
    tally = _Tally()
    _count_graph(proto, proto.graph, scope, tally, 1)
    return FlopCount(
        input_shapes={k: list(v.shape) for k, v in feeds.items()},
        flops=tally.flops,
        macs=tally.macs,
        flops_by_op=dict(tally.by_op.most_common()),
        uncounted_ops=dict(tally.uncounted),
    )
