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
import pyarrow.compute as pc

if TYPE_CHECKING:
    from modelscale.serve import RequestRecord

__all__ = [
    "LOG_SCHEMA",
    "PAYLOADS_DIR",
    "PAYLOAD_SCHEMA",
    "TENSOR_SUMMARY",
    "payloads_table",
    "records_to_table",
]

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


class _Summaries:
    """Per request, the summaries of its tensors, computed in bulk (see the module's doc).

    Built as columns: each group of same-shaped tensors gives arrays of statistics, the groups'
    entries are put in request order once, and the list-of-struct column is assembled from flat
    arrays; no dict is made per tensor (the writer shares the serving process's GIL)."""

    def __init__(self, n: int) -> None:
        self.n = n
        self._idx: list[np.ndarray] = []
        self._pos: list[np.ndarray] = []
        self._gid: list[np.ndarray] = []
        self._stats: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
        self._names: list[str] = []
        self._dtypes: list[str] = []
        self._shapes: list[list[int]] = []
        self.top_class: list[list[int] | None] = [None] * n
        self.top_score: list[list[float] | None] = [None] * n

    def add(self, groups: dict[tuple[Any, ...], list[tuple[int, int, np.ndarray]]]) -> None:
        for (_, name, shape, dtype), members in groups.items():
            kind = np.dtype(dtype).kind
            m = len(members)
            shape_list = list(shape)
            g = len(self._names)
            self._names.append(name)
            self._dtypes.append(np.dtype(dtype).str)
            self._shapes.append(shape_list)
            self._idx.append(np.fromiter((i for i, _, _ in members), dtype=np.int64, count=m))
            self._pos.append(np.fromiter((j for _, j, _ in members), dtype=np.int64, count=m))
            self._gid.append(np.full(m, g, dtype=np.int64))
            if kind not in _NUMERIC or math.prod(shape_list) == 0:
                none = np.full(m, np.nan)
                self._stats.append((none, none, none, np.zeros(m, dtype=np.int64)))
                continue
            stacked = np.stack([a for _, _, a in members]).reshape(m, -1)
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
                nans = np.zeros(m, dtype=np.int64)
                means = stacked.mean(axis=1, dtype=np.float64)
                mins, maxs = stacked.min(axis=1), stacked.max(axis=1)
            self._stats.append(
                (
                    np.asarray(means, dtype=np.float64),
                    np.asarray(mins, dtype=np.float64),
                    np.asarray(maxs, dtype=np.float64),
                    np.asarray(nans, dtype=np.int64),
                )
            )

    def column(self) -> pa.Array:
        """The ``list<TENSOR_SUMMARY>`` column, one list per request (empty without tensors)."""
        if not self._names:
            return pa.array([[] for _ in range(self.n)], type=pa.list_(TENSOR_SUMMARY))
        idx = np.concatenate(self._idx)
        order = np.lexsort((np.concatenate(self._pos), idx))
        gid = pa.array(np.concatenate(self._gid)[order])

        def stat(k: int) -> pa.Array:
            values = np.concatenate([s[k] for s in self._stats])[order]
            if k == 3:
                return pa.array(values, type=pa.int64())
            return pa.array(values, type=pa.float64(), mask=~np.isfinite(values))

        struct = pa.StructArray.from_arrays(
            [
                pa.array(self._names, type=pa.string()).take(gid),
                pa.array(self._dtypes, type=pa.string()).take(gid),
                pa.array(self._shapes, type=pa.list_(pa.int64())).take(gid),
                stat(0),
                stat(1),
                stat(2),
                stat(3),
            ],
            fields=list(TENSOR_SUMMARY),
        )
        offsets = np.zeros(self.n + 1, dtype=np.int32)
        np.cumsum(np.bincount(idx, minlength=self.n), out=offsets[1:])
        return pa.ListArray.from_arrays(pa.array(offsets), struct)

    def classify(self, groups: dict[tuple[Any, ...], list[tuple[int, int, np.ndarray]]]) -> None:
        """Top class and score per item, from the first output of each request."""
        for (_, _, shape, dtype), members in groups.items():
            kind = np.dtype(dtype).kind
            if kind == "f" and len(shape) == 2 and 2 <= shape[1] <= 100_000 and shape[0] >= 1:
                stacked = np.stack([a for _, _, a in members])  # (n, items, classes)
                classes = stacked.argmax(axis=2)
                scores = np.take_along_axis(stacked, classes[..., None], axis=2)[..., 0]
                for k, (i, _, _) in enumerate(members):
                    self.top_class[i] = classes[k].tolist()
                    self.top_score[i] = scores[k].astype(np.float64).tolist()
            elif kind in "iu" and len(shape) in (1, 2) and (len(shape) == 1 or shape[1] == 1):
                for i, _, a in members:
                    if self.top_class[i] is None:
                        self.top_class[i] = a.reshape(-1).astype(np.int64).tolist()


