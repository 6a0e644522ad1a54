"""Judge one candidate: evaluate it on the eval set, bootstrap its change, time it."""

from __future__ import annotations

import pathlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from modelscale.compress.evaluate import predict
from modelscale.compress.metrics import Metric, bootstrap_change
from modelscale.model.signature import Signature
from modelscale.profile import MeasureOptions
from modelscale.runtime import Engine, EngineOptions

__all__ = ["Judge", "Tolerance", "first_line"]


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message, or its type when it has none."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


@dataclass(frozen=True)
class Tolerance:
    """The largest acceptable drop: absolute, or relative to the original's metric."""

    max_drop: float | None
    max_rel_drop: float | None

    def bound(self, original: float) -> float:
        """The absolute drop allowed, given the original's metric."""
        if self.max_rel_drop is not None:
            return self.max_rel_drop * abs(original)
        return self.max_drop if self.max_drop is not None else 0.0

    def to_dict(self, original: float) -> dict[str, float]:
        """JSON-ready form with the absolute bound."""
        out = {"max_rel_drop": self.max_rel_drop} if self.max_rel_drop is not None else {}
        if self.max_drop is not None:
            out["max_drop"] = self.max_drop
        return {**out, "bound": self.bound(original)}


@dataclass
class Judge:
    """Everything needed to judge a candidate the same way as the original."""

    signature: Signature
    output: str
    metric: Metric
    inputs: Mapping[str, np.ndarray]
    target: np.ndarray | None
    """Labels, or None to compare against the original's outputs (fidelity)."""
    tolerance: Tolerance
    batches: tuple[int, ...]
    engine_options: EngineOptions
    measure: MeasureOptions
    resamples: int
    seed: int
    chunk: int = 64
    reference: np.ndarray | None = None
    original_metric: float = float("nan")

    def outputs(self, path: pathlib.Path) -> np.ndarray:
        """The evaluated output of the model at ``path`` over the eval inputs."""
        engine = Engine(path, self.engine_options)
        return predict(engine, self.inputs, self.output, signature=self.signature, chunk=self.chunk)

    def set_original(self, outputs: np.ndarray) -> None:
        """Remember the original's outputs: the reference for fidelity and for paired changes."""
        self.reference = outputs
        self.original_metric = self.metric.value(outputs, self._target())

    def _target(self) -> np.ndarray:
        if self.target is not None:
            return self.target
        assert self.reference is not None  # set_original runs before any candidate
        return self.reference

    def drop(self, change: float) -> float:
        """How much worse (positive) a change is, by the metric's direction."""
        return -change if self.metric.higher_is_better else change

    def evaluate(self, path: pathlib.Path, *, original: bool = False) -> dict[str, Any]:
        """Metric, change with its CI, drop and pass/fail of the model at ``path``."""
        outputs = self.outputs(path)
        if original:
            self.set_original(outputs)
            # The original is the reference: no change, by definition rather than by rounding.
            return {
                "metric": self.original_metric,
                "change": 0.0,
                "ci_low": 0.0,
                "ci_high": 0.0,
                "drop": 0.0,
                "passed": True,
            }
        assert self.reference is not None
        target = self._target()
        change, lo, hi = bootstrap_change(
            self.metric,
            (self.reference, target),
            (outputs, target),
            resamples=self.resamples,
            seed=self.seed,
        )
        drop = self.drop(change)
        bound = self.tolerance.bound(self.original_metric)
        return {
            "metric": self.original_metric + change,
            "change": change,
            "ci_low": lo,
            "ci_high": hi,
            "drop": drop,
            "passed": bool(np.isfinite(drop) and drop <= bound),
        }
