"""A model's inputs and outputs: names, dtypes and shapes with symbolic dims."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx

__all__ = ["Dim", "Signature", "TensorSpec", "signature_from_onnx"]

Dim = int | str | None
"""One axis of a shape: a fixed size, a symbolic name ('batch', 'seq'), or None when unnamed."""


@dataclass(frozen=True)
class TensorSpec:
    """One input or output of a model."""

    name: str
    onnx_type: str
    """ONNX type string, e.g. 'tensor(float)' or 'seq(map(int64,tensor(float)))' for ONNX-ML outputs."""
    dtype: str | None
    """numpy dtype name for tensors ('float32', 'int64'); None for sequences and maps."""
    shape: tuple[Dim, ...] | None
    """None when the rank itself is unknown."""

    @property
    def is_tensor(self) -> bool:
        """Whether this is a plain tensor (not a sequence, map or optional)."""
        return self.dtype is not None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "name": self.name,
            "type": self.onnx_type,
            "dtype": self.dtype,
            "shape": list(self.shape) if self.shape is not None else None,
        }

    def shape_str(self) -> str:
        """'[batch, 128, ?]'."""
        if self.shape is None:
            return "[unknown rank]"
        return "[" + ", ".join("?" if d is None else str(d) for d in self.shape) + "]"


@dataclass(frozen=True)
class Signature:
    """The inputs and outputs of a model, in graph order."""

    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]

    def input(self, name: str) -> TensorSpec:
        """The input called ``name`` (KeyError if none)."""
        for spec in self.inputs:
            if spec.name == name:
                return spec
        raise KeyError(name)

    @property
    def input_names(self) -> tuple[str, ...]:
        """Input names in graph order."""
        return tuple(s.name for s in self.inputs)

    @property
    def output_names(self) -> tuple[str, ...]:
        """Output names in graph order."""
        return tuple(s.name for s in self.outputs)

    def symbolic_dims(self) -> tuple[str, ...]:
        """Names of the symbolic dims used by the inputs, in first-seen order."""
        seen: dict[str, None] = {}
        for spec in self.inputs:
            for d in spec.shape or ():
                if isinstance(d, str):
                    seen.setdefault(d, None)
        return tuple(seen)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "inputs": [s.to_dict() for s in self.inputs],
            "outputs": [s.to_dict() for s in self.outputs],
        }


def _type_str(tp: onnx.TypeProto) -> str:
    which = tp.WhichOneof("value")
    if which == "tensor_type":
        elem = onnx.TensorProto.DataType.Name(tp.tensor_type.elem_type).lower()
        return f"tensor({'float' if elem == 'float' else elem})"
    if which == "sequence_type":
        return f"seq({_type_str(tp.sequence_type.elem_type)})"
    if which == "map_type":
        key = onnx.TensorProto.DataType.Name(tp.map_type.key_type).lower()
        return f"map({key},{_type_str(tp.map_type.value_type)})"
    if which == "optional_type":
        return f"optional({_type_str(tp.optional_type.elem_type)})"
    if which == "sparse_tensor_type":
        elem = onnx.TensorProto.DataType.Name(tp.sparse_tensor_type.elem_type).lower()
        return f"sparse_tensor({elem})"
    return "unknown"


def _numpy_dtype(elem_type: int) -> str | None:
    try:
        return np.dtype(onnx.helper.tensor_dtype_to_np_dtype(elem_type)).name
    except (KeyError, TypeError, ValueError):
        return None


def _shape(tp: onnx.TypeProto) -> tuple[Dim, ...] | None:
    if not tp.tensor_type.HasField("shape"):
        return None
    dims: list[Dim] = []
    for d in tp.tensor_type.shape.dim:
        if d.HasField("dim_value"):
            dims.append(int(d.dim_value))
        elif d.HasField("dim_param") and d.dim_param:
            dims.append(d.dim_param)
        else:
            dims.append(None)
    return tuple(dims)


def _spec(vi: onnx.ValueInfoProto) -> TensorSpec:
    tp = vi.type
    is_tensor = tp.WhichOneof("value") == "tensor_type"
    return TensorSpec(
        name=vi.name,
        onnx_type=_type_str(tp),
        dtype=_numpy_dtype(tp.tensor_type.elem_type) if is_tensor else None,
        shape=_shape(tp) if is_tensor else None,
    )


def signature_from_onnx(model: onnx.ModelProto) -> Signature:
    """Read the signature of a parsed ONNX model (initializers listed as inputs are not inputs)."""
    initializers = {t.name for t in model.graph.initializer}
    inputs = tuple(_spec(vi) for vi in model.graph.input if vi.name not in initializers)
    outputs = tuple(_spec(vi) for vi in model.graph.output)
    return Signature(inputs=inputs, outputs=outputs)
