"""Run a graph or one of its subgraphs with every intermediate value exposed.

FLOP counting needs the shapes ONNX Runtime actually sees. For the top-level graph every node output
is made a graph output and the model runs once. A subgraph (an ``If`` branch, a ``Loop`` or ``Scan``
body) cannot be exposed that way, so it is cut out as a model of its own: its formal inputs and the
outer values it reads become graph inputs, fed with the values the enclosing run produced.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

from modelscale.runtime import Engine, EngineOptions

__all__ = ["Scope", "free_names", "run_exposed", "run_subgraph", "subgraphs"]

_ENGINE = EngineOptions(intra_op_threads=1, graph_optimization="disable")


def subgraphs(node: onnx.NodeProto) -> Iterator[tuple[str, onnx.GraphProto]]:
    """(attribute name, graph) for every subgraph attribute of ``node``."""
    for attr in node.attribute:
        if attr.type == onnx.AttributeProto.GRAPH:
            yield attr.name, attr.g
        elif attr.type == onnx.AttributeProto.GRAPHS:
            for g in attr.graphs:
                yield attr.name, g


def free_names(graph: onnx.GraphProto) -> set[str]:
    """Names ``graph`` (or a subgraph of it) reads but does not define: values of enclosing scopes."""
    defined = {i.name for i in graph.input} | {t.name for t in graph.initializer}
    defined |= {t.values.name for t in graph.sparse_initializer}
    used: set[str] = {o.name for o in graph.output}
    for node in graph.node:
        used.update(n for n in node.input if n)
        for _, g in subgraphs(node):
            used |= free_names(g)
        defined.update(n for n in node.output if n)
    return used - defined


@dataclass
class Scope:
    """The values one run produced, the graph's weights, and the scope that encloses it."""

    values: dict[str, Any]
    initializers: dict[str, onnx.TensorProto] = field(default_factory=dict)
    parent: Scope | None = None

    @classmethod
    def of(
        cls, graph: onnx.GraphProto, values: Mapping[str, Any], parent: Scope | None = None
    ) -> Scope:
        """The scope of ``graph`` after a run that gave ``values``."""
        return cls(dict(values), {t.name: t for t in graph.initializer}, parent)

    def get(self, name: str) -> Any:
        """The value called ``name`` here or in an enclosing scope; None when unknown."""
        scope: Scope | None = self
        while scope is not None:
            if name in scope.values:
                return scope.values[name]
            if name in scope.initializers:
                return numpy_helper.to_array(scope.initializers[name])
            scope = scope.parent
        return None

    def shape(self, name: str) -> tuple[int, ...] | None:
        """The shape of ``name`` without converting a weight to an array; None when unknown."""
        scope: Scope | None = self
        while scope is not None:
            if name in scope.values:
                value = scope.values[name]
                return tuple(value.shape) if isinstance(value, np.ndarray) else None
            if name in scope.initializers:
                return tuple(int(d) for d in scope.initializers[name].dims)
            scope = scope.parent
        return None


def _outputs(graph: onnx.GraphProto, have: set[str]) -> list[onnx.ValueInfoProto]:
    out = []
    for node in graph.node:
        for name in node.output:
            if name and name not in have:
                out.append(onnx.ValueInfoProto(name=name))
                have.add(name)
    return out


def run_exposed(model: onnx.ModelProto, feeds: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """Run ``model`` on ``feeds``; every node output of its top-level graph comes back by name."""
    exposed = onnx.ModelProto()
    exposed.CopyFrom(model)
    exposed.graph.output.extend(_outputs(exposed.graph, {o.name for o in exposed.graph.output}))
    engine = Engine(exposed.SerializeToString(), _ENGINE)
    outputs = engine.run(feeds)
    return {**feeds, **dict(zip(engine.output_names, outputs, strict=True))}


def _value_info(name: str, value: np.ndarray) -> onnx.ValueInfoProto:
    elem = helper.np_dtype_to_tensor_dtype(value.dtype)
    return helper.make_tensor_value_info(name, elem, list(value.shape))


def run_subgraph(
    model: onnx.ModelProto,
    graph: onnx.GraphProto,
    inputs: Mapping[str, np.ndarray],
    scope: Scope,
) -> dict[str, Any] | None:
    """Run subgraph ``graph`` once with its formal inputs set to ``inputs``.

    The values it reads from enclosing scopes come from ``scope``. Returns every value of the run
    (inputs included), or None when a value it needs is not a tensor or is unknown.
    """
    feeds: dict[str, np.ndarray] = {}
    for name, value in inputs.items():
        if not isinstance(value, np.ndarray):
            return None
        feeds[name] = value
    for name in sorted(free_names(graph) - set(feeds)):
        value = scope.get(name)
        if not isinstance(value, np.ndarray):
            return None
        feeds[name] = value
    body = onnx.GraphProto()
    body.CopyFrom(graph)
    del body.input[:]
    del body.output[:]
    keep = [vi for vi in body.value_info if vi.name not in feeds]
    del body.value_info[:]
    body.value_info.extend(keep)
    body.input.extend(_value_info(n, v) for n, v in feeds.items())
    body.output.extend(_outputs(body, set()))
    if not body.output:
        return dict(feeds)
    # Not a copy of ``model``: that would copy every weight of the top-level graph too.
    sub = onnx.ModelProto(
        ir_version=model.ir_version,
        opset_import=model.opset_import,
        functions=model.functions,
        graph=body,
    )
    engine = Engine(sub.SerializeToString(), _ENGINE)
    outputs = engine.run(feeds)
    return {**feeds, **dict(zip(engine.output_names, outputs, strict=True))}
