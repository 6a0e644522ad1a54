"""A replica: an OS process with its own Engine and a fixed number of intra-op threads.

Run as ``python -m modelscale.serve.replica FD CONFIG_JSON`` by the replica pool, never by hand. FD is
its end of a Unix socketpair with the front. Messages (see ``ipc``):

    replica -> front   ("ready", pid) | ("failed", message)
    front -> replica   ("run", batch_id, feeds, row_counts, output_names) | ("stop",)
    replica -> front   ("ok", batch_id, outputs, infer_s)
                       ("split", batch_id, [("ok", outputs) | ("bad", message)], infer_s)
                       ("error", batch_id, status, message, infer_s)

When a stacked batch fails, each request in it is run alone, so one request with bad values (a token
id outside the vocabulary) is answered 400 while the others in its batch still succeed.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import sys
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from modelscale.errors import ModelscaleError, RuntimeFailure
from modelscale.serve.ipc import Channel

__all__ = ["main", "run_batch", "warm_up"]


def _status(exc: RuntimeFailure) -> int:
    # ORT raises InvalidArgument for input values the graph rejects: the client's fault, not ours.
    cause = type(exc.__cause__).__name__ if exc.__cause__ is not None else ""
    return 400 if cause in ("InvalidArgument", "INVALID_ARGUMENT") else 500


def run_batch(
    engine: Any, feeds: dict[str, np.ndarray], row_counts: Sequence[int], outputs: Sequence[str]
) -> tuple[Any, ...]:
    """Run one batch; on failure, isolate the request(s) that caused it."""
    t0 = time.perf_counter()
    try:
        result = engine.run(feeds, list(outputs))
        return ("ok", result, time.perf_counter() - t0)
    except RuntimeFailure as exc:
        if len(row_counts) == 1:
            return ("error", _status(exc), str(exc), time.perf_counter() - t0)
    parts: list[tuple[str, Any]] = []
    offset = 0
    for n in row_counts:
        one = {k: v[offset : offset + n] for k, v in feeds.items()}
        offset += n
        try:
            parts.append(("ok", engine.run(one, list(outputs))))
        except RuntimeFailure as exc:
            parts.append(("bad", (_status(exc), str(exc))))
    return ("split", parts, time.perf_counter() - t0)


def warm_up(engine: Any) -> None:
    """Run the model once on zeros, so that the first request does not pay for ORT's arenas."""
    feeds = {}
    for spec in engine.session.get_inputs():
        shape = [d if isinstance(d, int) and d > 0 else 1 for d in spec.shape]
        dtype = {"tensor(float)": np.float32, "tensor(int64)": np.int64}.get(spec.type)
        if dtype is None:
            return
        feeds[spec.name] = np.zeros(shape, dtype=dtype)
    # Some graphs reject zeros or size-1 dims; warming up is only an optimisation.
    with contextlib.suppress(ModelscaleError):
        engine.run(feeds)


def main(argv: Sequence[str] | None = None) -> None:
    """Load the model, say ready, then run batches until told to stop or the front goes away."""
    args = list(sys.argv[1:] if argv is None else argv)
    fd, config = int(args[0]), json.loads(args[1])
    # Ctrl-C reaches the whole process group; the front drains first and then stops its replicas.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    # A replica is a CPU-bound batch worker sharing cores with the front. As SCHED_BATCH it does
    # not preempt the front when a batch wakes it, so the front keeps parsing, batching and
    # answering on time (the policy is inherited by the inference threads started later).
    with contextlib.suppress(AttributeError, OSError):
        os.sched_setscheduler(0, os.SCHED_BATCH, os.sched_param(0))
    chan = Channel(socket.socket(fileno=fd))
    try:
        from modelscale.runtime.engine import Engine, EngineOptions

        engine = Engine(
            config["path"],
            # Replicas share cores with each other and the front: spinning threads would steal them.
            EngineOptions(intra_op_threads=int(config["threads"]), allow_spinning=False),
        )
        warm_up(engine)
    except ModelscaleError as exc:
        chan.send(("failed", str(exc)))
        return
    except Exception as exc:  # report, never leave the front waiting for "ready"
        chan.send(("failed", f"{type(exc).__name__}: {exc}"))
        return
    chan.send(("ready", os.getpid()))
    while True:
        try:
            msg = chan.recv()
        except (EOFError, ConnectionError):
            return
        if msg[0] == "stop":
            return
        _, batch_id, feeds, row_counts, outputs = msg
        outcome = run_batch(engine, feeds, row_counts, outputs)
        try:
            chan.send((outcome[0], batch_id, *outcome[1:]))
        except (BrokenPipeError, ConnectionError):
            return


if __name__ == "__main__":
    main()
