"""``profile_model``: the static and dynamic profile of a model, as one stored result.

result = profile_model("model.onnx", options=ProfileOptions(batches=(1, 8), threads=(1, 2)))
"""

from __future__ import annotations

import dataclasses
import itertools
import pathlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from modelscale.errors import InvalidInput, invalid_parameter
from modelscale.machine import machine_info
from modelscale.model.artifact import ModelArtifact
from modelscale.model.inputs import (
    InputChoice,
    batch_dim_names,
    check_choice,
    default_batches,
    load_npz,
    make_inputs,
)
from modelscale.profile.flops import FlopCount, count_flops
from modelscale.profile.static import StaticProfile, static_profile
from modelscale.profile.sweep import MeasureOptions, SweepJob, SweepPoint, run_sweep
from modelscale.progress import OnProgress, report
from modelscale.result import ModelVersionInfo, Result, RunLinks
from modelscale.runtime import Engine, EngineOptions, GraphOptimization

__all__ = ["ProfileOptions", "ProfileResult", "profile_model"]

_WHERE = "profile"


@dataclass(frozen=True)
class ProfileResult(Result):
    """What a model costs to run on this machine: its static profile, FLOPs, and measured sweep."""

    kind: ClassVar[str] = "profile"

    model: dict[str, Any]
    static: StaticProfile
    flops: tuple[FlopCount, ...]
    points: tuple[SweepPoint, ...]
    session_rss_bytes: dict[str, int]
    """Per thread count: the worker's peak RSS minus its RSS before the session existed."""
    engine: dict[str, Any]
    notes: tuple[str, ...]
    summary: str
    params: dict[str, Any]

    def links(self) -> RunLinks:
        """Filed under the profiled model's version, which is registered first."""
        return RunLinks(self.model["sha256"], models=(ModelVersionInfo.of(self.model),))

    def best(self) -> SweepPoint:
        """The point with the highest throughput."""
        return max(self.points, key=lambda p: p.items_per_s)

    def point(self, *, batch: int, threads: int, **dims: int) -> SweepPoint:
        """The point measured at ``batch`` x ``threads`` (and ``dims``)."""
        for p in self.points:
            if (
                p.batch == batch
                and p.threads == threads
                and all(p.dims.get(k) == v for k, v in dims.items())
            ):
                return p
        raise KeyError(f"no point at batch={batch} threads={threads} {dims}")


def _int_list(name: str, values: Sequence[int] | None) -> tuple[int, ...] | None:
    if values is None:
        return None
    out = tuple(values)
    if not out or any(
        not isinstance(v, int | np.integer) or isinstance(v, bool) or v < 1 for v in out
    ):
        raise invalid_parameter(name, "a non-empty list of integers >= 1", list(out), where=_WHERE)
    return tuple(sorted(dict.fromkeys(int(v) for v in out)))


