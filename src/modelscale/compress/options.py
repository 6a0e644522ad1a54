"""``CompressOptions``: how a compress search runs, every value checked when the options are made."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from modelscale.compress.candidates import default_specs
from modelscale.compress.data import MIN_CALIBRATION_ROWS, EvalSet
from modelscale.compress.metrics import Metric, MetricFn
from modelscale.compress.prune import PruneSpec
from modelscale.errors import InvalidInput, invalid_parameter
from modelscale.profile import MeasureOptions

__all__ = ["CompressOptions"]

_WHERE = "compress"


def _unit_interval(name: str, value: float | None) -> None:
    if value is None:
        return
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or not 0 <= value <= 1
    ):
        raise invalid_parameter(name, "a number in [0, 1]", value, where=_WHERE)


def _integer(name: str, value: int | None, minimum: int) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise invalid_parameter(name, f"an integer >= {minimum}", value, where=_WHERE)


@dataclass(frozen=True)
class CompressOptions:
    """How to search.

    Attributes:
        metric: A name in ``METRICS`` or a callable ``fn(outputs, target)`` giving a number or
            one score per example. Default: accuracy with integer labels, MAE with other labels,
            and without labels fidelity to the original (agreement for class scores, else cosine).
        higher_is_better: The direction of a callable metric.
        max_drop: The largest acceptable drop of the metric, in [0, 1] (default 0.01).
        max_rel_drop: Or the largest drop relative to the original's metric, in [0, 1].
        calibration: Inputs for static quantization, disjoint from the eval set. Default: half of
            the eval rows (the other half is then the eval set).
        batch: The batch size that throughput is measured and compared at (and batch 1).
        out: Folder to write the chosen model and ``compress_summary.json`` into.
        output: The model output to evaluate (default: the first).
        batch_axes: The batch axis of inputs whose batch axis is not axis 0 (``{"state": 1}``),
            or None for an input that is the same for every row. 0-d inputs never have one.
        labels_key: The key of the labels in the eval set.
        threads: Intra-op threads for every measurement (default: all usable cores).
        candidates: Names of candidates to try (default: all of ``default_specs``).
        max_calibration_rows: Calibrate on at most this many rows (memory grows with them).
        max_fallback_steps: Nodes the accuracy-guarded fallback may keep in float (0: off).
        reduce_range: 7-bit weights; default: on only when the CPU lacks VNNI.
        resamples: Paired bootstrap resamples for the CI of each change.
        seed: Seed for the split, the bootstrap and nothing else.
        measure: When to stop timing each point (default: at most 3 s per point).
        keep_candidates: Keep every candidate's file in this folder instead of a temporary one.
        prune: A PyTorch module (the one the model was exported from) to prune at the given
            ratios; each ratio becomes a candidate, judged like the others.
    """

    metric: str | MetricFn | Metric | None = None
    higher_is_better: bool = True
    max_drop: float | None = None
    max_rel_drop: float | None = None
    calibration: str | os.PathLike[str] | Mapping[str, np.ndarray] | EvalSet | None = None
    batch: int = 8
    out: str | os.PathLike[str] | None = None
    output: str | None = None
    batch_axes: Mapping[str, int | None] = field(default_factory=dict)
    labels_key: str = "labels"
    threads: int | None = None
    candidates: Sequence[str] | None = None
    max_calibration_rows: int = 128
    max_fallback_steps: int = 8
    reduce_range: bool | None = None
    resamples: int = 1000
    seed: int = 0
    measure: MeasureOptions | None = None
    keep_candidates: str | os.PathLike[str] | None = None
    prune: PruneSpec | None = None

    def __post_init__(self) -> None:
        _unit_interval("max_drop", self.max_drop)
        _unit_interval("max_rel_drop", self.max_rel_drop)
        if self.max_drop is not None and self.max_rel_drop is not None:
            raise InvalidInput(
                "Give either 'max_drop' or 'max_rel_drop', not both.", field="max_drop"
            )
        _integer("batch", self.batch, 1)
        _integer("threads", self.threads, 1)
        _integer("max_calibration_rows", self.max_calibration_rows, MIN_CALIBRATION_ROWS)
        _integer("max_fallback_steps", self.max_fallback_steps, 0)
        _integer("resamples", self.resamples, 0)
        if self.measure is not None and not (
            self.measure.max_time_s > 0 and math.isfinite(self.measure.max_time_s)
        ):
            raise invalid_parameter(
                "max_time_s", "a number of seconds > 0", self.measure.max_time_s, where=_WHERE
            )
        if self.candidates is not None:
            known = [s.name for s in default_specs(reduce_range=False)]
            names = self.candidates
            if isinstance(names, str) or any(n not in known for n in names):
                raise invalid_parameter(
                    "candidates",
                    f"a list of names from {', '.join(known)}",
                    list(names),
                    where=_WHERE,
                )
