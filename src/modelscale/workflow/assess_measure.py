"""What an assessment measures: latency in timed blocks, per-row hits on an eval set, and
load-test windows of a server saturated with requests.

Each measurement takes one or two models: the one assessed and, when its file is still there, the
baseline's model, measured side by side in alternating blocks (or windows), so that whatever
else the machine does meanwhile falls on both alike. ``OthersMeter`` measures the CPU other
processes took while a measurement ran: a slowdown measured while they were busy is no evidence
against the model.
"""

from __future__ import annotations

import contextlib
import dataclasses
import pathlib
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from modelscale.compress import EvalSet, predict
from modelscale.config import DeploymentSpec
from modelscale.errors import InvalidInput
from modelscale.loadgen import LoadOptions, run_load
from modelscale.model import InputChoice, ModelArtifact, make_inputs
from modelscale.profile import MeasureOptions, measure_latency, percentiles
from modelscale.runtime import Engine, EngineOptions
from modelscale.serve import start_server
from modelscale.workflow.metering import machine_busy_s

__all__ = [
    "OthersMeter",
    "correct_rows",
    "load_windows",
    "reference_task",
    "serving",
    "time_blocks",
]

_MIN_RATE = 1e-3
"""A window with no answer at all counts as this rate (req/s), so its ratio is still defined."""


def reference_task() -> Callable[[], object]:
    """A fixed CPU-bound task (small float32 matrix products in NumPy, one thread) whose time
    tracks how fast the machine runs now, whatever the model does."""
    x = np.random.default_rng(0).standard_normal((48, 48)).astype(np.float32)

    def run() -> object:
        return [x @ x for _ in range(4)]

    return run


def time_blocks(
    models: Mapping[str, ModelArtifact],
    *,
    batch: int,
    threads: int,
    data: Mapping[str, np.ndarray] | None,
    blocks: int,
    block_s: float,
    on_block: Callable[[int], None] | None = None,
) -> dict[str, dict[str, Any]]:
    """Latency of each model at ``batch`` x ``threads``, timed in ``blocks`` alternating blocks.

    Every block times each model for ``block_s`` seconds (every other block in reverse order),
    then ``reference_task`` for half that, and keeps each one's median; p50 and p99 pool every
    run.

    Returns:
        Per model: ``batch``, ``threads``, ``block_ms`` (the block medians), ``reference_ms``
        (the reference task's block medians), ``p50_ms``, ``p99_ms`` and ``runs``.
    """
    engines = {
        name: Engine(a, EngineOptions(intra_op_threads=threads)) for name, a in models.items()
    }
    choice = InputChoice(data=dict(data)) if data is not None else InputChoice()
    feeds = {
        name: make_inputs(a.signature, batch=batch, choice=choice) for name, a in models.items()
    }
    runners = {name: engines[name].bind(feeds[name]) for name in models}
    opts = MeasureOptions(
        warmup_runs=3, warmup_s=0.05, min_runs=5, min_time_s=block_s, max_time_s=block_s,
        ci_target=0.0,  # time the whole block: its length, not a CI, ends it
    )  # fmt: skip
    reference = reference_task()
    ref_opts = dataclasses.replace(opts, min_time_s=block_s / 2, max_time_s=block_s / 2)
    ref_ms: list[float] = []
    medians: dict[str, list[float]] = {name: [] for name in models}
    pooled: dict[str, list[float]] = {name: [] for name in models}
    order = list(models)
    for k in range(blocks):
        for name in order if k % 2 == 0 else order[::-1]:
            lat, _, _ = measure_latency(runners[name], opts)
            ms = np.asarray(lat) * 1e3
            medians[name].append(float(np.median(ms)))
            pooled[name].extend(ms.tolist())
        lat, _, _ = measure_latency(reference, ref_opts)
        ref_ms.append(float(np.median(lat)) * 1e3)
        if on_block is not None:
            on_block(k + 1)
    out = {}
    for name in models:
        p50, p99 = percentiles(pooled[name], (50, 99))
        out[name] = {
            "batch": batch,
            "threads": threads,
            "block_ms": medians[name],
            "reference_ms": ref_ms,
            "p50_ms": p50,
            "p99_ms": p99,
            "runs": len(pooled[name]),
        }
    return out