@dataclass(frozen=True)
class ProfileOptions:
    """What to measure and how; every value is checked when the options are made.

    Attributes:
        batches: Batch sizes to sweep (default 1, 2, 4, 8, or the model's fixed batch).
        threads: Intra-op thread counts to sweep (default 1 and all usable cores).
        dims: Values of symbolic dims (e.g. ``{"seq": [32, 128]}``); several values are swept.
        shapes: Whole shapes per input, for unnamed dynamic dims.
        int_ranges: Inclusive value ranges for integer inputs (token ids).
        batch_axes: The batch axis of inputs whose batch axis is not axis 0 (``{"state": 1}``),
            or None for an input that is not batched. 0-d inputs are never batched.
        inputs: Real inputs: an .npz path or a mapping of input name to array.
        provider: ONNX Runtime execution provider.
        graph_optimization: ORT graph optimisation level.
        allow_spinning: Let ORT's idle threads spin (its default, the lowest latency alone).
            ``False`` measures the model as ``serve``'s replicas run it: spinning threads would
            take cores from the other replicas and the front, so replicas turn it off, and with
            2+ threads each parallel section then pays for waking its threads.
        measure: When to stop timing each point.
        isolate: Measure each thread count in a fresh process (true peak RSS, no leftover state).
    """

    batches: Sequence[int] | None = None
    threads: Sequence[int] | None = None
    dims: Mapping[str, Sequence[int]] = field(default_factory=dict)
    shapes: Mapping[str, Sequence[int]] = field(default_factory=dict)
    int_ranges: Mapping[str, tuple[int, int]] = field(default_factory=dict)
    batch_axes: Mapping[str, int | None] = field(default_factory=dict)
    inputs: str | pathlib.Path | Mapping[str, np.ndarray] | None = None
    provider: str = "CPUExecutionProvider"
    graph_optimization: GraphOptimization = "all"
    allow_spinning: bool = True
    measure: MeasureOptions = field(default_factory=MeasureOptions)
    isolate: bool = True

    def __post_init__(self) -> None:
        _int_list("batches", self.batches)
        _int_list("threads", self.threads)
        for values in self.dims.values():
            _int_list("dims", values)
        if not (self.measure.max_time_s > 0 and np.isfinite(self.measure.max_time_s)):
            raise invalid_parameter(
                "max_time_s", "a number of seconds > 0", self.measure.max_time_s, where=_WHERE
            )


def _dim_grid(dims: Mapping[str, Sequence[int]]) -> list[dict[str, int]]:
    names = list(dims)
    values = [_int_list("dims", dims[name]) or () for name in names]
    return [dict(zip(names, combo, strict=True)) for combo in itertools.product(*values)] or [{}]


def _notes(
    points: Sequence[SweepPoint], flops: Sequence[FlopCount], threads: Sequence[int]
) -> list[str]:
    notes = []
    cores = machine_info().usable_cores
    if max(threads) > cores:
        notes.append(
            f"{max(threads)} threads exceed the {cores} usable cores: expect oversubscription."
        )
    for p in points:
        if not p.ci_met:
            dims = "".join(f" {k}={v}" for k, v in p.dims.items())
            notes.append(
                f"batch {p.batch} x {p.threads} threads{dims}: the time cap stopped timing at "
                f"{p.runs} runs with the median's 95% CI at +-{p.ci_half_width:.1%}."
            )
    uncounted = sorted({op for f in flops for op in f.uncounted_ops})
    if uncounted:
        notes.append(f"FLOPs exclude ops without a formula: {', '.join(uncounted)}.")
    return notes


