"""The request log's columns, and how finished requests become rows of them.

One row per logged request. Inputs and outputs are summarised, never stored: per tensor its name,
dtype, shape, mean, min, max and NaN count; for a classifier's output (a float matrix of scores,
one row per item, or an integer label per item) the top class and its score for each item. The
summaries are computed in the log writer's thread, off the request path, and in bulk: the
tensors of requests that share a model, a tensor name, a shape and a dtype are stacked and
reduced at once, which is what lets one thread keep up with tens of thousands of requests a
second.
"""

from __future__ import annotations

import math
import warnings
from collections import defaultdict
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

if TYPE_CHECKING:
    from modelscale.serve import RequestRecord

__all__ = ["LOG_SCHEMA", "TENSOR_SUMMARY", "records_to_table"]

TENSOR_SUMMARY = pa.struct(
    [
        ("name", pa.string()),
        ("dtype", pa.string()),
        ("shape", pa.list_(pa.int64())),
        ("mean", pa.float64()),
        ("min", pa.float64()),
        ("max", pa.float64()),
        ("nan", pa.int64()),
    ]
)
"""One tensor of a request or its answer; the statistics are null for non-numeric tensors."""

LOG_SCHEMA = pa.schema(
    [
        ("time", pa.timestamp("us", tz="UTC")),
        ("request_id", pa.string()),
        ("model", pa.string()),
        ("version", pa.string()),
        ("arm", pa.string()),
        ("key_id", pa.string()),
        ("status", pa.int32()),
        ("error", pa.string()),
        ("latency_ms", pa.float64()),
        ("queue_ms", pa.float64()),
        ("batch_wait_ms", pa.float64()),
        ("compute_ms", pa.float64()),
        ("front_ms", pa.float64()),
        ("batch_rows", pa.int32()),
        ("rows", pa.int32()),
        ("inputs", pa.list_(TENSOR_SUMMARY)),
        ("outputs", pa.list_(TENSOR_SUMMARY)),
        ("top_class", pa.list_(pa.int64())),
        ("top_score", pa.list_(pa.float64())),
    ]
)
"""The columns of every log file.

``time`` is the request's arrival; the latencies split it: ``queue_ms`` arrival to hand-over to a
replica (``batch_wait_ms`` of it until the batch closed), ``compute_ms`` the batch's inference in
the replica, ``front_ms`` the rest (decoding, encoding, the trip to the replica and back).
``arm`` is the experiment arm (empty outside experiments), ``key_id`` the id of the API key
(never the key). ``top_class``/``top_score`` hold one entry per item for classifiers, else null.
"""

_NUMERIC = frozenset("biuf")


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1000.0


class _Summaries:
    """Per request, the summaries of its tensors, computed in bulk (see the module's doc)."""

    def __init__(self, n: int) -> None:
        self.rows: list[list[dict[str, Any]]] = [[] for _ in range(n)]
        self.top_class: list[list[int] | None] = [None] * n
        self.top_score: list[list[float] | None] = [None] * n

    def add(self, groups: dict[tuple[Any, ...], list[tuple[int, np.ndarray]]]) -> None:
        for (_, name, shape, dtype), members in groups.items():
            kind = np.dtype(dtype).kind
            index = [i for i, _ in members]
            shape_list = list(shape)
            if kind not in _NUMERIC or not shape_list or math.prod(shape_list) == 0:
                for i, a in members:
                    stats = _scalar_stats(a) if kind in _NUMERIC else (None, None, None, None)
                    self.rows[i].append(_entry(name, dtype, shape_list, *stats))
                continue
            stacked = np.stack([a for _, a in members]).reshape(len(members), -1)
            if kind == "f":
                nans = np.count_nonzero(np.isnan(stacked), axis=1)
                if nans.any():
                    with np.errstate(all="ignore"), warnings.catch_warnings():
                        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows: None
                        means = np.nanmean(stacked, axis=1, dtype=np.float64)
                        mins = np.nanmin(np.where(np.isnan(stacked), np.inf, stacked), axis=1)
                        maxs = np.nanmax(np.where(np.isnan(stacked), -np.inf, stacked), axis=1)
                else:
                    means = stacked.mean(axis=1, dtype=np.float64)
                    mins, maxs = stacked.min(axis=1), stacked.max(axis=1)
            else:
                nans = np.zeros(len(members), dtype=np.int64)
                means = stacked.mean(axis=1, dtype=np.float64)
                mins, maxs = stacked.min(axis=1), stacked.max(axis=1)
            for k, i in enumerate(index):
                self.rows[i].append(
                    _entry(
                        name,
                        dtype,
                        shape_list,
                        _finite(means[k]),  # type: ignore[index]
                        _finite(mins[k]),
                        _finite(maxs[k]),
                        int(nans[k]),
                    )
                )

    def classify(self, groups: dict[tuple[Any, ...], list[tuple[int, np.ndarray]]]) -> None:
        """Top class and score per item, from the first output of each request."""
        for (_, _, shape, dtype), members in groups.items():
            kind = np.dtype(dtype).kind
            if kind == "f" and len(shape) == 2 and 2 <= shape[1] <= 100_000 and shape[0] >= 1:
                stacked = np.stack([a for _, a in members])  # (n, items, classes)
                classes = stacked.argmax(axis=2)
                scores = np.take_along_axis(stacked, classes[..., None], axis=2)[..., 0]
                for k, (i, _) in enumerate(members):
                    self.top_class[i] = classes[k].tolist()
                    self.top_score[i] = scores[k].astype(np.float64).tolist()
            elif kind in "iu" and len(shape) in (1, 2) and (len(shape) == 1 or shape[1] == 1):
                for i, a in members:
                    if self.top_class[i] is None:
                        self.top_class[i] = a.reshape(-1).astype(np.int64).tolist()


