"""Static profile: what a model is made of, read from the graph without running it."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass

import numpy as np
import onnx

from modelscale.model.artifact import ModelArtifact

__all__ = ["WEIGHT_FORMATS", "StaticProfile", "static_profile"]

WEIGHT_FORMATS = {"fp32": 4.0, "fp16": 2.0, "int8": 1.0, "int4": 0.5}

# Tensors of these types hold learned weights; int64/int32 initializers are shapes, indices and
# position ids (buffers, not parameters), so they are excluded from the parameter count.
_PARAM_TYPES = {
    onnx.TensorProto.FLOAT,
    onnx.TensorProto.FLOAT16,
    onnx.TensorProto.BFLOAT16,
    onnx.TensorProto.DOUBLE,
    onnx.TensorProto.INT8,
    onnx.TensorProto.UINT8,
    onnx.TensorProto.INT4,
    onnx.TensorProto.UINT4,
}


@dataclass(frozen=True)
class StaticProfile:
    """Parameters, bytes by dtype, file size, op histogram and weight memory at several precisions."""

    parameters: int
    """Elements of weight tensors: float or 8/4-bit integer initializers and Constant tensors with
    more than one element (scalars are folded constants such as 1/sqrt(d), not learned weights),
    in the main graph and in every subgraph (``If`` branches, ``Loop`` and ``Scan`` bodies).

    Each tensor stored in the model counts once, where it is stored: a weight of the main graph
    that several branches read is one tensor, while two branches that each hold a tensor of the
    same name hold two tensors (ONNX scopes names per graph), and both count."""
    parameter_tensors: int
    bytes_by_dtype: dict[str, int]
    initializer_bytes: int
    file_bytes: int
    nodes: int
    op_histogram: dict[str, int]
    opsets: dict[str, int]
    weight_memory_bytes: dict[str, int]
    """Weight memory if every parameter were stored at fp32/fp16/int8/int4 (scales not included)."""


def _tensors(graph: onnx.GraphProto) -> list[onnx.TensorProto]:
    """Initializers and Constant-node tensors of a graph and its subgraphs: each stored tensor once."""
    out = list(graph.initializer)
    for node in graph.node:
        for attr in node.attribute:
            if node.op_type == "Constant" and attr.type == onnx.AttributeProto.TENSOR:
                out.append(attr.t)
            elif attr.type == onnx.AttributeProto.GRAPH:
                out.extend(_tensors(attr.g))
            elif attr.type == onnx.AttributeProto.GRAPHS:
                for g in attr.graphs:
                    out.extend(_tensors(g))
    return out


def _ops(graph: onnx.GraphProto, counter: Counter[str]) -> None:
    for node in graph.node:
        key = node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}.{node.op_type}"
        counter[key] += 1
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                _ops(attr.g, counter)
            elif attr.type == onnx.AttributeProto.GRAPHS:
                for g in attr.graphs:
                    _ops(g, counter)


def _nbytes(t: onnx.TensorProto) -> int:
    numel = math.prod(t.dims)
    if t.data_type in (onnx.TensorProto.INT4, onnx.TensorProto.UINT4):
        return (numel + 1) // 2
    if t.data_type == onnx.TensorProto.STRING:
        return sum(len(s) for s in t.string_data)
    try:
        itemsize = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(t.data_type)).itemsize
    except (KeyError, TypeError, ValueError):
        itemsize = 0
    return int(numel * itemsize)


def static_profile(artifact: ModelArtifact) -> StaticProfile:
    """Read parameters, bytes and ops from ``artifact``'s graph."""
    proto = artifact.proto()
    params = param_tensors = 0
    by_dtype: Counter[str] = Counter()
    # Not deduplicated by name: names are scoped per graph, so equal names in two subgraphs are
    # two tensors, and a graph cannot hold two tensors of one name.
    for t in _tensors(proto.graph):
        dtype = onnx.TensorProto.DataType.Name(t.data_type).lower()
        by_dtype[dtype] += _nbytes(t)
        numel = math.prod(t.dims)
        if t.data_type in _PARAM_TYPES and numel > 1:
            params += numel
            param_tensors += 1
    ops: Counter[str] = Counter()
    _ops(proto.graph, ops)
    return StaticProfile(
        parameters=int(params),
        parameter_tensors=param_tensors,
        bytes_by_dtype=dict(by_dtype.most_common()),
        initializer_bytes=int(sum(by_dtype.values())),
        file_bytes=artifact.size_bytes,
        nodes=int(sum(ops.values())),
        op_histogram=dict(ops.most_common()),
        opsets=dict(artifact.opsets),
        weight_memory_bytes={k: int(params * v) for k, v in WEIGHT_FORMATS.items()},
    )