def profile_model(
    model: ModelArtifact | str | pathlib.Path,
    *,
    options: ProfileOptions | None = None,
    on_progress: OnProgress | None = None,
) -> ProfileResult:
    """Profile ``model``: static facts, FLOPs, and latency/throughput per batch x threads (x dims).

    Args:
        model: An ONNX file or a loaded ModelArtifact.
        options: What to sweep and how to time it (default: ``ProfileOptions()``).
        on_progress: Called as the profile moves on: a stage's start ('static profile and
            FLOPs', 'latency sweep') and then each measured point (its ``detail`` is the
            ``SweepPoint``).
    """
    o = options or ProfileOptions()
    artifact = model if isinstance(model, ModelArtifact) else ModelArtifact.load(model)
    artifact = artifact.with_batch_axes(o.batch_axes)
    sig = artifact.signature
    measure = o.measure
    batch_list = _int_list("batches", o.batches) or default_batches(sig)
    cores = machine_info().usable_cores
    thread_list = _int_list("threads", o.threads) or tuple(sorted({1, cores}))
    dims = dict(o.dims)
    grid = _dim_grid(dims)
    inputs = o.inputs
    data = load_npz(inputs, sig) if isinstance(inputs, str | pathlib.Path) else inputs
    if data is not None:
        data = {k: np.asarray(v) for k, v in data.items()}
    choice = InputChoice(
        dims={k: v[0] for k, v in dims.items() if v},
        shapes={k: tuple(int(d) for d in v) for k, v in o.shapes.items()},
        int_ranges=dict(o.int_ranges),
        data=data,
    )
    check_choice(sig, choice)
    if data is not None and any(d in batch_dim_names(sig) for d in dims):
        raise InvalidInput(
            "'dims' cannot set the batch axis; give batch sizes in 'batches'.", field="dims"
        )

    engine_options = EngineOptions(
        providers=(o.provider,),
        graph_optimization=o.graph_optimization,
        allow_spinning=o.allow_spinning,
    )
    # Load once here: a model ORT cannot load fails now with a clear error, not inside a worker.
    Engine(artifact, engine_options)
    jobs = [
        SweepJob(batch=b, threads=t, dims=g) for t in thread_list for g in grid for b in batch_list
    ]
    # Build every feed once before measuring, so bad dims or shapes fail before any timing starts.
    flops: list[FlopCount] = []
    report(on_progress, "static profile and FLOPs", 0, len(grid))
    static = static_profile(artifact)
    for g in grid:
        for b in batch_list:
            make_inputs(sig, batch=b, choice=dataclasses.replace(choice, dims={**choice.dims, **g}))
        b0 = batch_list[0]
        feeds = make_inputs(
            sig, batch=b0, choice=dataclasses.replace(choice, dims={**choice.dims, **g})
        )
        flops.append(count_flops(artifact, feeds))
    report(on_progress, "latency sweep", 0, len(jobs))
    measured: list[SweepPoint] = []

    def on_point(p: SweepPoint) -> None:
        measured.append(p)
        stage = f"batch {p.batch} x {p.threads} threads"
        report(on_progress, stage, len(measured), len(jobs), p)

    points = run_sweep(
        artifact,
        jobs,
        choice=choice,
        engine_options=engine_options,
        measure=measure,
        isolate=o.isolate,
        on_point=on_point,
    )
    per_item = {
        tuple(sorted(g.items())): f.flops / batch_list[0] for g, f in zip(grid, flops, strict=True)
    }
    points = [
        dataclasses.replace(
            p, gflops_per_s=per_item[tuple(sorted(p.dims.items()))] * p.items_per_s / 1e9
        )
        for p in points
    ]
    session_rss = {}
    for t in thread_list:
        group = [p for p in points if p.threads == t and p.peak_rss_bytes is not None]
        if group and group[0].baseline_rss_bytes is not None:
            session_rss[str(t)] = (
                max(p.peak_rss_bytes or 0 for p in group) - group[0].baseline_rss_bytes
            )
    best = max(points, key=lambda p: p.items_per_s)
    at_dims = "".join(f", {k}={v}" for k, v in best.dims.items())
    size = artifact.size_bytes / 2**20
    summary = (
        f"{artifact.name}: {static.parameters:,} params, "
        + (f"{size:.1f} MiB" if size >= 1 else f"{artifact.size_bytes / 2**10:.1f} KiB")
        + f"; best {best.items_per_s:,.0f} items/s at batch {best.batch} x {best.threads} "
        f"threads{at_dims} (p50 {best.p50_ms:.3f} ms, p99 {best.p99_ms:.3f} ms)"
        + ("" if o.allow_spinning else "; ORT thread spinning off, as served")
    )
    return ProfileResult(
        model=artifact.to_dict(),
        static=static,
        flops=tuple(flops),
        points=tuple(points),
        session_rss_bytes=session_rss,
        engine=engine_options.to_dict(),
        notes=tuple(_notes(points, flops, thread_list)),
        summary=summary,
        params={
            "batches": list(batch_list),
            "threads": list(thread_list),
            "dims": {k: list(v) for k, v in dims.items()},
            "shapes": {k: list(v) for k, v in choice.shapes.items()},
            "int_ranges": {k: list(v) for k, v in choice.int_ranges.items()},
            "batch_axes": sig.batch_axes,
            "inputs": str(inputs)
            if isinstance(inputs, str | pathlib.Path)
            else ("arrays" if inputs else None),
            "provider": o.provider,
            "graph_optimization": o.graph_optimization,
            "allow_spinning": o.allow_spinning,
            "measure": dataclasses.asdict(measure),
            "isolate": o.isolate,
        },
    )
