"""Rows of input arrays: counted and taken along each input's batch axis.

A batch axis need not be axis 0 (a recurrent state ``[layers, batch, hidden]``), and a 0-d input (a
sample rate) has none: it is one value for every row, passed along whole.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

__all__ = ["count_rows", "row_axis", "take_rows"]


def row_axis(name: str, arr: np.ndarray, axes: Mapping[str, int | None] | None) -> int | None:
    """The batch axis of array ``name``: as ``axes`` says, else 0 (None for a 0-d array)."""
    if axes is not None and name in axes:
        return axes[name]
    return 0 if np.ndim(arr) else None


def count_rows(
    arrays: Mapping[str, np.ndarray], axes: Mapping[str, int | None] | None = None
) -> int:
    """Rows in ``arrays``: the size of the first batched array's batch axis (1 if none is batched)."""
    for name, arr in arrays.items():
        axis = row_axis(name, arr, axes)
        if axis is not None:
            return int(np.shape(arr)[axis])
    return 1


def take_rows(
    arrays: Mapping[str, np.ndarray],
    index: slice | np.ndarray,
    axes: Mapping[str, int | None] | None = None,
) -> dict[str, np.ndarray]:
    """The rows at ``index`` (a slice or integer positions) of every batched array; the others whole."""
    out: dict[str, np.ndarray] = {}
    for name, arr in arrays.items():
        axis = row_axis(name, arr, axes)
        if axis is None:
            out[name] = arr
        elif isinstance(index, slice):
            out[name] = arr[(slice(None),) * axis + (index,)]
        else:
            out[name] = np.take(arr, index, axis=axis)
    return out
