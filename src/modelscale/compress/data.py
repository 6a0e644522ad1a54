"""Eval and calibration sets: inputs by name plus optional labels, checked against the model.

The calibration set must never share a row with the eval set: a model tuned on the examples it
is judged on looks better than it is. When no calibration set is given the eval rows are split,
and identical rows always land on the same side.
"""

from __future__ import annotations

import hashlib
import os
import pathlib
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from modelscale.compress.metrics import Metric
from modelscale.errors import InvalidInput
from modelscale.model.inputs import load_npz
from modelscale.model.rows import count_rows, row_axis, take_rows
from modelscale.model.signature import Signature

__all__ = [
    "MIN_CALIBRATION_ROWS",
    "MIN_EVAL_ROWS",
    "EvalSet",
    "check_disjoint",
    "check_labels",
    "load_eval_set",
    "row_hashes",
    "split_for_calibration",
]

MIN_CALIBRATION_ROWS = 16
"""Fewer rows than this give activation ranges that say more about the rows than the data."""
MIN_EVAL_ROWS = 8


@dataclass(frozen=True)
class EvalSet:
    """Inputs by model input name (same number of rows each) and optional labels.

    Rows run along each input's batch axis: ``batch_axes`` names it for inputs where it is not
    axis 0, or None for an input that is the same for every row (a 0-d sample rate, always).
    """

    inputs: Mapping[str, np.ndarray]
    labels: np.ndarray | None = None
    source: str = "<arrays>"
    batch_axes: Mapping[str, int | None] = field(default_factory=dict)

    @property
    def rows(self) -> int:
        """Number of examples."""
        return count_rows(self.inputs, self.batch_axes)

    def take(self, index: np.ndarray | slice, *, source: str | None = None) -> EvalSet:
        """The rows at ``index``, in that order."""
        return EvalSet(
            inputs=take_rows(self.inputs, index, self.batch_axes),
            labels=None if self.labels is None else self.labels[index],
            source=source or self.source,
            batch_axes=self.batch_axes,
        )


def _read_npz(path: pathlib.Path, what: str) -> dict[str, np.ndarray]:
    if not path.is_file():
        raise InvalidInput(f"{what} file {path} does not exist. Expected an .npz file.", field=what)
    try:
        with np.load(path, allow_pickle=False) as npz:
            return {k: npz[k] for k in npz.files}
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as exc:
        raise InvalidInput(
            f"{path} is not a readable .npz file ({exc}). Expected numpy.savez output whose keys "
            "are input names.",
            field=what,
        ) from exc


def _check_rows(
    inputs: Mapping[str, np.ndarray], axes: Mapping[str, int | None], where: str
) -> int:
    counts = {}
    for k, v in inputs.items():
        axis = row_axis(k, v, axes)
        if axis is not None:
            counts[k] = v.shape[axis]
    if len(set(counts.values())) > 1:
        listed = ", ".join(f"{k}: {n}" for k, n in counts.items())
        raise InvalidInput(
            f"{where}: the input arrays have different numbers of rows ({listed}). Expected one "
            "row per example in every array.",
            field="eval",
        )
    return next(iter(counts.values()), 1)


def load_eval_set(
    source: str | os.PathLike[str] | Mapping[str, np.ndarray] | EvalSet,
    signature: Signature,
    *,
    labels_key: str = "labels",
    what: str = "eval",
) -> EvalSet:
    """Load inputs (and labels under ``labels_key``) from an .npz path, a mapping or an EvalSet.

    Raises:
        InvalidInput: The file is missing or unreadable, lacks an input the model needs, or its
            arrays disagree with the model's signature or with each other.
    """
    if isinstance(source, EvalSet):
        arrays: dict[str, np.ndarray] = dict(source.inputs)
        if source.labels is not None:
            arrays[labels_key] = source.labels
        label = source.source
        inputs = _checked_mapping(arrays, signature, label)
    elif isinstance(source, Mapping):
        arrays, label = {k: np.asarray(v) for k, v in source.items()}, "<arrays>"
        inputs = _checked_mapping(arrays, signature, label)
    else:
        path = pathlib.Path(os.fspath(source))
        arrays, label = _read_npz(path, what), str(path)
        # load_npz holds the model-facing checks (missing inputs, ranks, fixed dims, dtypes).
        inputs = load_npz(path, signature)
    axes = signature.batch_axes
    rows = _check_rows(inputs, axes, label)
    labels = arrays.get(labels_key)
    if labels is not None and len(labels) != rows:
        raise InvalidInput(
            f"{label}: {labels_key!r} has {len(labels)} rows but the inputs have {rows}. Expected "
            "one label per example.",
            field=labels_key,
        )
    return EvalSet(inputs=inputs, labels=labels, source=label, batch_axes=axes)