def _finite(value: Any) -> float | None:
    v = float(value)
    return v if math.isfinite(v) else None


def _scalar_stats(a: np.ndarray) -> tuple[float | None, float | None, float | None, int]:
    if a.size == 0:
        return None, None, None, 0
    flat = a.reshape(-1)
    nan = int(np.count_nonzero(np.isnan(flat))) if flat.dtype.kind == "f" else 0
    if nan == flat.size:
        return None, None, None, nan
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return (
            _finite(np.nanmean(flat, dtype=np.float64)),
            _finite(np.nanmin(flat)),
            _finite(np.nanmax(flat)),
            nan,
        )


def _entry(
    name: str,
    dtype: str,
    shape: list[int],
    mean: float | None,
    lo: float | None,
    hi: float | None,
    nan: int,
) -> dict[str, Any]:
    return {
        "name": name,
        "dtype": dtype,
        "shape": shape,
        "mean": mean,
        "min": lo,
        "max": hi,
        "nan": nan,
    }


def _group(
    records: Sequence[RequestRecord], which: str
) -> tuple[
    dict[tuple[Any, ...], list[tuple[int, np.ndarray]]],
    dict[tuple[Any, ...], list[tuple[int, np.ndarray]]],
]:
    groups: dict[tuple[Any, ...], list[tuple[int, np.ndarray]]] = defaultdict(list)
    first: dict[tuple[Any, ...], list[tuple[int, np.ndarray]]] = defaultdict(list)
    for i, r in enumerate(records):
        if which == "inputs":
            tensors = r.request.inputs if r.request is not None else None
        else:
            tensors = r.outputs
        if not tensors:
            continue
        for j, (name, a) in enumerate(tensors.items()):
            if not isinstance(a, np.ndarray):
                a = np.asarray(a)
            key = (r.model, name, a.shape, a.dtype.str)
            groups[key].append((i, a))
            if j == 0:
                first[key].append((i, a))
    return groups, first


def records_to_table(
    records: Sequence[RequestRecord], *, arm_key: str = "arm", summaries: bool = True
) -> pa.Table:
    """The log rows of ``records`` (in their order), as an Arrow table of ``LOG_SCHEMA``."""
    n = len(records)
    ins = _Summaries(n)
    outs = _Summaries(n)
    if summaries:
        groups, _ = _group(records, "inputs")
        ins.add(groups)
        groups, first = _group(records, "outputs")
        outs.add(groups)
        outs.classify(first)
    columns: dict[str, list[Any]] = {
        "time": [int(r.time * 1_000_000) for r in records],
        "request_id": [r.request_id for r in records],
        "model": [r.model for r in records],
        "version": [r.version for r in records],
        "arm": [(r.extras or {}).get(arm_key, "") for r in records],
        "key_id": [r.key_id for r in records],
        "status": [r.status for r in records],
        "error": [r.error for r in records],
        "latency_ms": [r.latency_s * 1000.0 for r in records],
        "queue_ms": [_ms(r.queue_s) for r in records],
        "batch_wait_ms": [_ms(r.batch_wait_s) for r in records],
        "compute_ms": [_ms(r.infer_s) for r in records],
        "front_ms": [_ms(r.front_s) for r in records],
        "batch_rows": [r.batch_rows for r in records],
        "rows": [r.rows for r in records],
        "inputs": ins.rows,
        "outputs": outs.rows,
        "top_class": outs.top_class,
        "top_score": outs.top_score,
    }
    return pa.Table.from_pydict(columns, schema=LOG_SCHEMA)
