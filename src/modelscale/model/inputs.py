"""Concrete inputs for a model: shapes from the signature plus the user's dims, synthetic or real data."""

from __future__ import annotations

import pathlib
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from modelscale.errors import InvalidInput
from modelscale.model.signature import Signature, TensorSpec

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
    """Symbolic names used on axis 0 of any input: these follow the batch size."""
    return {s.shape[0] for s in signature.inputs if s.shape and isinstance(s.shape[0], str)}


def _fixed_batch(signature: Signature) -> int | None:
    fixed = {s.shape[0] for s in signature.inputs if s.shape and isinstance(s.shape[0], int)}
    dynamic = any(s.shape and not isinstance(s.shape[0], int) for s in signature.inputs)
    return fixed.pop() if len(fixed) == 1 and not dynamic else None


def default_batches(signature: Signature) -> tuple[int, ...]:
    """Batch sizes to sweep when the user names none: the fixed batch if the model has one."""
    fixed = _fixed_batch(signature)
    return (fixed,) if fixed is not None else (1, 2, 4, 8)


def check_choice(signature: Signature, choice: InputChoice) -> None:
    """Reject dims, shapes and ranges that name nothing in the model, with the names that exist."""
    names = signature.input_names
    batch_dims = batch_dim_names(signature)
    symbolic = [d for d in signature.symbolic_dims() if d not in batch_dims]
    for dim, value in choice.dims.items():
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


def _resolve_one(
    spec: TensorSpec, batch: int | None, dims: Mapping[str, int], user: tuple[int, ...] | None
) -> tuple[int, ...]:
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
        if batch is not None and not isinstance(spec.shape[0], int):
            return (batch, *user[1:])
        return user
    out: list[int] = []
    for axis, d in enumerate(spec.shape):
        if isinstance(d, int) and d > 0:
            if axis == 0 and batch is not None and d != batch:
                raise InvalidInput(
                    f"Input {spec.name!r} has a fixed batch size of {d} (axis 0); "
                    f"expected 'batch' {d}. Got {batch} instead.",
                    field="batch",
                )
            out.append(d)
        elif axis == 0 and batch is not None:
            out.append(batch)
        elif isinstance(d, str) and d in dims:
            out.append(int(dims[d]))
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
    """Concrete shape of every input at ``batch`` given the user's dims and shapes."""
    shapes: dict[str, tuple[int, ...]] = {}
    for spec in signature.inputs:
        if choice.data is not None and spec.name in choice.data:
            arr = choice.data[spec.name]
            shapes[spec.name] = (batch or arr.shape[0], *arr.shape[1:])
            continue
        shapes[spec.name] = _resolve_one(spec, batch, choice.dims, choice.shapes.get(spec.name))
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


def _take_batch(arr: np.ndarray, batch: int | None) -> np.ndarray:
    if batch is None or arr.ndim == 0:
        return arr
    if arr.shape[0] >= batch:
        return arr[:batch]
    reps = -(-batch // arr.shape[0])
    return np.concatenate([arr] * reps, axis=0)[:batch]


def make_inputs(
    signature: Signature, *, batch: int | None, choice: InputChoice
) -> dict[str, np.ndarray]:
    """Feeds for one run: real data where given (first ``batch`` rows), synthetic elsewhere."""
    shapes = resolve_shapes(signature, batch=batch, choice=choice)
    rng = np.random.default_rng(choice.seed)
    feeds: dict[str, np.ndarray] = {}
    for spec in signature.inputs:
        if choice.data is not None and spec.name in choice.data:
            feeds[spec.name] = np.ascontiguousarray(_take_batch(choice.data[spec.name], batch))
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
            raise InvalidInput(
                f"{p}: array {spec.name!r} has {arr.ndim} dims, shape {list(arr.shape)}, but the "
                f"model expects {len(spec.shape)}: {spec.shape_str()}.",
                field="inputs",
            )
        for axis, want in enumerate(spec.shape or ()):
            if axis > 0 and isinstance(want, int) and arr.shape[axis] != want:
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
        if arr.ndim == 0 or arr.shape[0] == 0:
            raise InvalidInput(f"{p}: array {spec.name!r} is empty.", field="inputs")
        out[spec.name] = arr
    return out
