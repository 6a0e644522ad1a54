"""Dynamic profile: latency and throughput per batch size x intra-op threads (x symbolic dim values).

Each thread count runs in a fresh worker process by default, so a point's peak RSS is that of one
session, not of everything the profiler loaded before, and ORT thread pools never overlap.
"""

from __future__ import annotations

import gc
import pickle
import queue as queue_mod
import resource
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import psutil

from modelscale.errors import RuntimeFailure
from modelscale.model.artifact import ModelArtifact
from modelscale.model.inputs import InputChoice, make_inputs
from modelscale.profile.stats import median_ci, percentiles
from modelscale.runtime import Engine, EngineOptions

__all__ = [
    "MeasureOptions",
    "SweepJob",
    "SweepPoint",
    "measure_jobs",
    "measure_latency",
    "run_sweep",
]


@dataclass(frozen=True)
class MeasureOptions:
    """When to stop timing one point: CI of the median within ``ci_target`` or ``max_time_s`` spent."""

    warmup_runs: int = 3
    warmup_s: float = 0.2
    min_runs: int = 20
    min_time_s: float = 1.0
    """Time every point at least this long: a median over a longer window rides out short
    disturbances from other processes, which is what makes two profiles agree."""
    max_time_s: float = 10.0
    ci_target: float = 0.05
    confidence: float = 0.95


@dataclass(frozen=True)
class SweepJob:
    """One point to measure."""

    batch: int
    threads: int
    dims: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class SweepPoint:
    """Measured latency and throughput at one batch size, thread count and dim setting."""

    batch: int
    threads: int
    dims: dict[str, int]
    input_shapes: dict[str, list[int]]
    runs: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    min_ms: float
    max_ms: float
    ci_low_ms: float
    ci_high_ms: float
    ci_half_width: float
    """Half-width of the 95% CI of the median, relative to the median."""
    ci_met: bool
    capped: bool
    """True when the time cap stopped measurement before the CI reached its target."""
    items_per_s: float
    peak_rss_bytes: int | None
    """Peak RSS of the worker process during this point (session and arena included)."""
    baseline_rss_bytes: int | None
    """RSS of the worker before the session was created: peak minus baseline is the session's cost."""
    seconds: float
    gflops_per_s: float | None = None
    """Achieved GFLOP/s, from the FLOP count at this point's shapes (filled in by profile_model)."""


