"""Concrete inputs for a model: shapes from the signature plus the user's dims, synthetic or real data."""

from __future__ import annotations

import pathlib
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from modelscale.errors import InvalidInput
from modelscale.model.rows import row_axis
from modelscale.model.signature import UNNAMED_DIM_PARAMS, Signature, TensorSpec

__all__ = [
    "DEFAULT_INT_HIGH",
    "InputChoice",
    "batch_dim_names",
    "check_choice",
    "default_batches",
    "load_npz",
    "make_inputs",
    "resolve_shapes",
]

DEFAULT_INT_HIGH = 100
"""Synthetic integer inputs without an ``int_ranges`` entry are drawn from [0, 100]: valid token ids for any
vocabulary, and embedding lookups cost the same whatever the id."""


@dataclass(frozen=True)
class InputChoice:
    """What the user said about inputs: fixed dims, whole shapes, integer ranges, or real data."""

    dims: Mapping[str, int] = field(default_factory=dict)
    shapes: Mapping[str, tuple[int, ...]] = field(default_factory=dict)
    int_ranges: Mapping[str, tuple[int, int]] = field(default_factory=dict)
    data: Mapping[str, np.ndarray] | None = None
    seed: int = 0


def batch_dim_names(signature: Signature) -> set[str]:
    """Symbolic names used on the batch axis of any input: these follow the batch size."""
    names = set()
    for s in signature.inputs:
        axis = s.batch_axis
        if s.shape and axis is not None and axis < len(s.shape) and isinstance(s.shape[axis], str):
            names.add(str(s.shape[axis]))
    return names


def _fixed_batch(signature: Signature) -> int | None:
    fixed: set[int] = set()
    dynamic = False
    for s in signature.inputs:
        if s.batch_axis is None:
            continue  # not batched: says nothing about the batch size
        d = s.shape[s.batch_axis] if s.shape and s.batch_axis < len(s.shape) else None
        if isinstance(d, int):
            fixed.add(d)
        else:
            dynamic = True
    return fixed.pop() if len(fixed) == 1 and not dynamic else None


def default_batches(signature: Signature) -> tuple[int, ...]:
    """Batch sizes to sweep when the user names none: the fixed batch if the model has one."""
    fixed = _fixed_batch(signature)
    return (fixed,) if fixed is not None else (1, 2, 4, 8)


def _unnamed_axes(signature: Signature) -> str:
    """'x axes 2, 3; y axis 1': where the model's unnamed dynamic dims are (batch axes aside)."""
    parts = []
    for s in signature.inputs:
        axes = [str(i) for i, d in enumerate(s.shape or ()) if d is None and i != s.batch_axis]
        if axes:
            parts.append(f"{s.name} {'axes' if len(axes) > 1 else 'axis'} {', '.join(axes)}")
    return "; ".join(parts) or "none"


def check_choice(signature: Signature, choice: InputChoice) -> None:
    """Reject dims, shapes and ranges that name nothing in the model, with the names that exist."""
    names = signature.input_names
    batch_dims = batch_dim_names(signature)
    symbolic = [d for d in signature.symbolic_dims() if d not in batch_dims]
    for dim, value in choice.dims.items():
        if dim in UNNAMED_DIM_PARAMS:
            raise InvalidInput(
                f"'dims' cannot set {dim!r}: unnamed dims are separate dims, each set per input and "
                f"axis. Give whole input shapes in 'shapes' (INPUT=D0,D1,...) instead; the model's "
                f"unnamed dims are at {_unnamed_axes(signature)}.",
                field="dims",
            )
        if dim in batch_dims:
            raise InvalidInput(
                f"'dims' names the batch axis ({dim}); give the batch size instead.",
                field="dims",
            )
        if dim not in symbolic:
            raise InvalidInput(
                f"Unknown dim {dim!r} in 'dims': the model's symbolic dims are "
                f"{', '.join(symbolic) or 'none'}. Use 'shapes' (INPUT=D0,D1,...) for unnamed dims.",
                field="dims",
            )
        if value < 1:
            raise InvalidInput(
                f"'dims' value {dim} must be >= 1. Got {value} instead.", field="dims"
            )
    for what, mapping in (("shapes", choice.shapes), ("int_ranges", choice.int_ranges)):
        for name in mapping:
            if name not in names:
                raise InvalidInput(
                    f"Unknown input {name!r} in '{what}'; the model's inputs are "
                    f"{', '.join(names)}.",
                    field=what,
                )
    for name, shape in choice.shapes.items():
        if any(d < 1 for d in shape):
            raise InvalidInput(
                f"'shapes' of {name} must have every dim >= 1. Got {list(shape)} instead.",
                field="shapes",
            )
    for name, (lo, hi) in choice.int_ranges.items():
        if lo > hi:
            raise InvalidInput(
                f"'int_ranges' of {name} is {lo},{hi}: the low end must not exceed the high end.",
                field="int_ranges",
            )
        dtype = signature.input(name).dtype
        if dtype is None or not np.issubdtype(np.dtype(dtype), np.integer):
            raise InvalidInput(
                f"'int_ranges' names {name}, which is {signature.input(name).onnx_type}, "
                "not an integer tensor.",
                field="int_ranges",
            )


