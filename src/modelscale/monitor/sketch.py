"""Mergeable profiles of a model's traffic: one Apache DataSketches sketch per feature.

A ``Profile`` is what a baseline or a live window knows about the features of the rows it saw
(``modelscale.monitor.summary`` turns tensors into features):

- a numeric feature: a KLL quantile sketch (``kll_floats_sketch``, k = ``KLL_K``) of its finite
  values, plus the count of rows, NaN and infinite values, and the sum and sum of squares;
- a categorical feature (a predicted class, a token-id bucket, an integer code): a frequent-items
  sketch of its values with their counts and an HLL sketch of its distinct values;
- a reservoir sample of rows of the numeric features, for the multivariate (domain classifier)
  test.

Every part merges exactly as DataSketches defines it (KLL and frequent items keep their stated
error bounds after merging; the reservoir stays a uniform sample), so windows written by several
servers combine into the window of the whole fleet, and the cost of a baseline does not grow with
its data. Profiles serialise to bytes (the sketches' own formats inside a small JSON envelope)
for the knowledge base and the files ``monitor run`` reads.
"""

from __future__ import annotations

import base64
import binascii
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import datasketches as ds
import numpy as np
import orjson

from modelscale.errors import InvalidInput

__all__ = [
    "CATEGORICAL",
    "FREQ_LG_K",
    "HLL_LG_K",
    "KLL_K",
    "NUMERIC",
    "RESERVOIR",
    "CategoricalSketch",
    "NumericSketch",
    "Profile",
    "Reservoir",
]

NUMERIC = "numeric"
CATEGORICAL = "categorical"
KLL_K = 1000
"""KLL's accuracy parameter: a normalised rank error of about 0.28% (99% confidence) once a
sketch holds more than ~k values, exact below; folds ~25M values/s on one core here."""
FREQ_LG_K = 8
"""Frequent items: up to 192 distinct values tracked exactly, more with a stated error."""
HLL_LG_K = 12
"""HLL: about 1.6% relative error on distinct counts."""
RESERVOIR = 1_000
"""Rows of the numeric features kept for the domain-classifier test."""
_FORMAT = 1


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text.encode("ascii"))


