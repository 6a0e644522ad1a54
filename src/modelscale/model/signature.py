"""A model's inputs and outputs: names, dtypes and shapes with symbolic dims, and batch axes.

Exporters write a dynamic axis in several ways, and all of them read as dynamic here: a dim_param
name ('batch'), no value at all, a negative dim_value (``-1``, written by several converters), or
the dim_param ``'?'``. A name is a symbolic dim shared by every axis that carries it; the other
forms are unnamed (``None``): each such axis is its own dim, set per input and axis.

Each input has a batch axis, the axis that grows with the batch size: axis 0 unless the user says
otherwise (``Signature.with_batch_axes``), and none for a 0-d input (a scalar such as a sample
rate), which is never batched.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx

from modelscale.errors import InvalidInput

__all__ = ["UNNAMED_DIM_PARAMS", "Dim", "Signature", "TensorSpec", "signature_from_onnx"]

Dim = int | str | None
"""One axis of a shape: a fixed size, a symbolic name ('batch', 'seq'), or None when unnamed."""

UNNAMED_DIM_PARAMS = frozenset({"?", "-1"})
"""dim_param values that exporters write for "unknown" rather than as a name; they read as None."""


def _default_batch_axis(shape: tuple[Dim, ...] | None) -> int | None:
    return None if shape == () else 0


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
    batch_axis: int | None = 0
    """The axis that follows the batch size: 0 by default, None for a 0-d tensor (never batched)
    or when the user says the input has none. Inputs without a batch axis are the same for every
    row of a batch."""

    def __post_init__(self) -> None:
        # A 0-d tensor has no axis to batch along, whatever the default said.
        if self.shape == () and self.batch_axis is not None:
            object.__setattr__(self, "batch_axis", None)

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
            "batch_axis": self.batch_axis,
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

    @property
    def batch_axes(self) -> dict[str, int | None]:
        """Each input's batch axis (None: not batched), by input name in graph order."""
        return {s.name: s.batch_axis for s in self.inputs}

    def with_batch_axes(self, axes: Mapping[str, int | None] | None) -> Signature:
        """This signature with the batch axis of the inputs named in ``axes`` changed.

        ``axes`` maps an input name to its batch axis (``{"state": 1}``), or to None for an input
        that is not batched at all. A 0-d input has no batch axis; naming an axis for it is an error.

        Raises:
            InvalidInput: An unknown input, or an axis the input does not have (field
                ``batch_axes``).
        """
        if not axes:
            return self
        names = self.input_names
        for name, axis in axes.items():
            if name not in names:
                raise InvalidInput(
                    f"Unknown input {name!r} in 'batch_axes'; the model's inputs are "
                    f"{', '.join(names)}.",
                    field="batch_axes",
                )
            spec = self.input(name)
            if axis is None:
                continue
            if isinstance(axis, bool) or not isinstance(axis, int | np.integer):
                raise InvalidInput(
                    f"'batch_axes' of {name} must be an axis number or None. Got {axis!r} instead.",
                    field="batch_axes",
                )
            rank = None if spec.shape is None else len(spec.shape)
            if rank == 0:
                raise InvalidInput(
                    f"'batch_axes' gives input {name!r} axis {axis}, but it is a 0-d tensor (a "
                    "scalar): it has no batch axis and is never batched. Leave it out.",
                    field="batch_axes",
                )
            if axis < 0 or (rank is not None and axis >= rank):
                where = f"in [0, {rank - 1}]" if rank is not None else ">= 0"
                raise InvalidInput(
                    f"'batch_axes' of {name} must be an axis {where} of {spec.shape_str()}. "
                    f"Got {axis} instead.",
                    field="batch_axes",
                )
        inputs = []
        for spec in self.inputs:
            if spec.name in axes:
                axis = axes[spec.name]
                spec = dataclasses.replace(spec, batch_axis=None if axis is None else int(axis))
            inputs.append(spec)
        return dataclasses.replace(self, inputs=tuple(inputs))

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
        if d.HasField("dim_value") and d.dim_value >= 0:
            dims.append(int(d.dim_value))
        elif d.HasField("dim_param") and d.dim_param and d.dim_param not in UNNAMED_DIM_PARAMS:
            dims.append(d.dim_param)
        else:
            dims.append(None)  # no value, a negative value, or a placeholder: dynamic, unnamed
    return tuple(dims)


def _spec(vi: onnx.ValueInfoProto) -> TensorSpec:
    tp = vi.type
    is_tensor = tp.WhichOneof("value") == "tensor_type"
    shape = _shape(tp) if is_tensor else None
    return TensorSpec(
        name=vi.name,
        onnx_type=_type_str(tp),
        dtype=_numpy_dtype(tp.tensor_type.elem_type) if is_tensor else None,
        shape=shape,
        batch_axis=_default_batch_axis(shape),
    )


def signature_from_onnx(model: onnx.ModelProto) -> Signature:
    """Read the signature of a parsed ONNX model (initializers listed as inputs are not inputs)."""
    initializers = {t.name for t in model.graph.initializer}
    inputs = tuple(_spec(vi) for vi in model.graph.input if vi.name not in initializers)
    outputs = tuple(_spec(vi) for vi in model.graph.output)
    return Signature(inputs=inputs, outputs=outputs)
