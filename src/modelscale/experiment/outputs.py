"""Do two versions' answers to the same request agree? Per row: equal classes; equal arg-max
of class scores (rows that are probabilities, or up to 32 columns of logits); a value within a
relative tolerance; else (embeddings, sequences) a cosine similarity at least a threshold."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass

import numpy as np

__all__ = ["OutputAgreement", "compare_outputs"]

_LOGITS = 32
"""Columns of a float output read as class logits (more: as an embedding, unless the rows are
probabilities)."""


@dataclass(frozen=True)
class OutputAgreement:
    """How the candidate's outputs compare with the reference's for one request."""

    rows: int
    agree: int
    """Rows whose every compared output agrees."""
    max_abs_error: float
    """The largest absolute difference of any float output element (0 for classes)."""
    compared: tuple[str, ...]

    @property
    def share(self) -> float:
        """The share of rows that agree (0 when nothing could be compared)."""
        return self.agree / self.rows if self.rows else 0.0


def _probabilities(x: np.ndarray) -> bool:
    return bool((x >= 0).all() and np.allclose(x.sum(axis=1), 1.0, atol=1e-3))


def _row_agree(a: np.ndarray, b: np.ndarray, cosine: float) -> np.ndarray:
    """Per row of axis 0: whether ``b`` agrees with ``a``."""
    if a.ndim == 0:
        a, b = a.reshape(1), b.reshape(1)
    rows = a.shape[0]
    if a.dtype.kind in "iub" or a.dtype.kind in "OUS":
        return np.all((a == b).reshape(rows, -1), axis=1)
    fa = a.reshape(rows, -1).astype(np.float64)
    fb = b.reshape(rows, -1).astype(np.float64)
    if a.ndim == 2 and a.shape[1] >= 2 and (a.shape[1] <= _LOGITS or _probabilities(fa)):
        return np.argmax(fa, axis=1) == np.argmax(fb, axis=1)
    if fa.shape[1] == 1:  # a value per row: agree within a relative tolerance
        return np.isclose(fa[:, 0], fb[:, 0], rtol=1 - cosine if cosine < 1 else 1e-6, atol=1e-6)
    dot = np.sum(fa * fb, axis=1)
    norms = np.linalg.norm(fa, axis=1) * np.linalg.norm(fb, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        sim = np.where(norms > 0, dot / norms, np.where(np.all(fa == fb, axis=1), 1.0, 0.0))
    return sim >= cosine


def compare_outputs(
    reference: Mapping[str, object],
    candidate: Mapping[str, object],
    *,
    cosine: float = 0.99,
    names: Collection[str] | None = None,
) -> OutputAgreement:
    """Compare the reference's outputs (those in ``names``, default all) row by row.

    An output missing from the candidate, or of another shape, counts every row as disagreeing.
    """
    if names is not None:
        reference = {k: v for k, v in reference.items() if k in names}
    agree: np.ndarray | None = None
    max_abs = 0.0
    compared = []
    rows = 0
    for name, ref in reference.items():
        a = np.asarray(ref)
        rows = max(rows, int(a.shape[0]) if a.ndim else 1)
        got = candidate.get(name)
        b = None if got is None else np.asarray(got)
        if b is None or b.shape != a.shape:
            ok = np.zeros(int(a.shape[0]) if a.ndim else 1, dtype=bool)
        else:
            ok = _row_agree(a, b, cosine)
            if a.dtype.kind == "f" and a.size:
                diff = np.abs(a.astype(np.float64) - b.astype(np.float64))
                max_abs = max(max_abs, float(np.nanmax(diff)) if np.isfinite(diff).any() else 0.0)
        compared.append(name)
        agree = ok if agree is None or agree.shape != ok.shape else (agree & ok)
    if agree is None:
        return OutputAgreement(rows=0, agree=0, max_abs_error=0.0, compared=())
    return OutputAgreement(
        rows=int(agree.shape[0]),
        agree=int(agree.sum()),
        max_abs_error=max_abs,
        compared=tuple(compared),
    )