def _fixed_batch_error(
    spec: TensorSpec, axis: int, size: int, batch: int, batch_names: set[str], mixed: bool
) -> InvalidInput:
    shape = spec.shape or ()
    others = [
        i for i, d in enumerate(shape) if i != axis and isinstance(d, str) and d in batch_names
    ]
    hint = ""
    if others:  # e.g. state[2, batch, 128]: the batch is plainly on another axis
        hint = (
            f" If its batch axis is axis {others[0]} ({shape[others[0]]}), say so with "
            f"'batch_axes' {spec.name}={others[0]}."
        )
    elif mixed:  # other inputs have a dynamic batch: this one is likely not batched on axis 0
        hint = (
            f" If another axis is its batch axis, say which with 'batch_axes' {spec.name}=AXIS "
            f"({spec.name}=none if it has none)."
        )
    return InvalidInput(
        f"Input {spec.name!r} has a fixed batch size of {size} (axis {axis}); expected 'batch' "
        f"{size}. Got {batch} instead.{hint}",
        field="batch",
    )


def _resolve_one(
    spec: TensorSpec,
    batch: int | None,
    dims: Mapping[str, int],
    user: tuple[int, ...] | None,
    batch_names: set[str],
    mixed: bool,
) -> tuple[int, ...]:
    b_axis = spec.batch_axis if batch is not None else None
    if spec.shape is None:
        if user is None:
            raise InvalidInput(
                f"Input {spec.name!r} has no known rank; give its whole shape in 'shapes' "
                f"({spec.name}=D0,D1,...).",
                field="shapes",
            )
        return user
    if user is not None:
        if len(user) != len(spec.shape):
            raise InvalidInput(
                f"'shapes' of {spec.name} has {len(user)} dims but the model expects "
                f"{len(spec.shape)}: {spec.shape_str()}.",
                field="shapes",
            )
        for axis, (want, got) in enumerate(zip(spec.shape, user, strict=True)):
            if isinstance(want, int) and want != got:
                raise InvalidInput(
                    f"'shapes' of {spec.name}: axis {axis} is {got} but the model fixes it at "
                    f"{want}.",
                    field="shapes",
                )
        if b_axis is not None and batch is not None and not isinstance(spec.shape[b_axis], int):
            return (*user[:b_axis], batch, *user[b_axis + 1 :])
        return user
    out: list[int] = []
    for axis, d in enumerate(spec.shape):
        if isinstance(d, int) and d > 0:
            if axis == b_axis and batch is not None and d != batch:
                raise _fixed_batch_error(spec, axis, d, batch, batch_names, mixed)
            out.append(d)
        elif axis == b_axis and batch is not None:
            out.append(batch)
        elif isinstance(d, str) and d in dims:
            out.append(int(dims[d]))
        elif isinstance(d, str) and d in batch_names and batch is not None:
            out.append(batch)  # the batch dim's name on another axis means the same size
        else:
            label = f"symbolic dim {d!r}" if isinstance(d, str) else "an unnamed dynamic dim"
            hint = f"'dims' ({d}=N) or " if isinstance(d, str) else ""
            raise InvalidInput(
                f"Input {spec.name!r} axis {axis} is {label} with no value; give {hint}"
                f"'shapes' ({spec.name}=D0,D1,...; the model says {spec.shape_str()}).",
                field="dims",
            )
    return tuple(out)


def resolve_shapes(
    signature: Signature, *, batch: int | None, choice: InputChoice
) -> dict[str, tuple[int, ...]]:
    """Concrete shape of every input at ``batch`` given the user's dims and shapes.

    ``batch`` sets each input's batch axis (``TensorSpec.batch_axis``) and every axis named like
    a batch axis; inputs without a batch axis (0-d ones) keep their shape.
    """
    shapes: dict[str, tuple[int, ...]] = {}
    batch_names = batch_dim_names(signature)
    mixed = _fixed_batch(signature) is None
    for spec in signature.inputs:
        if choice.data is not None and spec.name in choice.data:
            arr = choice.data[spec.name]
            axis = row_axis(spec.name, arr, signature.batch_axes)
            shape = tuple(int(d) for d in arr.shape)
            if batch is not None and axis is not None:
                shape = (*shape[:axis], batch, *shape[axis + 1 :])
            shapes[spec.name] = shape
            continue
        shapes[spec.name] = _resolve_one(
            spec, batch, choice.dims, choice.shapes.get(spec.name), batch_names, mixed
        )
    return shapes