def correct_rows(artifact: ModelArtifact, eval_set: EvalSet, output: str) -> np.ndarray:
    """Per eval row, whether ``artifact``'s top class in ``output`` is the row's label."""
    if eval_set.labels is None:
        raise InvalidInput(
            f"The eval set {eval_set.source} has no labels. Expected an .npz with a 'labels' "
            "array beside the inputs (one class id per row).",
            field="eval",
        )
    engine = Engine(artifact, EngineOptions())
    scores = predict(engine, eval_set.inputs, output, signature=artifact.signature)
    if scores.ndim != 2 or scores.shape[1] < 2:
        raise InvalidInput(
            f"The output {output!r} of {artifact.name} has shape {list(scores.shape)} over the "
            "eval set; accuracy needs class scores [rows, classes]. Choose another 'output' or "
            "skip the accuracy check.",
            field="output",
        )
    labels = np.asarray(eval_set.labels).reshape(-1)
    if len(labels) != len(scores):
        raise InvalidInput(
            f"The eval set {eval_set.source} has {len(labels)} labels for {len(scores)} rows. "
            "Expected one label per row.",
            field="eval",
        )
    return np.asarray(scores.argmax(axis=1) == labels)


@contextlib.contextmanager
def serving(
    models: Mapping[str, ModelArtifact], *, threads: int, max_batch: int
) -> Iterator[dict[str, str]]:
    """One server per model, started here; yields each one's URL by model key."""
    with contextlib.ExitStack() as stack:
        urls = {}
        for key, a in models.items():
            spec = DeploymentSpec.single(
                a.path,
                name=a.name,
                threads=threads,
                max_batch=max_batch,
                max_wait_ms=2.0,
                monitor=False,
            )
            urls[key] = stack.enter_context(start_server(spec)).url
        yield urls


def load_windows(
    targets: Mapping[str, tuple[str, str]],
    *,
    inputs: pathlib.Path,
    windows: int,
    window_s: float,
    concurrency: int,
    on_window: Callable[[int], None] | None = None,
) -> dict[str, dict[str, Any]]:
    """Saturate each server with ``concurrency`` requests in flight, in alternating windows.

    Args:
        targets: Per key, the server's URL and the model name it serves.
        inputs: An .npz of request rows.
        windows: Measured windows per server (after one unrecorded warm-up window each).
        window_s: Seconds per window.
        concurrency: Requests in flight (closed loop): enough to keep every batch full.
        on_window: Told as each round of windows ends.

    Returns:
        Per key: ``rates`` (2xx answers per second, per window), ``p99_ms`` and ``errors`` per
        window.
    """

    def one(key: str, seconds: float) -> Any:
        url, model = targets[key]
        options = LoadOptions(
            concurrency=concurrency, duration_s=seconds, inputs=inputs, warmup_s=0.0
        )
        return run_load(url, model=model, options=options).overall

    for key in targets:
        one(key, min(1.0, window_s))
    out: dict[str, dict[str, Any]] = {k: {"rates": [], "p99_ms": [], "errors": []} for k in targets}
    order = list(targets)
    for w in range(windows):
        for key in order if w % 2 == 0 else order[::-1]:
            s = one(key, window_s)
            out[key]["rates"].append(max(float(s.achieved_rps), _MIN_RATE))
            out[key]["p99_ms"].append(float(s.p99_ms))
            out[key]["errors"].append(int(sum(s.errors.values())))
        if on_window is not None:
            on_window(w + 1)
    return out


@dataclass
class OthersMeter:
    """The cores processes other than this one (and its children) kept busy while it was open.

    ``cores`` is None until it closes, and where the machine's CPU time cannot be read.
    """

    cores: float | None = None
    _start: tuple[float, float, float] | None = None

    @staticmethod
    def _ours() -> float:
        import psutil

        me = psutil.Process()
        t = me.cpu_times()
        total = t.user + t.system + t.children_user + t.children_system
        for child in me.children(recursive=True):
            with contextlib.suppress(psutil.Error):
                c = child.cpu_times()
                total += c.user + c.system
        return total

    def __enter__(self) -> OthersMeter:
        busy = machine_busy_s()
        self._start = None if busy is None else (time.monotonic(), busy, self._ours())
        return self

    def __exit__(self, *exc: object) -> None:
        busy = machine_busy_s()
        if self._start is None or busy is None:
            return
        t0, busy0, ours0 = self._start
        wall = time.monotonic() - t0
        if wall > 0:
            self.cores = max(0.0, (busy - busy0) - (self._ours() - ours0)) / wall