_Groups = dict[tuple[Any, ...], list[tuple[int, int, np.ndarray]]]


def _group(records: Sequence[RequestRecord], which: str) -> tuple[_Groups, _Groups]:
    """Tensors by (model, name, shape, dtype): (request index, position, array); and, for
    outputs, the same for each request's first tensor only (what ``classify`` reads)."""
    groups: _Groups = defaultdict(list)
    first: _Groups = defaultdict(list)
    outputs = which != "inputs"
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
            key = (r.model, name, a.shape, a.dtype)
            groups[key].append((i, j, a))
            if outputs and j == 0:
                first[key].append((i, j, a))
    return groups, first


def _ms_array(values: Sequence[float | None]) -> pa.Array:
    return pc.multiply(pa.array(values, type=pa.float64()), 1000.0)


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
    if n == 0:
        return LOG_SCHEMA.empty_table()
    # The records' fields as columns in one C-level transposition, the arithmetic in Arrow: the
    # writer shares the serving process's GIL, so its per-record Python is kept small.
    f = dict(zip(records[0]._fields, zip(*records, strict=True), strict=True))
    latency = _ms_array(f["latency_s"])
    queue = _ms_array(f["queue_s"])
    roundtrip = _ms_array(f["roundtrip_s"])
    front = pc.max_element_wise(pc.subtract(pc.subtract(latency, queue), roundtrip), 0.0)
    micros = (np.asarray(f["time"], dtype=np.float64) * 1_000_000).astype(np.int64)
    extras = f["extras"]
    arms = [""] * n if not any(extras) else [(e or {}).get(arm_key, "") for e in extras]
    columns: dict[str, Any] = {
        "time": pa.array(micros, type=pa.int64()).cast(pa.timestamp("us", tz="UTC")),
        "request_id": f["request_id"],
        "model": f["model"],
        "version": f["version"],
        "arm": arms,
        "key_id": f["key_id"],
        "status": f["status"],
        "error": f["error"],
        "latency_ms": latency,
        "queue_ms": queue,
        "batch_wait_ms": _ms_array(f["batch_wait_s"]),
        "compute_ms": _ms_array(f["infer_s"]),
        "front_ms": front,
        "batch_rows": f["batch_rows"],
        "rows": f["rows"],
        "inputs": ins.column(),
        "outputs": outs.column(),
        "top_class": outs.top_class,
        "top_score": outs.top_score,
    }
    return pa.Table.from_pydict(columns, schema=LOG_SCHEMA)


PAYLOADS_DIR = "_payloads"
"""The folder of the log's root that holds payloads (``PAYLOAD_SCHEMA``), apart from the rows."""

PAYLOAD_SCHEMA = pa.schema(
    [
        ("time", pa.timestamp("us", tz="UTC")),
        ("request_id", pa.string()),
        ("model", pa.string()),
        ("version", pa.string()),
        ("payload", pa.string()),
    ]
)
"""A logged payload: the request's inputs (and listed parameters, headers, outputs) after the
model's privacy policy, as JSON. Joined to the request log by ``request_id``."""


def payloads_table(records: Sequence[RequestRecord]) -> pa.Table:
    """The payloads the privacy stage left on ``records`` (records without one are skipped)."""
    import orjson

    rows = [r for r in records if r.extras and "payload" in r.extras]
    if not rows:
        return PAYLOAD_SCHEMA.empty_table()
    micros = (np.asarray([r.time for r in rows], dtype=np.float64) * 1_000_000).astype(np.int64)
    return pa.Table.from_pydict(
        {
            "time": pa.array(micros, type=pa.int64()).cast(pa.timestamp("us", tz="UTC")),
            "request_id": [r.request_id for r in rows],
            "model": [r.model for r in rows],
            "version": [r.version for r in rows],
            "payload": [
                orjson.dumps(r.extras["payload"], option=orjson.OPT_SERIALIZE_NUMPY).decode()
                for r in rows
                if r.extras is not None
            ],
        },
        schema=PAYLOAD_SCHEMA,
    )
