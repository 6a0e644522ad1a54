"""What a compression search returns: one ``Trial`` per candidate and the ``CompressResult``."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from modelscale.compress.evaluate import Latency
from modelscale.result import ChildRun, ModelVersionInfo, Result, RunLinks

__all__ = ["CompressResult", "Trial", "mark_pareto", "pareto_front"]


@dataclass(frozen=True)
class Trial(Result):
    """One candidate, built, evaluated and timed: stored as one ``compress`` run.

    Attributes:
        name: Candidate name, e.g. ``int8-dynamic-pc``; ``original`` is the model as given.
        status: ``ok``; ``failed`` when it could not be built or run, or ``skipped`` when it was
            not tried (an opset the method needs and the model cannot be upgraded to) or would
            change nothing (``no-op: nothing to quantize``); ``error`` says why in one line.
        metric: The metric on the eval set.
        change: ``metric - original metric``; ``ci_low``/``ci_high`` bound it (paired bootstrap).
        drop: How much worse than the original (positive is worse), in the tolerance's units.
        passed: Whether ``drop`` is within the tolerance.
        latency: Per batch size (1 and the search's batch).
        slower: Slower than the original at the search's batch.
        excluded: Nodes kept in float by the accuracy-guarded fallback.
    """

    kind: ClassVar[str] = "compress"

    name: str
    method: str
    description: str
    status: str
    error: str | None
    size_bytes: int | None
    sha256: str | None
    metric: float | None
    change: float | None
    ci_low: float | None
    ci_high: float | None
    drop: float | None
    passed: bool
    latency: dict[int, Latency]
    batch: int
    slower: bool
    pareto: bool
    excluded: tuple[str, ...]
    build_seconds: float
    eval_seconds: float
    summary: str
    params: dict[str, Any]

    @property
    def ok(self) -> bool:
        """Built, ran and was measured."""
        return self.status == "ok"

    @property
    def items_per_s(self) -> float | None:
        """Throughput at the search's batch size."""
        lat = self.latency.get(self.batch)
        return lat.items_per_s if lat else None

    def p50_ms(self, batch: int) -> float | None:
        """Median latency at ``batch``, if measured."""
        lat = self.latency.get(batch)
        return lat.p50_ms if lat else None


@dataclass(frozen=True)
class CompressResult(Result):
    """A whole search: every trial, the Pareto front and the chosen model.

    Attributes:
        model: The original model (name, path, sha256, size).
        metric: The metric's name; ``metric_task`` says whether it uses labels or fidelity.
        tolerance: ``{"max_drop": x}`` or ``{"max_rel_drop": x}`` and the absolute bound it gives.
        trials: Every trial, the original first.
        chosen: Name of the chosen trial; ``chosen_path`` where it was written (None without out).
        reason: Why that one, in plain words.
    """

    kind: ClassVar[str] = "compress"

    model: dict[str, Any]
    metric: str
    metric_task: str
    output: str
    tolerance: dict[str, float]
    eval_rows: int
    eval_source: str
    calibration_rows: int | None
    calibration_source: str | None
    trials: tuple[Trial, ...]
    pareto: tuple[str, ...]
    chosen: str
    chosen_path: str | None
    chosen_sha256: str
    chosen_is_original: bool
    reason: str
    notes: tuple[str, ...]
    seconds: float
    summary: str
    params: dict[str, Any]

    def trial(self, name: str) -> Trial:
        """The trial called ``name``."""
        for t in self.trials:
            if t.name == name:
                return t
        raise KeyError(name)

    @property
    def chosen_trial(self) -> Trial:
        """The chosen trial."""
        return self.trial(self.chosen)

    @property
    def original(self) -> Trial:
        """The original model's trial."""
        return self.trials[0]

    def links(self) -> RunLinks:
        """Every run under the original model's version: the search, each trial a child run; the
        chosen model, unless it is the original, a new version whose parent is the original."""
        model = self.model
        trials = tuple(
            ChildRun(t.name, t, status=t.status, note=t.description) for t in self.trials
        )
        derived: tuple[ModelVersionInfo, ...] = ()
        if not self.chosen_is_original:
            chosen = self.chosen_trial
            derived = (
                ModelVersionInfo(
                    self.chosen_sha256,
                    name=f"{model['name']}.{chosen.name}",
                    path=self.chosen_path,
                    size_bytes=chosen.size_bytes,
                    parent_sha256=model["sha256"],
                    meta={"candidate": chosen.name},
                ),
            )
        return RunLinks(
            model["sha256"], models=(ModelVersionInfo.of(model),), children=trials, derived=derived
        )


def _dominates(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    return all(x <= y for x, y in zip(a, b, strict=True)) and a != b


def pareto_front(trials: Sequence[Trial]) -> list[Trial]:
    """Trials no other trial beats on size, throughput and metric drop all at once."""
    scored = [
        (t, (float(t.size_bytes or 0), -(t.items_per_s or 0.0), float(t.drop or 0.0)))
        for t in trials
        if t.ok and t.drop is not None
    ]
    return [t for t, s in scored if not any(_dominates(o, s) for _, o in scored)]


def mark_pareto(trials: Sequence[Trial]) -> tuple[Trial, ...]:
    """The trials with ``pareto`` set for those on the front."""
    front = {id(t) for t in pareto_front(trials)}
    return tuple(dataclasses.replace(t, pareto=id(t) in front) for t in trials)