def _checked_mapping(
    arrays: Mapping[str, np.ndarray], signature: Signature, label: str
) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    for spec in signature.inputs:
        if spec.name not in arrays:
            raise InvalidInput(
                f"{label} has no array for input {spec.name!r} (it has: "
                f"{', '.join(arrays) or 'nothing'}). Expected one array per model input.",
                field="eval",
            )
        arr = np.asarray(arrays[spec.name])
        if spec.shape is not None and arr.ndim != len(spec.shape):
            raise InvalidInput(
                f"{label}: array {spec.name!r} has shape {list(arr.shape)}; the model expects "
                f"{spec.shape_str()}.",
                field="eval",
            )
        axis = row_axis(spec.name, arr, {spec.name: spec.batch_axis})
        if axis is not None and arr.shape[axis] == 0:
            raise InvalidInput(
                f"{label}: array {spec.name!r} has no rows (its batch axis {axis} is empty, "
                f"shape {list(arr.shape)}).",
                field="eval",
            )
        out[spec.name] = arr.astype(spec.dtype) if spec.dtype else arr
    return out


def check_labels(metric: Metric, labels: np.ndarray, output: np.ndarray, *, key: str) -> None:
    """Check labels against the evaluated output for the chosen metric.

    Raises:
        InvalidInput: Classification labels that are not integer class ids below the output's
            class count, or regression labels whose shape differs from the output's.
    """
    if metric.task == "classification":
        if output.ndim != 2:
            raise InvalidInput(
                f"The {metric.name} metric needs an output of shape [N, classes]; the evaluated "
                f"output has shape {list(output.shape)}. Choose another 'output' or 'metric'.",
                field="metric",
            )
        classes = output.shape[1]
        flat = labels.reshape(len(labels), -1)
        if flat.shape[1] != 1 or not np.issubdtype(labels.dtype, np.integer):
            raise InvalidInput(
                f"{key!r} has shape {list(labels.shape)} and dtype {labels.dtype}; the "
                f"{metric.name} metric expects integer class ids, shape [{len(labels)}], in "
                f"[0, {classes}).",
                field=key,
            )
        if flat.min() < 0 or flat.max() >= classes:
            raise InvalidInput(
                f"{key!r} holds class ids from {int(flat.min())} to {int(flat.max())}, but the "
                f"output has {classes} classes. Expected ids in [0, {classes}).",
                field=key,
            )
    elif metric.task == "regression" and labels.shape != output.shape:
        raise InvalidInput(
            f"{key!r} has shape {list(labels.shape)} but the evaluated output has shape "
            f"{list(output.shape)}; the {metric.name} metric expects the same shape.",
            field=key,
        )


def row_hashes(
    inputs: Mapping[str, np.ndarray], axes: Mapping[str, int | None] | None = None
) -> np.ndarray:
    """One digest per row over every batched input array, to find identical examples."""
    rows = count_rows(inputs, axes)
    batched = {}
    for name in sorted(inputs):
        axis = row_axis(name, inputs[name], axes)
        if axis is not None:
            batched[name] = np.moveaxis(inputs[name], axis, 0)
    out = np.empty(rows, dtype=object)
    for i in range(rows):
        h = hashlib.blake2b(digest_size=16)
        for arr in batched.values():
            h.update(np.ascontiguousarray(arr[i]).tobytes())
        out[i] = h.digest()
    return out


def check_disjoint(eval_set: EvalSet, calibration: EvalSet) -> None:
    """Refuse a calibration set that shares rows with the eval set."""
    shared = set(row_hashes(eval_set.inputs, eval_set.batch_axes)) & set(
        row_hashes(calibration.inputs, calibration.batch_axes)
    )
    if shared:
        raise InvalidInput(
            f"The calibration set {calibration.source} shares {len(shared)} example(s) with the "
            f"eval set {eval_set.source}. Expected disjoint sets: calibrating on evaluated "
            "examples flatters the result. Give other calibration data, or none to split the "
            "eval set.",
            field="calibration",
        )


def split_for_calibration(
    eval_set: EvalSet, *, fraction: float = 0.5, seed: int = 0
) -> tuple[EvalSet, EvalSet]:
    """Split into (eval, calibration) at random; identical rows go to the same side."""
    hashes = row_hashes(eval_set.inputs, eval_set.batch_axes)
    unique = sorted(set(hashes))
    order = np.random.default_rng(seed).permutation(len(unique))
    calib_keys = {unique[i] for i in order[: round(len(unique) * fraction)]}
    is_calib = np.array([h in calib_keys for h in hashes], dtype=bool)
    calib_idx, eval_idx = np.flatnonzero(is_calib), np.flatnonzero(~is_calib)
    return (
        eval_set.take(eval_idx, source=f"{eval_set.source} (held-out half)"),
        eval_set.take(calib_idx, source=f"{eval_set.source} (calibration half)"),
    )
