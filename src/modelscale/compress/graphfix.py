"""Fixes that exported graphs need before some candidates can be built from them.

An opset older than a method needs (11 and 12 are common in exports), and weight names repeated
across subgraphs.
"""

from __future__ import annotations

import pathlib
from collections.abc import Iterator, Mapping

import onnx

__all__ = ["MIN_OPSET", "onnx_opset", "unique_weight_names", "upgrade_opset"]

MIN_OPSET: Mapping[str, int] = {"static": 13, "bf16": 13}
"""The default-domain opset a method's output needs: QDQ with per-channel weights needs the
``axis`` of DequantizeLinear, and a BF16 weight needs Cast to and from bfloat16 (both opset 13).
An older model is upgraded with onnx's version converter first, or the candidate is skipped."""


def _subgraphs(graph: onnx.GraphProto) -> Iterator[onnx.GraphProto]:
    for node in graph.node:
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                yield attr.g
            elif attr.type == onnx.AttributeProto.GRAPHS:
                yield from attr.graphs


def _rename_uses(graph: onnx.GraphProto, old: str, new: str) -> None:
    """Rename reads of ``old`` in ``graph`` and the subgraphs that do not define their own."""
    for node in graph.node:
        node.input[:] = [new if name == old else name for name in node.input]
    for out in graph.output:
        if out.name == old:
            out.name = new
    for sub in _subgraphs(graph):
        own = {i.name for i in sub.input} | {t.name for t in sub.initializer}
        if old not in own and all(old not in n.output for n in sub.node):
            _rename_uses(sub, old, new)


def unique_weight_names(model: onnx.ModelProto) -> None:
    """Rename subgraph initializers whose names another graph already uses.

    Exporters give the weights of two ``If`` branches the same name (ONNX scopes names per graph);
    tools that key weights by name across the whole model, as ORT's FP16 converter does (it fails
    with a bare AssertionError), need them distinct.
    """
    taken = {t.name for t in model.graph.initializer}

    def visit(graph: onnx.GraphProto) -> None:
        for sub in _subgraphs(graph):
            for init in sub.initializer:
                if init.name in taken:
                    k = 1
                    while f"{init.name}__{k}" in taken:
                        k += 1
                    old, init.name = init.name, f"{init.name}__{k}"
                    _rename_uses(sub, old, init.name)
                taken.add(init.name)
            visit(sub)

    visit(model.graph)


def onnx_opset(path: pathlib.Path) -> int:
    """The default-domain (ai.onnx) opset a model imports."""
    model = onnx.load(str(path), load_external_data=False)
    return next((int(o.version) for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)


def upgrade_opset(source: pathlib.Path, dest: pathlib.Path, version: int) -> None:
    """Write ``source`` converted to default-domain opset ``version`` (onnx's version converter)."""
    from onnx import version_converter

    model = version_converter.convert_version(onnx.load(str(source)), version)
    onnx.checker.check_model(model)
    onnx.save(model, str(dest))
