"""``FitOptions``: how a scaling law is fitted, every value checked when the options are made."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from modelscale.errors import invalid_parameter
from modelscale.laws.forms import get_form

__all__ = ["FitOptions"]

_WHERE = "laws fit"


@dataclass(frozen=True)
class FitOptions:
    """How to fit.

    Attributes:
        form: ``chinchilla`` (L(N, D)), ``power-n``, ``power-d`` or ``power-c`` (L of one variable).
        columns: Role -> column name, e.g. ``"N=params,D=tokens,C=flops,L=loss"`` (None: detect).
        bootstrap: Bootstrap resamples for the confidence intervals (0: none).
        seed: Seed of the bootstrap resampling.
        confidence: Coverage of the percentile intervals.
        group_best: Keep only the lowest-loss run per (N, D), e.g. over a learning-rate sweep.
        drop_highest_loss: Remove this many highest-loss points before fitting (5 in the Epoch
            replication of Chinchilla).
        holdout: Fraction of the largest runs (by compute) to hold out for the extrapolation check.
        delta: Huber threshold on log-loss residuals.
        workers: Worker processes; None picks the available cores when the work is large.
    """

    form: str = "chinchilla"
    columns: str | Mapping[str, str] | None = None
    bootstrap: int = 200
    seed: int = 0
    confidence: float = 0.95
    group_best: bool = True
    drop_highest_loss: int = 0
    holdout: float = 0.1
    delta: float = 1e-3
    workers: int | None = None

    def __post_init__(self) -> None:
        get_form(self.form)
        for name in ("bootstrap", "seed", "drop_highest_loss"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise invalid_parameter(name, "an integer >= 0", value, where=_WHERE)
        c = self.confidence
        if not (isinstance(c, float | int) and 0 < c < 1):
            raise invalid_parameter("confidence", "a number in (0, 1)", c, where=_WHERE)
        h = self.holdout
        if not (isinstance(h, float | int) and 0 <= h < 1):
            raise invalid_parameter("holdout", "a fraction in [0, 1)", h, where=_WHERE)
        d = self.delta
        if not (isinstance(d, float | int) and d > 0 and math.isfinite(d)):
            raise invalid_parameter("delta", "a positive number", d, where=_WHERE)
        w = self.workers
        if w is not None and (isinstance(w, bool) or not isinstance(w, int) or w < 1):
            raise invalid_parameter("workers", "an integer >= 1 or None", w, where=_WHERE)
