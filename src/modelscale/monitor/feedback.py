"""Ground truth for served predictions: ``POST /v2/models/{name}/feedback``.

The server remembers, per request id, what each served request predicted (a reference to its
output, turned into classes or values only when a label arrives) for ``label_ttl_s`` and at most
``max_pending`` requests. A label joins its request's prediction; the joined pairs give the
realized accuracy (or F1, or MAE) of the window the request was served in.

Body: ``{"id": "req-1", "label": 3}`` or ``{"items": [{"id": ..., "label": ...}, ...]}``; a
request of several rows takes a list of labels, one per row. Every label of a body is checked
before any is kept, so a bad one changes nothing.
"""

from __future__ import annotations

import math
import threading
from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np

from modelscale.errors import InvalidInput

__all__ = ["FeedbackItem", "Labels", "Pending", "PendingPredictions", "parse_feedback"]

MAX_ITEMS = 10_000


@dataclass(frozen=True)
class FeedbackItem:
    """One label (or one per row) for a request id."""

    id: str
    label: tuple[Any, ...]


def _label_values(raw: Any, where: str, task: str) -> tuple[Any, ...]:
    values = raw if isinstance(raw, list) else [raw]
    if not values:
        raise InvalidInput(
            f"{where}: 'label' is an empty list; expected a label per row", field="label"
        )
    out = []
    for i, v in enumerate(values):
        at = f"{where}, label {i}" if len(values) > 1 else where
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise InvalidInput(
                f"{at}: label {v!r} is not a number; expected "
                + ("a class index (a whole number)" if task == "classification" else "a number"),
                field="label",
            )
        if isinstance(v, int):
            if not -(2**63) <= v < 2**63:
                raise InvalidInput(
                    f"{at}: label {v} is out of range; expected a 64-bit integer", field="label"
                )
            out.append(v)
            continue
        if not math.isfinite(v):
            raise InvalidInput(f"{at}: label is {v}; expected a finite number", field="label")
        if task == "classification":
            if float(v) != int(v):
                raise InvalidInput(
                    f"{at}: label {v} is not a whole number; this model is a classifier and "
                    "expects class indices",
                    field="label",
                )
            v = int(v)
        out.append(v)
    return tuple(out)


def parse_feedback(body: Any, *, task: str) -> list[FeedbackItem]:
    """The items of a feedback body (JSON already parsed); every label checked."""
    if not isinstance(body, dict):
        raise InvalidInput(
            'expected a JSON object: {"id": REQUEST_ID, "label": LABEL} or {"items": [...]}',
            field="body",
        )
    if "items" in body:
        extra = sorted(set(body) - {"items"})
        raw = body["items"]
        if extra or not isinstance(raw, list):
            raise InvalidInput(
                '"items" must be a list of {"id", "label"} objects (and the only key)',
                field="items",
            )
        if not raw or len(raw) > MAX_ITEMS:
            raise InvalidInput(
                f'"items" holds {len(raw)} entries; expected 1 to {MAX_ITEMS}', field="items"
            )
    else:
        raw = [body]
    items = []
    for k, entry in enumerate(raw):
        where = f"item {k}" if "items" in body else "feedback"
        if not isinstance(entry, dict) or set(entry) != {"id", "label"}:
            keys = sorted(entry) if isinstance(entry, dict) else type(entry).__name__
            raise InvalidInput(
                f'{where}: expected exactly the keys "id" and "label"; got {keys}', field="body"
            )
        rid = entry["id"]
        if not isinstance(rid, str) or not rid or len(rid) > 256:
            raise InvalidInput(
                f"{where}: 'id' must be the request id the server answered with (a string of "
                f"1 to 256 characters); got {rid!r}",
                field="id",
            )
        items.append(FeedbackItem(rid, _label_values(entry["label"], where, task)))
    return items


Pending = tuple[float, str, np.ndarray]
"""(request time, version, what it predicted: a class per row, or a value per row)."""


class PendingPredictions:
    """What recent requests predicted, by request id, for feedback to join (thread-safe).

    Each entry is a plain tuple of a float, a string and a small numpy array, none of which the
    garbage collector tracks, so a million pending predictions do not make every full collection
    walk a million objects (measured: dataclass entries holding the raw outputs cost the server a
    third of its throughput at 1,500 req/s on digits). Only the predictions are kept, not the
    outputs they came from (an encoder's outputs can be 50 KB a request).
    """

    def __init__(self, *, ttl_s: float, capacity: int) -> None:
        self.ttl_s = ttl_s
        self.capacity = capacity
        self._items: dict[str, Pending] = {}
        self._lock = threading.Lock()
        self.evicted = 0

    def __len__(self) -> int:
        return len(self._items)

    def add(self, request_id: str, at: float, version: str, predictions: np.ndarray) -> None:
        """Remember what a request predicted."""
        with self._lock:
            items = self._items
            items.pop(request_id, None)  # a reused id moves to the end
            items[request_id] = (at, version, predictions)
            if len(items) > self.capacity:
                del items[next(iter(items))]
                self.evicted += 1
            # Requests arrive in time order, so the expired ones are at the front.
            limit = at - self.ttl_s
            while items:
                first = next(iter(items))
                if items[first][0] >= limit:
                    break
                del items[first]

    def take(self, request_id: str, now: float) -> tuple[str, Pending | None]:
        """('ok', pending) | ('expired', None) | ('unknown', None)."""
        with self._lock:
            p = self._items.get(request_id)
        if p is None:
            return "unknown", None
        if now - p[0] > self.ttl_s:
            return "expired", None
        return "ok", p


class Labels:
    """Joined (prediction, label) pairs by request time and version (thread-safe)."""

    def __init__(self, *, task: str, keep_s: float) -> None:
        self.task = task
        self.keep_s = keep_s
        self._rows: list[tuple[float, str, str, np.ndarray, np.ndarray]] = []
        self._by_id: dict[str, int] = {}
        self._lock = threading.Lock()
        self.counts: Counter[str] = Counter()
        """'joined', 'unknown', 'expired', 'invalid', 'replaced' -> count."""

    def join(self, item: FeedbackItem, pending: Pending) -> None:
        """Keep ``item``'s labels against the prediction of its request (replacing an earlier
        label for the same id)."""
        at, version, preds = pending
        labels = np.asarray(item.label)
        if labels.shape[0] != preds.shape[0]:
            raise InvalidInput(
                f"request {item.id} answered {preds.shape[0]} row(s); feedback gave "
                f"{labels.shape[0]} label(s). Expected one label per row",
                field="label",
            )
        with self._lock:
            row = (at, version, item.id, preds, labels)
            if item.id in self._by_id:
                self._rows[self._by_id[item.id]] = row
                self.counts["replaced"] += 1
            else:
                self._by_id[item.id] = len(self._rows)
                self._rows.append(row)
            self.counts["joined"] += 1

    def window(
        self, start: float, end: float, version: str | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Predictions and labels of the requests served in [start, end)."""
        with self._lock:
            rows = [
                r
                for r in self._rows
                if start <= r[0] < end and (version is None or r[1] == version)
            ]
        if not rows:
            empty = np.empty(0)
            return empty, empty
        return np.concatenate([r[3] for r in rows]), np.concatenate([r[4] for r in rows])

    def forget_before(self, t: float) -> None:
        """Drop pairs of requests served before ``t``."""
        with self._lock:
            keep = [r for r in self._rows if r[0] >= t]
            if len(keep) != len(self._rows):
                self._rows = keep
                self._by_id = {r[2]: i for i, r in enumerate(keep)}