def _synthetic(
    spec: TensorSpec,
    shape: tuple[int, ...],
    rng: np.random.Generator,
    rng_range: tuple[int, int] | None,
) -> np.ndarray:
    if spec.dtype is None or spec.dtype in ("str", "object"):
        raise InvalidInput(
            f"Input {spec.name!r} is {spec.onnx_type}; synthetic data is only made for numeric "
            "tensors. Give real inputs in 'inputs' (an .npz).",
            field="inputs",
        )
    dtype = np.dtype(spec.dtype)
    lowered = spec.name.lower()
    if np.issubdtype(dtype, np.integer):
        if rng_range is not None:
            return rng.integers(rng_range[0], rng_range[1], size=shape, endpoint=True).astype(dtype)
        # Heuristics for transformer inputs, so a model runs as it would on real text.
        if "mask" in lowered:
            return np.ones(shape, dtype=dtype)
        if "token_type" in lowered or "segment" in lowered:
            return np.zeros(shape, dtype=dtype)
        if "position" in lowered and shape:
            return np.broadcast_to(np.arange(shape[-1], dtype=dtype), shape).copy()
        return rng.integers(0, DEFAULT_INT_HIGH, size=shape, endpoint=True).astype(dtype)
    if dtype == np.bool_:
        return rng.integers(0, 2, size=shape).astype(bool)
    return rng.standard_normal(shape).astype(dtype)


def _take_batch(arr: np.ndarray, batch: int | None, axis: int | None) -> np.ndarray:
    """The first ``batch`` rows along ``axis``, repeating the rows when there are fewer."""
    if batch is None or axis is None:
        return arr
    return np.take(arr, np.arange(batch) % arr.shape[axis], axis=axis)


def make_inputs(
    signature: Signature, *, batch: int | None, choice: InputChoice
) -> dict[str, np.ndarray]:
    """Feeds for one run: real data where given (first ``batch`` rows), synthetic elsewhere."""
    shapes = resolve_shapes(signature, batch=batch, choice=choice)
    rng = np.random.default_rng(choice.seed)
    feeds: dict[str, np.ndarray] = {}
    for spec in signature.inputs:
        if choice.data is not None and spec.name in choice.data:
            arr = choice.data[spec.name]
            axis = row_axis(spec.name, arr, signature.batch_axes)
            # asarray, not ascontiguousarray: that turns a 0-d array into a 1-d one
            feeds[spec.name] = np.asarray(_take_batch(arr, batch, axis), order="C")
        else:
            feeds[spec.name] = _synthetic(
                spec, shapes[spec.name], rng, choice.int_ranges.get(spec.name)
            )
    return feeds


def load_npz(path: str | pathlib.Path, signature: Signature) -> dict[str, np.ndarray]:
    """Real inputs from an .npz file whose keys are input names; checked against the signature."""
    p = pathlib.Path(path)
    if not p.is_file():
        raise InvalidInput(
            f"Inputs file {p} does not exist. Expected an .npz file.", field="inputs"
        )
    try:
        with np.load(p, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as exc:
        raise InvalidInput(
            f"{p} is not a readable .npz file ({exc}). Expected numpy.savez output whose keys are "
            "input names.",
            field="inputs",
        ) from exc
    out: dict[str, np.ndarray] = {}
    for spec in signature.inputs:
        if spec.name not in arrays:
            raise InvalidInput(
                f"{p} has no array for input {spec.name!r} (it has: "
                f"{', '.join(arrays) or 'nothing'}). Expected one array per model input.",
                field="inputs",
            )
        arr = arrays[spec.name]
        if spec.shape is not None and arr.ndim != len(spec.shape):
            scalar = " (a 0-d array, e.g. numpy.array(16000))" if not spec.shape else ""
            raise InvalidInput(
                f"{p}: array {spec.name!r} has {arr.ndim} dims, shape {list(arr.shape)}, but the "
                f"model expects {len(spec.shape)}{scalar}: {spec.shape_str()}.",
                field="inputs",
            )
        for axis, want in enumerate(spec.shape or ()):
            if axis != spec.batch_axis and isinstance(want, int) and arr.shape[axis] != want:
                raise InvalidInput(
                    f"{p}: array {spec.name!r} axis {axis} is {arr.shape[axis]}; the model "
                    f"expects {want} ({spec.shape_str()}).",
                    field="inputs",
                )
        if spec.dtype is not None and arr.dtype != np.dtype(spec.dtype):
            want_dtype = np.dtype(spec.dtype)
            if np.issubdtype(want_dtype, np.integer) and not np.issubdtype(arr.dtype, np.integer):
                raise InvalidInput(
                    f"{p}: array {spec.name!r} is {arr.dtype}; the model expects {want_dtype}.",
                    field="inputs",
                )
            arr = arr.astype(want_dtype)
        rows_axis = spec.batch_axis if arr.ndim else None
        if rows_axis is not None and rows_axis < arr.ndim and arr.shape[rows_axis] == 0:
            raise InvalidInput(
                f"{p}: array {spec.name!r} has no rows (its batch axis {rows_axis} is empty, shape "
                f"{list(arr.shape)}).",
                field="inputs",
            )
        out[spec.name] = arr
    return out
