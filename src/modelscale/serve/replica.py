"""A replica: an Engine with a fixed number of intra-op threads that runs whole batches.

The same code runs in two places: as an OS process of the local replica pool (``python -m
modelscale.serve.replica FD CONFIG_JSON``, started by the pool, never by hand; FD is its end of a
Unix socketpair with the front) and inside a Ray Serve replica (``modelscale.serve.ray_app``).
Messages of the local pool (pickled, see ``ipc``):

    replica -> front   Loaded(pid, warmup_s) | LoadFailed(message)
    front -> replica   RunBatch(batch_id, batch) | Configure(threads) | Ping() | Stop()
    replica -> front   Done(batch_id, outcome) | Configured(threads, error) | Pong()

A replica leaves its shutdown to the front: it ignores SIGINT and SIGTERM (a terminal's Ctrl-C,
systemd and container inits signal the whole process group, and the front must drain first) and
exits on ``Stop`` or when the front's end of the socket closes, as it does when the front dies.

When a stacked batch fails, each request in it is run alone, so one request with bad values (a token
id outside the vocabulary) is answered 400 while the others in its batch still succeed.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from modelscale.errors import ModelscaleError, RuntimeFailure
from modelscale.serve.backend import (
    Batch,
    BatchFailed,
    BatchOk,
    BatchOutcome,
    BatchSplit,
    PartFailed,
)
from modelscale.serve.heap import freeze_startup_heap
from modelscale.serve.ipc import Channel

__all__ = [
    "Configure",
    "Configured",
    "Done",
    "LoadFailed",
    "Loaded",
    "Ping",
    "Pong",
    "RunBatch",
    "Stop",
    "Warmup",
    "engine_message",
    "load_engine",
    "main",
    "run_batch",
    "warm_up",
]


@dataclass(frozen=True, slots=True)
class Loaded:
    """The replica loaded its model and takes batches."""

    pid: int
    warmup_s: float | None = None
    """How long one run at batch 1 took after loading (None: the model could not be warmed up)."""


@dataclass(frozen=True, slots=True)
class LoadFailed:
    """The replica could not load its model."""

    message: str


@dataclass(frozen=True, slots=True)
class RunBatch:
    """Run ``batch`` and answer ``Done`` with the same id."""

    batch_id: int
    batch: Batch


@dataclass(frozen=True, slots=True)
class Done:
    """The outcome of batch ``batch_id``."""

    batch_id: int
    outcome: BatchOutcome


@dataclass(frozen=True, slots=True)
class Configure:
    """Rebuild the session with ``threads`` intra-op threads (between batches)."""

    threads: int


@dataclass(frozen=True, slots=True)
class Configured:
    """The answer to ``Configure``: the threads now in use, and why not the asked ones if not."""

    threads: int
    error: str | None = None


@dataclass(frozen=True, slots=True)
class Ping:
    """Answer ``Pong`` (the front checks that an idle replica still answers)."""


@dataclass(frozen=True, slots=True)
class Pong:
    """The answer to ``Ping``."""


@dataclass(frozen=True, slots=True)
class Stop:
    """Exit."""


_ORT_PREFIX = re.compile(r"^\[ONNXRuntimeError\] : \d+ : \w+ : ")
_SOURCE = re.compile(r"\S*/[\w.+-]+\.(?:cc|cpp|cu|c|h|hpp):\d+\s*")
_SIGNATURE = re.compile(r"^(?:[\w:<>,*&]+\s+)?[\w<>]+(?:::[\w<>~]+)+\([^()]*\)(?:\s*const)?\s*")


def engine_message(exc: BaseException) -> str:
    """What ONNX Runtime said, for a client: its first line, without source paths or C++ names."""
    raw = str(exc.__cause__ if exc.__cause__ is not None else exc).strip()
    text = raw.splitlines()[0] if raw else type(exc).__name__
    text = _ORT_PREFIX.sub("", text)
    parts = _SOURCE.split(text)
    # After each source location comes the C++ function that raised: drop it too.
    text = parts[0] + "".join(_SIGNATURE.sub("", part) for part in parts[1:])
    return text.strip()


@dataclass(frozen=True, slots=True)
class Warmup:
    """The warm-up run: how long it took, and the inputs it ran (a request known to work)."""

    seconds: float
    feeds: dict[str, np.ndarray]


def _failure(engine: Any, exc: RuntimeFailure) -> PartFailed:
    """400 when the request's inputs are at fault, 500 when the model or replica is.

    ONNX Runtime says InvalidArgument for values the graph rejects; other errors (a broadcast that
    fails for a sequence longer than the model's positions) are the client's too when the model
    still runs the warm-up inputs, so the replica is known to work.
    """
    message = f"the model could not run these inputs: {engine_message(exc)}"
    cause = type(exc.__cause__).__name__ if exc.__cause__ is not None else ""
    if cause in ("InvalidArgument", "INVALID_ARGUMENT"):
        return PartFailed(400, message)
    warm: Warmup | None = getattr(engine, "warmup", None)
    if warm is not None:
        try:
            engine.run(warm.feeds)
        except RuntimeFailure:
            return PartFailed(500, message)
        return PartFailed(400, message)
    return PartFailed(500, message)


def run_batch(engine: Any, batch: Batch, *, replica: str = "") -> BatchOutcome:
    """Run one batch; on failure, isolate the request(s) that caused it."""
    t0 = time.perf_counter()
    outputs = list(batch.outputs)
    try:
        result = engine.run(batch.feeds, outputs)
        return BatchOk(result, time.perf_counter() - t0, replica)
    except RuntimeFailure as exc:
        if len(batch.row_counts) == 1:
            failed = _failure(engine, exc)
            return BatchFailed(failed.status, failed.message, time.perf_counter() - t0, replica)
    parts: list[list[np.ndarray] | PartFailed] = []
    offset = 0
    for n in batch.row_counts:
        one = {k: v[offset : offset + n] for k, v in batch.feeds.items()}
        offset += n
        try:
            parts.append(engine.run(one, outputs))
        except RuntimeFailure as exc:
            parts.append(_failure(engine, exc))
    return BatchSplit(parts, time.perf_counter() - t0, replica)


def warm_up(engine: Any) -> Warmup | None:
    """Run the model on zeros, so that the first request does not pay for ORT's arenas.

    Returns the second run's time (a first service time for the front's watchdog) and its inputs,
    or None when the model does not run on zeros.
    """
    feeds = {}
    for spec in engine.session.get_inputs():
        shape = [d if isinstance(d, int) and d > 0 else 1 for d in spec.shape]
        dtype = {"tensor(float)": np.float32, "tensor(int64)": np.int64}.get(spec.type)
        if dtype is None:
            return None
        feeds[spec.name] = np.zeros(shape, dtype=dtype)
    # Some graphs reject zeros or size-1 dims; warming up is only an optimisation.
    try:
        engine.run(feeds)
        t0 = time.perf_counter()
        engine.run(feeds)
        return Warmup(time.perf_counter() - t0, feeds)
    except ModelscaleError:
        return None


def load_engine(path: Any, threads: int) -> Any:
    """The replica's Engine for ``path`` with ``threads`` intra-op threads, warmed up.

    ``engine.warmup`` is what ``warm_up`` returned.
    """
    from modelscale.runtime.engine import Engine, EngineOptions

    # Replicas share cores with each other and the front: spinning threads would steal them.
    engine = Engine(path, EngineOptions(intra_op_threads=int(threads), allow_spinning=False))
    engine.warmup = warm_up(engine)  # type: ignore[attr-defined]  # the replica's own note
    return engine


def _configure(engine: Any, path: str, msg: Configure) -> tuple[Any, Configured]:
    if isinstance(msg.threads, bool) or not isinstance(msg.threads, int) or msg.threads < 1:
        return engine, Configured(engine.options.intra_op_threads, f"threads {msg.threads!r} < 1")
    try:
        return load_engine(path, msg.threads), Configured(msg.threads)
    except ModelscaleError as exc:
        return engine, Configured(engine.options.intra_op_threads, str(exc))


def main(argv: Sequence[str] | None = None) -> None:
    """Load the model, say so, then run batches until told to stop or the front goes away."""
    args = list(sys.argv[1:] if argv is None else argv)
    fd, config = int(args[0]), json.loads(args[1])
    # A signal to the whole process group (Ctrl-C, systemd's default KillMode, container inits)
    # must not stop the replicas under the front's drain: the front stops them when it is done.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    # A replica is a CPU-bound batch worker sharing cores with the front. As SCHED_BATCH it does
    # not preempt the front when a batch wakes it, so the front keeps parsing, batching and
    # answering on time (the policy is inherited by the inference threads started later).
    with contextlib.suppress(AttributeError, OSError):
        os.sched_setscheduler(0, os.SCHED_BATCH, os.sched_param(0))
    chan = Channel(socket.socket(fileno=fd))
    path = config["path"]
    try:
        engine = load_engine(path, int(config["threads"]))
    except ModelscaleError as exc:
        chan.send(LoadFailed(str(exc)))
        return
    except Exception as exc:  # report, never leave the front waiting for "loaded"
        chan.send(LoadFailed(f"{type(exc).__name__}: {exc}"))
        return
    name = str(os.getpid())
    warm = engine.warmup
    freeze_startup_heap()  # the engine and its imports, loaded once: no collector pass walks them
    chan.send(Loaded(os.getpid(), warm.seconds if warm is not None else None))
    while True:
        try:
            msg = chan.recv()
        except (EOFError, ConnectionError):
            return
        if isinstance(msg, RunBatch):
            reply: Any = Done(msg.batch_id, run_batch(engine, msg.batch, replica=name))
        elif isinstance(msg, Ping):
            reply = Pong()
        elif isinstance(msg, Configure):
            engine, reply = _configure(engine, path, msg)
        else:  # Stop, or anything this replica does not know: the front is newer or confused
            return
        try:
            chan.send(reply)
        except (BrokenPipeError, ConnectionError):
            return


if __name__ == "__main__":
    # Run the module's own copy, not this __main__ one: the messages must pickle as
    # modelscale.serve.replica.*, which is what the front unpickles.
    from modelscale.serve.replica import main as _main

    _main()