class NumericSketch:
    """Quantiles and counts of one numeric feature."""

    kind = NUMERIC
    __slots__ = ("inf", "kll", "n", "nan", "sum", "sumsq")

    def __init__(self) -> None:
        self.kll = ds.kll_floats_sketch(KLL_K)
        self.n = 0
        """Rows, missing or not."""
        self.nan = 0
        self.inf = 0
        self.sum = 0.0
        self.sumsq = 0.0

    def update(self, values: np.ndarray) -> None:
        """Fold a column of values in."""
        v = np.asarray(values, dtype=np.float32).reshape(-1)
        self.n += v.size
        finite = np.isfinite(v)
        if not finite.all():
            nan = np.isnan(v)
            self.nan += int(nan.sum())
            self.inf += int(v.size - finite.sum() - nan.sum())
            v = v[finite]
        if v.size:
            self.kll.update(np.ascontiguousarray(v))
            v64 = v.astype(np.float64)
            self.sum += float(v64.sum())
            self.sumsq += float(np.dot(v64, v64))

    def merge(self, other: NumericSketch) -> None:
        """Fold ``other`` in."""
        self.kll.merge(other.kll)
        self.n += other.n
        self.nan += other.nan
        self.inf += other.inf
        self.sum += other.sum
        self.sumsq += other.sumsq

    @property
    def count(self) -> int:
        """Finite values."""
        return int(self.kll.n)

    @property
    def mean(self) -> float:
        """Mean of the finite values (NaN when there are none)."""
        return self.sum / self.count if self.count else math.nan

    @property
    def std(self) -> float:
        """Standard deviation of the finite values (population)."""
        if not self.count:
            return math.nan
        var = self.sumsq / self.count - self.mean**2
        return math.sqrt(max(var, 0.0))

    @property
    def min(self) -> float:
        """Smallest finite value (NaN when there are none)."""
        return float(self.kll.get_min_value()) if self.count else math.nan

    @property
    def max(self) -> float:
        """Largest finite value (NaN when there are none)."""
        return float(self.kll.get_max_value()) if self.count else math.nan

    @property
    def rank_error(self) -> float:
        """The sketch's normalised rank error (99% confidence): 0 while it holds every value."""
        if not self.kll.is_estimation_mode():
            return 0.0
        return float(self.kll.normalized_rank_error(False))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (the KLL sketch in its own binary format, base64)."""
        return {
            "kind": NUMERIC,
            "n": self.n,
            "nan": self.nan,
            "inf": self.inf,
            "sum": self.sum,
            "sumsq": self.sumsq,
            "kll": _b64(self.kll.serialize()),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> NumericSketch:
        """Read back ``to_dict()``."""
        s = cls()
        s.kll = ds.kll_floats_sketch.deserialize(_unb64(d["kll"]))
        s.n, s.nan, s.inf = int(d["n"]), int(d["nan"]), int(d["inf"])
        s.sum, s.sumsq = float(d["sum"]), float(d["sumsq"])
        return s


class CategoricalSketch:
    """Value counts (frequent items) and distinct count (HLL) of one categorical feature."""

    kind = CATEGORICAL
    __slots__ = ("freq", "hll", "n")

    def __init__(self) -> None:
        self.freq = ds.frequent_strings_sketch(FREQ_LG_K)
        self.hll = ds.hll_sketch(HLL_LG_K)
        self.n = 0
        """Rows. A feature with several items per row (token-id buckets of a sequence) counts
        each item, and its tests use ``n`` rows, not the item count, as the sample size."""

    def update(self, values: np.ndarray, *, rows: int | None = None) -> None:
        """Fold values in (one per row, or several per row with ``rows`` given)."""
        v = np.asarray(values).reshape(-1)
        self.n += v.size if rows is None else rows
        if not v.size:
            return
        # One update per distinct value (with its count), not per row: a batch of a million
        # codes costs one np.unique.
        uniq, counts = np.unique(v, return_counts=True)
        for u, c in zip(uniq.tolist(), counts.tolist(), strict=True):
            key = str(u)
            self.freq.update(key, int(c))
            self.hll.update(key)

    def merge(self, other: CategoricalSketch) -> None:
        """Fold ``other`` in."""
        self.freq.merge(other.freq)
        union = ds.hll_union(HLL_LG_K)
        union.update(self.hll)
        union.update(other.hll)
        self.hll = union.get_result()
        self.n += other.n

    @property
    def items(self) -> int:
        """Counted values (rows, or items for a feature with several per row)."""
        return int(self.freq.total_weight)

    def counts(self) -> dict[str, float]:
        """Estimated count per value the sketch tracks (all of them below 192 distinct values)."""
        found = self.freq.get_frequent_items(ds.frequent_items_error_type.NO_FALSE_NEGATIVES)
        return {item: float(est) for item, est, _, _ in found}

    @property
    def count_error(self) -> float:
        """The largest error bound of any tracked count (0 while every value is tracked)."""
        found = self.freq.get_frequent_items(ds.frequent_items_error_type.NO_FALSE_NEGATIVES)
        return max((float(ub - lb) for _, _, lb, ub in found), default=0.0)

    @property
    def distinct(self) -> float:
        """Estimated number of distinct values."""
        return float(self.hll.get_estimate())

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (the sketches in their own binary formats, base64)."""
        return {
            "kind": CATEGORICAL,
            "n": self.n,
            "freq": _b64(self.freq.serialize()),
            "hll": _b64(self.hll.serialize_compact()),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> CategoricalSketch:
        """Read back ``to_dict()``."""
        s = cls()
        s.freq = ds.frequent_strings_sketch.deserialize(_unb64(d["freq"]))
        s.hll = ds.hll_sketch.deserialize(_unb64(d["hll"]))
        s.n = int(d["n"])
        return s


def _gather(columns: Sequence[np.ndarray], idx: np.ndarray) -> np.ndarray:
    return np.stack([np.asarray(c)[idx] for c in columns], axis=1).astype(np.float32)


class Reservoir:
    """A uniform sample of rows (Vitter's algorithm R), mergeable.

    Written here: DataSketches' ``var_opt_sketch`` samples one Python object per update, which
    costs a call per row; this one takes whole batches with numpy.
    """

    def __init__(self, columns: Iterable[str], capacity: int = RESERVOIR, seed: int = 0) -> None:
        self.columns = tuple(columns)
        self.capacity = capacity
        self.rows = np.empty((0, len(self.columns)), dtype=np.float32)
        self.seen = 0
        self._rng = np.random.default_rng(seed)

    def update(self, columns: Sequence[np.ndarray]) -> None:
        """Offer rows, given as one array per column (in ``columns`` order).

        Only the rows that win a slot are gathered, so offering a million rows costs one random
        draw per row, not a copy of them.
        """
        n = len(columns[0]) if columns else 0
        if not n:
            return
        idx = np.arange(n)
        room = self.capacity - self.rows.shape[0]
        if room > 0:
            first = idx[:room]
            self.rows = np.concatenate([self.rows, _gather(columns, first)])
            self.seen += first.size
            idx = idx[room:]
            if not idx.size:
                return
        # Row i of the rest (the (seen+i+1)-th row overall) replaces a random slot with
        # probability capacity / (seen+i+1).
        positions = self.seen + 1 + np.arange(idx.size)
        slots = (self._rng.random(idx.size) * positions).astype(np.int64)
        keep = slots < self.capacity
        # Later rows win a slot drawn twice, as in the sequential algorithm (fancy assignment
        # keeps the last write).
        self.rows[slots[keep]] = _gather(columns, idx[keep])
        self.seen += idx.size

    def merge(self, other: Reservoir) -> None:
        """Fold ``other`` in: a uniform sample of both streams' rows together."""
        if other.columns != self.columns:
            raise InvalidInput(
                "cannot merge samples of different features: "
                f"{list(self.columns)} and {list(other.columns)}",
                field="columns",
            )
        total = self.seen + other.seen
        if not other.seen:
            return
        k = min(self.capacity, self.rows.shape[0] + other.rows.shape[0])
        # How many of the merged sample come from each side: hypergeometric on the streams'
        # sizes, capped by what each side kept.
        from_self = int(self._rng.hypergeometric(self.seen, other.seen, k)) if self.seen else 0
        from_self = min(from_self, self.rows.shape[0])
        from_other = min(k - from_self, other.rows.shape[0])
        a = self.rows[self._rng.permutation(self.rows.shape[0])[:from_self]]
        b = other.rows[self._rng.permutation(other.rows.shape[0])[:from_other]]
        self.rows = np.concatenate([a, b])
        self.seen = total

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "columns": list(self.columns),
            "capacity": self.capacity,
            "seen": self.seen,
            "rows": _b64(np.ascontiguousarray(self.rows, dtype="<f4").tobytes()),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Reservoir:
        """Read back ``to_dict()``."""
        r = cls(d["columns"], int(d["capacity"]))
        flat = np.frombuffer(_unb64(d["rows"]), dtype="<f4")
        r.rows = flat.reshape(-1, len(r.columns)).astype(np.float32)
        r.seen = int(d["seen"])
        return r


_Sketch = NumericSketch | CategoricalSketch


@dataclass
class Profile:
    """The sketches of every feature over some rows (a baseline, or one window)."""

    features: dict[str, _Sketch] = field(default_factory=dict)
    reservoir: Reservoir | None = None
    rows: int = 0
    requests: int = 0
    rejected: int = 0
    """Requests the server refused as invalid (schema violations)."""
    start: float | None = None
    """Unix time of the first row (None for a baseline from a file)."""
    end: float | None = None

    @classmethod
    def empty(cls, kinds: Mapping[str, str], *, sampled: Sequence[str] | None = None) -> Profile:
        """A profile with no rows yet for features of the given kinds (name -> kind), keeping a
        reservoir sample of the ``sampled`` numeric features (default: all of them)."""
        feats: dict[str, _Sketch] = {
            name: NumericSketch() if kind == NUMERIC else CategoricalSketch()
            for name, kind in kinds.items()
        }
        if sampled is None:
            sampled = [n for n, k in kinds.items() if k == NUMERIC]
        return cls(feats, Reservoir(sampled) if sampled else None)

    def kinds(self) -> dict[str, str]:
        """Feature name -> kind."""
        return {name: s.kind for name, s in self.features.items()}

    def update(
        self,
        numeric: Mapping[str, np.ndarray],
        categorical: Mapping[str, tuple[np.ndarray, int | None]],
        *,
        rows: int,
        requests: int = 0,
        times: tuple[float, float] | None = None,
    ) -> None:
        """Fold a batch of extracted features in (``categorical``: values and rows they came from,
        None when one value per row)."""
        for name, values in numeric.items():
            sk = self.features[name]
            assert isinstance(sk, NumericSketch)
            sk.update(values)
        for name, (values, per) in categorical.items():
            sk = self.features[name]
            assert isinstance(sk, CategoricalSketch)
            sk.update(values, rows=per)
        if self.reservoir is not None and rows:
            self.reservoir.update([numeric[c] for c in self.reservoir.columns])
        self.rows += rows
        self.requests += requests
        if times is not None:
            self.start = times[0] if self.start is None else min(self.start, times[0])
            self.end = times[1] if self.end is None else max(self.end, times[1])

    def merge(self, other: Profile) -> None:
        """Fold ``other`` (the same features) in."""
        if other.kinds() != self.kinds():
            missing = sorted(set(self.kinds()) ^ set(other.kinds()))
            raise InvalidInput(
                f"cannot merge profiles of different features (differ in {missing[:5]}); "
                "were they made with the same baseline?",
                field="features",
            )
        for name, sk in self.features.items():
            sk.merge(other.features[name])  # type: ignore[arg-type]
        if self.reservoir is not None and other.reservoir is not None:
            self.reservoir.merge(other.reservoir)
        self.rows += other.rows
        self.requests += other.requests
        self.rejected += other.rejected
        for t in (other.start, other.end):
            if t is not None:
                self.start = t if self.start is None else min(self.start, t)
                self.end = t if self.end is None else max(self.end, t)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "format": _FORMAT,
            "rows": self.rows,
            "requests": self.requests,
            "rejected": self.rejected,
            "start": self.start,
            "end": self.end,
            "features": {name: s.to_dict() for name, s in self.features.items()},
            "reservoir": self.reservoir.to_dict() if self.reservoir is not None else None,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Profile:
        """Read back ``to_dict()``."""
        if d.get("format") != _FORMAT:
            raise InvalidInput(
                f"unknown profile format {d.get('format')!r}; this modelscale reads {_FORMAT}",
                field="format",
            )
        feats: dict[str, _Sketch] = {}
        for name, f in d["features"].items():
            feats[name] = (
                NumericSketch.from_dict(f)
                if f["kind"] == NUMERIC
                else CategoricalSketch.from_dict(f)
            )
        res = d.get("reservoir")
        return cls(
            feats,
            Reservoir.from_dict(res) if res else None,
            rows=int(d["rows"]),
            requests=int(d.get("requests", 0)),
            rejected=int(d.get("rejected", 0)),
            start=d.get("start"),
            end=d.get("end"),
        )

    def to_bytes(self) -> bytes:
        """Serialised (JSON envelope, sketches in their binary formats)."""
        return orjson.dumps(self.to_dict())

    @classmethod
    def from_bytes(cls, data: bytes) -> Profile:
        """Read back ``to_bytes()``."""
        try:
            d = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise InvalidInput(f"not a monitor profile: {exc}", field="profile") from None
        if not isinstance(d, dict):
            raise InvalidInput(
                f"not a monitor profile: a JSON {type(d).__name__}, expected an object",
                field="profile",
            )
        try:
            return cls.from_dict(d)
        except InvalidInput:
            raise
        except (KeyError, TypeError, ValueError, IndexError, RuntimeError, binascii.Error) as exc:
            raise InvalidInput(
                f"not a monitor profile ({type(exc).__name__}: {exc})", field="profile"
            ) from None