def measure_latency(
    runner: Callable[[], object], opts: MeasureOptions
) -> tuple[list[float], bool, float]:
    """Time ``runner`` after warm-up until the median's CI is tight enough or time runs out.

    Returns (latencies in seconds, whether the cap was hit first, seconds spent).
    """
    start = time.perf_counter()
    done = 0
    while done < opts.warmup_runs or time.perf_counter() - start < opts.warmup_s:
        runner()
        done += 1
    lat: list[float] = []
    began = time.perf_counter()
    next_check = opts.min_runs
    min_time = min(opts.min_time_s, opts.max_time_s)
    gc_was_enabled = gc.isenabled()
    gc.disable()  # a collection inside a timed run is noise, not the model's cost
    try:
        while True:
            t0 = time.perf_counter()
            runner()
            t1 = time.perf_counter()
            lat.append(t1 - t0)
            elapsed = t1 - began
            out_of_time = elapsed >= opts.max_time_s
            if (len(lat) >= next_check and elapsed >= min_time) or out_of_time:
                lo, hi = median_ci(lat, opts.confidence)
                med = float(np.median(lat))
                if med > 0 and (hi - lo) / 2 <= opts.ci_target * med:
                    return lat, False, elapsed
                if out_of_time:
                    return lat, True, elapsed
                next_check = len(lat) + max(5, len(lat) // 10)
    finally:
        if gc_was_enabled:
            gc.enable()


def _reset_peak_rss() -> bool:
    """Reset this process's peak-RSS mark (Linux >= 4.0), so the next reading is one point's peak."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _peak_rss_bytes() -> int:
    """Peak RSS of this process's address space.

    VmHWM, not getrusage's ru_maxrss: Linux carries ru_maxrss across fork and exec, so a worker
    started by a large parent would report the parent's size.
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(rss if sys.platform == "darwin" else rss * 1024)


def _point(
    job: SweepJob,
    feeds: Mapping[str, np.ndarray],
    lat: list[float],
    capped: bool,
    seconds: float,
    opts: MeasureOptions,
    baseline: int | None,
    isolated: bool,
) -> SweepPoint:
    ms = [x * 1e3 for x in lat]
    p50, p90, p99 = percentiles(ms, (50, 90, 99))
    lo, hi = median_ci(ms, opts.confidence)
    half = (hi - lo) / 2 / p50 if p50 > 0 else float("inf")
    return SweepPoint(
        batch=job.batch,
        threads=job.threads,
        dims=dict(job.dims),
        input_shapes={k: list(v.shape) for k, v in feeds.items()},
        runs=len(ms),
        p50_ms=p50,
        p90_ms=p90,
        p99_ms=p99,
        mean_ms=float(np.mean(ms)),
        min_ms=float(np.min(ms)),
        max_ms=float(np.max(ms)),
        ci_low_ms=lo,
        ci_high_ms=hi,
        ci_half_width=half,
        ci_met=half <= opts.ci_target,
        capped=capped,
        items_per_s=job.batch * len(lat) / sum(lat),
        peak_rss_bytes=_peak_rss_bytes() if isolated else None,
        baseline_rss_bytes=baseline,
        seconds=seconds,
    )


def measure_jobs(
    model_path: str,
    engine_options: EngineOptions,
    jobs: Sequence[SweepJob],
    choice: InputChoice,
    signature: Any,
    opts: MeasureOptions,
    emit: Callable[[SweepPoint], None],
    isolated: bool,
) -> None:
    baseline = psutil.Process().memory_info().rss if isolated else None
    engine = Engine(model_path, engine_options)
    for job in jobs:
        feeds = make_inputs(signature, batch=job.batch, choice=_with_dims(choice, job.dims))
        # One checked run first: a model that rejects these inputs fails with one clear line (and
        # advice), not with ONNX Runtime's raw exception from inside the timing loop.
        engine.run(feeds)
        if isolated:
            _reset_peak_rss()  # the session stays; the peak of earlier, smaller points goes
        lat, capped, seconds = measure_latency(engine.bind(feeds), opts)
        emit(_point(job, feeds, lat, capped, seconds, opts, baseline, isolated))


def _with_dims(choice: InputChoice, dims: Mapping[str, int]) -> InputChoice:
    if not dims:
        return choice
    return InputChoice(
        dims={**choice.dims, **dims},
        shapes=choice.shapes,
        int_ranges=choice.int_ranges,
        data=choice.data,
        seed=choice.seed,
    )


def run_sweep(
    artifact: ModelArtifact,
    jobs: Sequence[SweepJob],
    *,
    choice: InputChoice,
    engine_options: EngineOptions,
    measure: MeasureOptions,
    isolate: bool = True,
    on_point: Callable[[SweepPoint], None] | None = None,
) -> list[SweepPoint]:
    """Measure every job; jobs sharing a thread count share one session (and one worker process)."""
    by_threads: dict[int, list[SweepJob]] = {}
    for job in jobs:
        by_threads.setdefault(job.threads, []).append(job)
    points: list[SweepPoint] = []

    def emit(p: SweepPoint) -> None:
        points.append(p)
        if on_point:
            on_point(p)

    for threads, group in by_threads.items():
        group = sorted(group, key=lambda j: (tuple(sorted(j.dims.items())), j.batch))
        opts = EngineOptions(
            intra_op_threads=threads,
            inter_op_threads=engine_options.inter_op_threads,
            providers=engine_options.providers,
            graph_optimization=engine_options.graph_optimization,
            allow_spinning=engine_options.allow_spinning,
            session_config=engine_options.session_config,
        )
        args = (str(artifact.path), opts, group, choice, artifact.signature, measure)
        if not isolate:
            measure_jobs(*args, emit=emit, isolated=False)
            continue
        _run_isolated(args, len(group), measure, emit)
    return points


def _run_isolated(
    args: tuple[Any, ...], n_jobs: int, measure: MeasureOptions, emit: Callable[[SweepPoint], None]
) -> None:
    # A fresh interpreter (not multiprocessing's spawn, which re-imports the caller's __main__ and
    # breaks scripts without a main guard, notebooks and stdin) running modelscale.profile._worker.
    proc = subprocess.Popen(
        [sys.executable, "-m", "modelscale.profile._worker"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdin is not None and proc.stdout is not None  # set by PIPE above
    messages: queue_mod.Queue[tuple[str, Any]] = queue_mod.Queue()

    def read() -> None:
        try:
            while True:
                messages.put(pickle.load(proc.stdout))  # type: ignore[arg-type]
        except (EOFError, pickle.UnpicklingError, OSError):
            messages.put(("eof", None))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    pickle.dump(args, proc.stdin)
    proc.stdin.close()
    # A point can take its cap plus warm-up; loading a big model can take minutes.
    patience = measure.max_time_s * 3 + 300
    received = 0
    try:
        while True:
            try:
                kind, payload = messages.get(timeout=patience)
            except queue_mod.Empty:
                raise RuntimeFailure(
                    f"The profiling worker gave no result for {patience:.0f} s; stopped it."
                ) from None
            if kind == "point":
                received += 1
                emit(payload)
            elif kind == "error":
                raise RuntimeFailure(f"Profiling failed: {payload}")
            else:
                break
    finally:
        if proc.poll() is None:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        stderr = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
        if proc.stderr:
            proc.stderr.close()
        proc.stdout.close()
    if received != n_jobs:
        tail = stderr.strip().splitlines()[-1:] or [""]
        raise RuntimeFailure(
            f"The profiling worker exited (code {proc.returncode}) after {received} of {n_jobs} "
            f"points. {tail[0]}".strip()
        )
