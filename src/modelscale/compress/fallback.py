"""Rank quantized nodes by how much error each one adds, for the accuracy-guarded fallback.

Both models run on a few calibration rows with the inputs and outputs of every quantized node
exposed. A node's sensitivity is the relative error of its output (quantized against float,
per channel) minus the largest relative error already present at its inputs: the error it adds
itself, not the error it inherits. The fallback keeps the worst nodes in float first (as INC's "mse" strategy and
``onnxruntime.quantization.qdq_loss_debug`` compare activations).
"""

from __future__ import annotations

import contextlib
import pathlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import TensorProto, helper

from modelscale.runtime import Engine, EngineOptions

__all__ = ["NodeSensitivity", "rank_nodes"]


@dataclass(frozen=True)
class NodeSensitivity:
    """How much relative error one quantized node adds."""

    node: str
    op_type: str
    added_error: float
    output_error: float


def _float_tensors(model: onnx.ModelProto) -> set[str]:
    inferred = model
    # An exported graph that ONNX cannot infer keeps what it declares.
    with contextlib.suppress(Exception):
        inferred = onnx.shape_inference.infer_shapes(model)
    infos = [*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output]
    return {vi.name for vi in infos if vi.type.tensor_type.elem_type == TensorProto.FLOAT}


def _expose(model: onnx.ModelProto, names: Sequence[str]) -> bytes:
    present = {o for n in model.graph.node for o in n.output} | {i.name for i in model.graph.input}
    existing = {o.name for o in model.graph.output}
    for name in names:
        if name in present and name not in existing:
            model.graph.output.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, None))
    return model.SerializeToString()


def _collect(
    model_bytes: bytes,
    names: Sequence[str],
    inputs: Mapping[str, np.ndarray],
    options: EngineOptions,
) -> dict[str, np.ndarray]:
    engine = Engine(model_bytes, options)
    wanted = [n for n in names if n in engine.output_names]
    values = engine.run(inputs, wanted)
    return dict(zip(wanted, (np.asarray(v, dtype=np.float64) for v in values), strict=True))


def _rel_error(q: np.ndarray, f: np.ndarray) -> float:
    """Mean over channels of each channel's squared error relative to its own energy.

    Per channel, not over the whole tensor: one large channel would otherwise hide the small
    ones that per-tensor INT8 rounds to zero, though the next layer may depend on them as much.
    """
    if q.shape != f.shape or f.size == 0:
        return float("nan")
    if f.ndim >= 2:
        axis = 1 if f.ndim == 4 else -1  # NCHW convolutions; features last otherwise
        q = np.moveaxis(q, axis, -1).reshape(-1, f.shape[axis])
        f = np.moveaxis(f, axis, -1).reshape(-1, f.shape[axis])
    else:
        q, f = q.reshape(-1, 1), f.reshape(-1, 1)
    energy = (f**2).sum(axis=0)
    live = energy > 1e-30
    if not live.any():
        return float(np.abs(q - f).max())
    return float((((q - f) ** 2).sum(axis=0)[live] / energy[live]).mean())


def rank_nodes(
    base_path: pathlib.Path,
    quant_path: pathlib.Path,
    nodes: Sequence[str],
    inputs: Mapping[str, np.ndarray],
    *,
    options: EngineOptions,
) -> list[NodeSensitivity]:
    """Rank ``nodes`` (names in the base model) by the error each adds, worst first.

    Args:
        base_path: The float model the quantized one was built from.
        quant_path: The quantized model.
        nodes: The quantized nodes to rank.
        inputs: A few rows of model inputs (calibration rows, not eval rows).
        options: Engine options for the two runs.
    """
    base = onnx.load(str(base_path))
    quant = onnx.load(str(quant_path))
    floats = _float_tensors(base)
    inits = {i.name for i in base.graph.initializer}
    by_name = {n.name: n for n in base.graph.node}
    watch: dict[str, tuple[list[str], list[str]]] = {}
    for name in nodes:
        node = by_name.get(name)
        if node is None:
            continue
        ins = [i for i in node.input if i and i not in inits and i in floats]
        outs = [o for o in node.output if o and o in floats]
        if outs:
            watch[name] = (ins, outs)
    tensors = sorted({t for ins, outs in watch.values() for t in (*ins, *outs)})
    if not tensors:
        return []
    ref = _collect(_expose(base, tensors), tensors, inputs, options)
    got = _collect(_expose(quant, tensors), tensors, inputs, options)
    errors = {t: _rel_error(got[t], ref[t]) for t in tensors if t in ref and t in got}
    ranked = []
    for name, (ins, outs) in watch.items():
        out_err = max((errors[o] for o in outs if o in errors), default=float("nan"))
        if not np.isfinite(out_err):
            continue
        in_err = max(
            (errors[i] for i in ins if i in errors and np.isfinite(errors[i])), default=0.0
        )
        ranked.append(
            NodeSensitivity(
                node=name,
                op_type=by_name[name].op_type,
                added_error=max(out_err - in_err, 0.0),
                output_error=out_err,
            )
        )
    ranked.sort(key=lambda s: (-s.added_error, -s.output_error, s.node))
    return ranked
