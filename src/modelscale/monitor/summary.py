"""Which features of a model's inputs and outputs are watched, and how tensors become them.

A drift test per raw tensor element is noise (a 224x224 image has 150,528 of them) and a test of
a whole tensor at once has no meaning a user can act on, so each tensor is summarised into
features that mean something, decided once from the reference data and kept in the baseline (the
server extracts exactly what the baseline holds):

=============================  ===========================================================
tensor (per row)               features
=============================  ===========================================================
a scalar (float)               ``name``
a few floats (<= 32)           ``name[i]`` per column
a long float vector            ``name.norm``, ``.mean``, ``.std``, ``.pc1``... (projections
                               on the reference's top principal components)
an image (C <= 16 channels)    ``name.c{k}.mean`` and ``.c{k}.std`` per channel, ``.norm``,
                               ``.pc1``...
a float sequence [L, D]        mean over L, then as a long vector
token ids (ints, large ids)    ``name.length`` (tokens that are not padding),
                               ``name.padding`` (share), ``name.bucket`` (categorical:
                               which 1/32 of the vocabulary each token falls in)
a mask (ints in {0, 1})        ``name.ones`` (sum per row)
integer codes (<= 50 values)   ``name`` (categorical)
classifier scores [K]          ``name.class`` (categorical, argmax) and
                               ``name.confidence`` (top softmax probability)
an integer output              ``name.class`` (categorical)
=============================  ===========================================================
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from modelscale.errors import InvalidInput
from modelscale.monitor.accuracy import softmax_top
from modelscale.monitor.sketch import CATEGORICAL, NUMERIC

__all__ = [
    "MIN_REFERENCE_ROWS",
    "FeaturePlan",
    "TensorPlan",
    "predictions_of",
]

MIN_REFERENCE_ROWS = 100
"""Fewer reference rows give tests with too little power to mean anything."""
MAX_COLUMNS = 32
MAX_CHANNELS = 16
MAX_CODES = 50
PCS = 8
MAX_PCA_DIM = 4_096
TOKEN_BUCKETS = 32
_PCA_ROWS = 5_000


def predictions_of(outputs: np.ndarray, task: str) -> np.ndarray:
    """Predicted class per row (classification) or the predicted value (regression).

    A classifier's single output per row is a class id when it is an integer, else a
    probability of the positive class (>= 0.5) when it lies in [0, 1], else a logit (>= 0).
    """
    a = np.asarray(outputs)
    rows = a.shape[0] if a.ndim else 1
    flat = a.reshape(rows, -1)
    if task != "classification":
        return flat[:, 0].astype(np.float64)
    if flat.shape[1] > 1:
        return flat.argmax(axis=1)  # the softmax keeps the order: no need to compute it
    col = flat[:, 0]
    if col.dtype.kind in "iub":
        return col.astype(np.int64)
    threshold = 0.5 if np.all((col >= 0) & (col <= 1)) else 0.0
    return (col >= threshold).astype(np.int64)


@dataclass(frozen=True)
class TensorPlan:
    """How one tensor becomes features."""

    tensor: str
    role: str
    """'input' or 'output'."""
    mode: str
    """scalar, columns, vector, image, sequence, tokens, mask, codes, scores or classes."""
    columns: int = 0
    channels: int = 0
    pad_id: int | None = None
    vocab: int = 0
    pca_mean: tuple[float, ...] = ()
    pca_components: tuple[tuple[float, ...], ...] = ()
    positions: tuple[int, ...] = ()
    """Flattened positions the projections read, when a row has more than 4,096 values."""
    width: int = 0
    """Values per flattened row in the reference (projections need the same)."""

    def names(self) -> dict[str, str]:
        """Feature name -> kind."""
        t = self.tensor
        out: dict[str, str] = {}
        if self.mode == "scalar":
            out[t] = NUMERIC
        elif self.mode == "columns":
            out.update({f"{t}[{i}]": NUMERIC for i in range(self.columns)})
        elif self.mode == "codes":
            out[t] = CATEGORICAL
        elif self.mode == "tokens":
            out.update(
                {f"{t}.length": NUMERIC, f"{t}.padding": NUMERIC, f"{t}.bucket": CATEGORICAL}
            )
        elif self.mode == "mask":
            out[f"{t}.ones"] = NUMERIC
        elif self.mode == "scores":
            out.update({f"{t}.class": CATEGORICAL, f"{t}.confidence": NUMERIC})
        elif self.mode == "classes":
            out[f"{t}.class"] = CATEGORICAL
        else:  # vector, image, sequence
            if self.mode == "image":
                for c in range(self.channels):
                    out[f"{t}.c{c}.mean"] = NUMERIC
                    out[f"{t}.c{c}.std"] = NUMERIC
            else:
                out.update({f"{t}.mean": NUMERIC, f"{t}.std": NUMERIC})
            out[f"{t}.norm"] = NUMERIC
            out.update({f"{t}.pc{i + 1}": NUMERIC for i in range(len(self.pca_components))})
        return out

    def _flat(self, a: np.ndarray) -> np.ndarray | None:
        """Rows flattened for the projections (None when their size is not the reference's)."""
        if self.mode == "sequence":
            flat = a.reshape(a.shape[0], -1, a.shape[-1]).mean(axis=1)
        else:
            flat = a.reshape(a.shape[0], -1)
        if self.width and flat.shape[1] != self.width:
            return None
        if self.positions:
            if flat.shape[1] <= max(self.positions):
                return None
            flat = flat[:, list(self.positions)]
        if flat.shape[1] != len(self.pca_mean):
            return None
        return flat

    def extract(
        self, a: np.ndarray, numeric: dict[str, np.ndarray], categorical: dict[str, Any]
    ) -> None:
        """Add this tensor's features of the rows of ``a`` (batch axis first)."""
        t, n = self.tensor, a.shape[0]
        if self.mode == "scalar":
            numeric[t] = a.reshape(n, -1)[:, 0].astype(np.float32)
        elif self.mode == "columns":
            m = a.reshape(n, -1).astype(np.float32)
            for i in range(self.columns):
                numeric[f"{t}[{i}]"] = m[:, i] if i < m.shape[1] else np.full(n, np.nan, np.float32)
        elif self.mode == "codes":
            categorical[t] = (a.reshape(n, -1)[:, 0].astype(np.int64), None)
        elif self.mode == "classes":
            categorical[f"{t}.class"] = (a.reshape(n, -1)[:, 0].astype(np.int64), None)
        elif self.mode == "scores":
            scores = a.reshape(n, -1)
            finite = np.isfinite(scores).all(axis=1)
            conf = np.full(n, np.nan, np.float32)
            top = np.empty(0, np.int64)
            if finite.any():  # a row with a NaN score has no class and a NaN confidence
                top, prob = softmax_top(scores[finite])
                conf[finite] = prob
            categorical[f"{t}.class"] = (top, None)
            numeric[f"{t}.confidence"] = conf
        elif self.mode == "mask":
            numeric[f"{t}.ones"] = a.reshape(n, -1).sum(axis=1).astype(np.float32)
        elif self.mode == "tokens":
            ids = a.reshape(n, -1)
            width = ids.shape[1]
            pad = ids == self.pad_id if self.pad_id is not None else np.zeros(ids.shape, bool)
            padded = pad.sum(axis=1)
            numeric[f"{t}.length"] = (width - padded).astype(np.float32)
            numeric[f"{t}.padding"] = (padded / max(width, 1)).astype(np.float32)
            real = ids[~pad]
            buckets = np.clip(real * TOKEN_BUCKETS // max(self.vocab, 1), 0, TOKEN_BUCKETS)
            categorical[f"{t}.bucket"] = (buckets.astype(np.int64), n)
        else:
            x = a.astype(np.float32, copy=False)
            if self.mode == "image":
                per = x.reshape(n, x.shape[1], -1)
                mean, std = per.mean(axis=2), per.std(axis=2)
                for c in range(self.channels):
                    ok = c < per.shape[1]
                    numeric[f"{t}.c{c}.mean"] = mean[:, c] if ok else np.full(n, np.nan, np.float32)
                    numeric[f"{t}.c{c}.std"] = std[:, c] if ok else np.full(n, np.nan, np.float32)
            else:
                flat_all = (
                    x.reshape(n, -1, x.shape[-1]).mean(axis=1)
                    if self.mode == "sequence"
                    else x.reshape(n, -1)
                )
                numeric[f"{t}.mean"] = flat_all.mean(axis=1)
                numeric[f"{t}.std"] = flat_all.std(axis=1)
            numeric[f"{t}.norm"] = np.sqrt(
                np.einsum("ij,ij->i", x.reshape(n, -1), x.reshape(n, -1))
            ).astype(np.float32)
            if self.pca_components:
                flat = self._flat(x)
                comps = np.asarray(self.pca_components, dtype=np.float32)
                if flat is None:
                    proj = np.full((n, len(comps)), np.nan, np.float32)
                else:
                    proj = (flat - np.asarray(self.pca_mean, np.float32)) @ comps.T
                for i in range(len(comps)):
                    numeric[f"{t}.pc{i + 1}"] = proj[:, i]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "tensor": self.tensor,
            "role": self.role,
            "mode": self.mode,
            "columns": self.columns,
            "channels": self.channels,
            "pad_id": self.pad_id,
            "vocab": self.vocab,
            "pca_mean": list(self.pca_mean),
            "pca_components": [list(c) for c in self.pca_components],
            "positions": list(self.positions),
            "width": self.width,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TensorPlan:
        """Read back ``to_dict()``."""
        return cls(
            tensor=d["tensor"],
            role=d["role"],
            mode=d["mode"],
            columns=int(d.get("columns", 0)),
            channels=int(d.get("channels", 0)),
            pad_id=d.get("pad_id"),
            vocab=int(d.get("vocab", 0)),
            pca_mean=tuple(float(v) for v in d.get("pca_mean", ())),
            pca_components=tuple(tuple(float(v) for v in c) for c in d.get("pca_components", ())),
            positions=tuple(int(v) for v in d.get("positions", ())),
            width=int(d.get("width", 0)),
        )


def _pca(flat: np.ndarray, seed: int) -> tuple[tuple[float, ...], tuple[tuple[float, ...], ...]]:
    rng = np.random.default_rng(seed)
    if flat.shape[0] > _PCA_ROWS:
        flat = flat[rng.choice(flat.shape[0], _PCA_ROWS, replace=False)]
    flat = flat.astype(np.float64)
    mean = flat.mean(axis=0)
    k = min(PCS, flat.shape[1], flat.shape[0] - 1)
    if k < 1:
        return tuple(mean.tolist()), ()
    _, s, vt = np.linalg.svd(flat - mean, full_matrices=False)
    keep = [i for i in range(k) if s[i] > 1e-9 * max(s[0], 1e-30)]
    comps = tuple(tuple(float(v) for v in vt[i]) for i in keep)
    return tuple(float(v) for v in mean), comps


def _plan_tensor(name: str, role: str, a: np.ndarray, *, task: str, seed: int) -> TensorPlan | None:
    n = a.shape[0]
    per = a.shape[1:]
    size = int(np.prod(per)) if per else 1
    kind = a.dtype.kind
    if kind == "b":
        a, kind = a.astype(np.int64), "i"
    if kind not in "fiu":
        return None  # strings, objects: no numeric summary (the privacy stage owns text)
    if size == 1:
        if kind == "f":
            return TensorPlan(name, role, "scalar")
        if role == "output":
            return TensorPlan(name, role, "classes")
        distinct = np.unique(a.reshape(-1)).size
        return TensorPlan(name, role, "codes" if distinct <= MAX_CODES else "scalar")
    if kind in "iu" and len(per) == 1:
        top = int(a.max()) if a.size else 0
        if int(a.min()) >= 0 and top <= 1:
            return TensorPlan(name, role, "mask")
        if top > 1_000:
            last = a[:, -1]
            values, counts = np.unique(last, return_counts=True)
            pad = int(values[counts.argmax()]) if counts.max() >= 0.5 * n else None
            return TensorPlan(name, role, "tokens", pad_id=pad, vocab=top + 1)
        if per[0] <= MAX_COLUMNS:
            return TensorPlan(name, role, "columns", columns=per[0])
    a = a.astype(np.float32)
    if len(per) == 1:
        k = per[0]
        if role == "output" and (task == "classification" or (task == "auto" and k <= 100)):
            return TensorPlan(name, role, "scores")
        if k <= MAX_COLUMNS:
            return TensorPlan(name, role, "columns", columns=k)
        mode, flat = "vector", a
    elif len(per) >= 3 and per[0] <= MAX_CHANNELS:  # [C, H, W, ...]
        mode, flat = "image", a.reshape(n, -1)
    elif len(per) == 2:
        mode, flat = "sequence", a.mean(axis=1)
    else:
        mode, flat = "vector", a.reshape(n, -1)
    positions: tuple[int, ...] = ()
    width = flat.shape[1]
    if flat.shape[1] > MAX_PCA_DIM:
        rng = np.random.default_rng(seed)
        positions = tuple(sorted(rng.choice(flat.shape[1], MAX_PCA_DIM, replace=False).tolist()))
        flat = flat[:, list(positions)]
    mean, comps = _pca(flat, seed)
    return TensorPlan(
        name,
        role,
        mode,
        channels=per[0] if mode == "image" else 0,
        pca_mean=mean,
        pca_components=comps,
        positions=positions,
        width=width,
    )


@dataclass(frozen=True)
class FeaturePlan:
    """The features watched for one model, decided from its reference data."""

    tensors: tuple[TensorPlan, ...]

    @classmethod
    def build(
        cls,
        inputs: Mapping[str, np.ndarray],
        outputs: Mapping[str, np.ndarray],
        *,
        task: str = "auto",
        seed: int = 0,
    ) -> FeaturePlan:
        """The plan for reference ``inputs`` and the model's ``outputs`` on them."""
        plans = []
        for role, tensors in (("input", inputs), ("output", outputs)):
            for name, a in tensors.items():
                arr = np.asarray(a)
                if arr.ndim == 0:
                    continue  # the same for every row: nothing to watch
                p = _plan_tensor(name, role, arr, task=task, seed=seed)
                if p is not None:
                    plans.append(p)
        if not plans:
            raise InvalidInput(
                "none of the model's inputs or outputs is numeric, so there is nothing to "
                "profile for drift",
                field="data",
            )
        return cls(tuple(plans))

    def kinds(self) -> dict[str, str]:
        """Feature name -> kind, in plan order."""
        out: dict[str, str] = {}
        for p in self.tensors:
            out.update(p.names())
        return out

    def input_features(self) -> list[str]:
        """The numeric features of the inputs: what the domain classifier compares (a covariate
        test; the outputs' drift is tested per feature, and a model's outputs on rows it was
        trained on differ from those on new rows without any drift in what it is sent)."""
        out = []
        for p in self.tensors:
            if p.role == "input":
                out += [n for n, k in p.names().items() if k == NUMERIC]
        return out

    def scores_output(self) -> str | None:
        """The classifier output accuracy is measured on (None for other models)."""
        for p in self.tensors:
            if p.role == "output" and p.mode in ("scores", "classes"):
                return p.tensor
        return None

    def extract(
        self, inputs: Mapping[str, np.ndarray], outputs: Mapping[str, np.ndarray]
    ) -> tuple[dict[str, np.ndarray], dict[str, tuple[np.ndarray, int | None]], int]:
        """The features of a batch of rows: numeric, categorical, and the row count.

        A tensor the batch lacks (a failed request has no outputs) gives NaN numeric features
        and no categorical values.
        """
        numeric: dict[str, np.ndarray] = {}
        categorical: dict[str, tuple[np.ndarray, int | None]] = {}
        rows = None
        for p in self.tensors:
            src = inputs if p.role == "input" else outputs
            a = src.get(p.tensor)
            if a is not None:
                a = np.asarray(a)
                if a.ndim == 0:
                    a = a.reshape(1)
                rows = a.shape[0] if rows is None else rows
                p.extract(a, numeric, categorical)
        n = rows or 0
        for name, kind in self.kinds().items():
            if kind == NUMERIC and name not in numeric:
                numeric[name] = np.full(n, np.nan, np.float32)
        return numeric, categorical, n

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"tensors": [p.to_dict() for p in self.tensors]}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> FeaturePlan:
        """Read back ``to_dict()``."""
        return cls(tuple(TensorPlan.from_dict(t) for t in d["tensors"]))
