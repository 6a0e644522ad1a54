"""The replica pool of one model version: start, route to the least-loaded, restart the dead.

Each replica is a ``python -m modelscale.serve.replica`` subprocess (a fresh interpreter: it
inherits neither the front's event loop nor anything it imported) talking over a Unix socketpair,
read in the front by one asyncio task per replica. A replica runs one batch at a time, so requests
wait in the batcher, where they can still join a batch, instead of in a replica's socket.

A replica that dies (or runs a batch past ``batch_timeout_s``, and is then killed) is restarted; the
batch it held is answered 503 at once. When no replica is left, queued requests get 503 too.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from modelscale.errors import ServerError
from modelscale.serve.batcher import Pending, Reply, batch_replies, stack_inputs
from modelscale.serve.ipc import pack, read_message
from modelscale.serve.protocol import ApiError

__all__ = ["PoolOptions", "Replica", "ReplicaPool"]

log = logging.getLogger("modelscale.serve")

BatchObserver = Callable[[int, float, float], None]
"""Called after every batch a replica ran with (rows, inference seconds in the replica, wall
seconds from sending the batch to reading its reply in the front)."""


@dataclass(frozen=True)
class PoolOptions:
    """How the replicas of one model version run."""

    path: str
    replicas: int = 1
    threads: int = 1
    load_timeout_s: float = 120.0
    batch_timeout_s: float = 60.0
    """A batch running longer than this is taken as a hung replica: it is killed and restarted."""
    restart_backoff_s: float = 0.5


@dataclass(eq=False)
class Replica:
    """One replica process and what it is doing."""

    index: int
    proc: subprocess.Popen[bytes] | None = None
    writer: asyncio.StreamWriter | None = None
    reader_task: asyncio.Task[None] | None = None
    ready: bool = False
    inflight: list[Pending] | None = None
    inflight_rows: int = 0
    inflight_outputs: list[str] = field(default_factory=list)
    launched_at: float = 0.0
    watchdog: asyncio.TimerHandle | None = None
    restarts: int = 0
    failures: int = 0
    served_rows: int = field(default=0)

    @property
    def pid(self) -> int | None:
        """The process id (None before it started)."""
        return self.proc.pid if self.proc is not None else None


def _child_stdio() -> int:
    try:
        return sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):
        return subprocess.DEVNULL


class ReplicaPool:
    """Replicas of one model version, fed by its batcher."""

    def __init__(
        self, options: PoolOptions, *, label: str, on_batch: BatchObserver | None = None
    ) -> None:
        self.options = options
        self.label = label
        self.on_batch = on_batch
        self.replicas = [Replica(index=i) for i in range(options.replicas)]
        self._idle: deque[Replica] = deque()
        self._waiters: deque[asyncio.Future[Replica]] = deque()
        self._batch_ids = 0
        self._closing = False
        self.restarts_total = 0
        self.loaded = False
        """True once every replica has loaded at least once."""
        self.on_empty: Callable[[], None] | None = None
        """Called when the last ready replica dies (the batcher then fails its queue)."""

    @property
    def ready_count(self) -> int:
        """Replicas loaded and able to run batches."""
        return sum(r.ready for r in self.replicas)

    @property
    def pids(self) -> list[int]:
        """Process ids of the live replicas."""
        return [r.pid for r in self.replicas if r.pid is not None and r.ready]

    # -- lifecycle ------------------------------------------------------------------------------------
    async def start(self) -> None:
        """Start every replica and wait until all have loaded (ServerError naming the cause if not)."""
        results = await asyncio.gather(
            *(self._spawn(r) for r in self.replicas), return_exceptions=True
        )
        errors = [e for e in results if isinstance(e, BaseException)]
        if errors:
            await self.stop()
            raise errors[0]
        self.loaded = True
        for r in self.replicas:
            self._make_ready(r)

    async def _spawn(self, replica: Replica) -> None:
        parent, child = socket.socketpair()
        config = json.dumps({"path": self.options.path, "threads": self.options.threads})
        env = dict(os.environ)
        threads = str(self.options.threads)
        env.update(OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads, OPENBLAS_NUM_THREADS="1")
        loop = asyncio.get_running_loop()
        try:
            replica.proc = await loop.run_in_executor(
                None,
                lambda: subprocess.Popen(
                    [sys.executable, "-m", "modelscale.serve.replica", str(child.fileno()), config],
                    pass_fds=(child.fileno(),),
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=_child_stdio(),
                    stderr=_child_stdio(),
                ),
            )
        finally:
            child.close()
        reader, writer = await asyncio.open_connection(sock=parent)
        replica.writer = writer
        try:
            hello = await asyncio.wait_for(read_message(reader), self.options.load_timeout_s)
        except (asyncio.IncompleteReadError, ConnectionError, TimeoutError) as exc:
            self._kill(replica)
            why = "timed out loading" if isinstance(exc, TimeoutError) else "exited while loading"
            raise ServerError(
                f"replica {replica.index} of {self.label} {why} {self.options.path}; see its "
                "output above."
            ) from None
        if hello[0] != "ready":
            self._kill(replica)
            raise ServerError(f"replica {replica.index} of {self.label} failed to load: {hello[1]}")
        replica.reader_task = loop.create_task(self._read(replica, reader))

    def _make_ready(self, replica: Replica) -> None:
        replica.ready = True
        replica.failures = 0
        self.release(replica)

    def _kill(self, replica: Replica) -> None:
        if replica.writer is not None:
            replica.writer.close()
            replica.writer = None
        if replica.proc is not None and replica.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                replica.proc.kill()

    async def stop(self, *, timeout_s: float = 5.0) -> None:
        """Ask every replica to stop, then kill any that has not exited within ``timeout_s``."""
        self._closing = True
        for r in self.replicas:
            if r.writer is not None and not r.writer.is_closing():
                with contextlib.suppress(ConnectionError, RuntimeError):
                    r.writer.writelines(pack(("stop",)))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        for r in self.replicas:
            if r.proc is None:
                continue
            left = max(0.0, deadline - loop.time())
            try:
                await loop.run_in_executor(None, r.proc.wait, left)
            except subprocess.TimeoutExpired:
                r.proc.kill()
                await loop.run_in_executor(None, r.proc.wait)
            self._kill(r)
            if r.reader_task is not None:
                r.reader_task.cancel()
        for w in self._waiters:
            if not w.done():
                w.cancel()

    # -- routing --------------------------------------------------------------------------------------
    async def acquire(self) -> Replica:
        """The free replica that has served the fewest rows (waits while all are busy)."""
        while self._idle:
            r = self._idle.popleft()
            if r.ready and r.inflight is None:
                return r
        fut: asyncio.Future[Replica] = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        return await fut

    def release(self, replica: Replica) -> None:
        """Mark ``replica`` free: hand it to a waiting batch or put it back in the idle set."""
        if not replica.ready or self._closing:
            return
        while self._waiters:
            w = self._waiters.popleft()
            if not w.done():
                w.set_result(replica)
                return
        # Least-loaded first: the replica that served the fewest rows is picked next.
        self._idle.append(replica)
        if len(self._idle) > 1:
            self._idle = deque(sorted(self._idle, key=lambda r: r.served_rows))

    def launch(self, replica: Replica, items: list[Pending]) -> None:
        """Stack ``items`` into one batch and send it to ``replica``."""
        feeds = stack_inputs([it.request for it in items])
        outputs: dict[str, None] = {}
        for it in items:
            outputs.update(dict.fromkeys(it.request.outputs))
        self._batch_ids += 1
        rows = [it.request.rows for it in items]
        replica.inflight, replica.inflight_rows = items, sum(rows)
        replica.inflight_outputs = list(outputs)
        replica.launched_at = time.perf_counter()
        message = ("run", self._batch_ids, feeds, rows, replica.inflight_outputs)
        if replica.writer is None:
            self._fail_inflight(replica, "the replica is not connected")
            return
        replica.writer.writelines(pack(message))
        loop = asyncio.get_running_loop()
        replica.watchdog = loop.call_later(
            self.options.batch_timeout_s, self._hung, replica, self._batch_ids
        )

    def _hung(self, replica: Replica, batch_id: int) -> None:
        log.error(
            "%s replica %d ran a batch past %.0f s; killing it",
            self.label,
            replica.index,
            self.options.batch_timeout_s,
        )
        self._kill(replica)

    # -- replies --------------------------------------------------------------------------------------
    async def _read(self, replica: Replica, reader: asyncio.StreamReader) -> None:
        try:
            while True:
                msg = await read_message(reader)
                self._complete(replica, msg)
        except (asyncio.IncompleteReadError, ConnectionError, OSError):
            pass
        except asyncio.CancelledError:
            return
        if not self._closing:
            await self._died(replica)

    def _complete(self, replica: Replica, msg: tuple[Any, ...]) -> None:
        items, rows = replica.inflight or [], replica.inflight_rows
        replica.inflight, replica.inflight_rows = None, 0
        if replica.watchdog is not None:
            replica.watchdog.cancel()
        kind, infer_s = msg[0], msg[-1]
        replica.served_rows += rows
        if self.on_batch is not None:
            self.on_batch(rows, infer_s, time.perf_counter() - replica.launched_at)
        replies = batch_replies(
            (kind, *msg[2:]), replica.inflight_outputs, [it.request for it in items]
        )
        for item, reply in zip(items, replies, strict=True):
            if isinstance(reply, ApiError):
                _fail(item, reply)
            elif not item.future.done():
                item.future.set_result(Reply(reply, item.dispatched - item.arrived, infer_s, rows))
        self.release(replica)

    def _fail_inflight(self, replica: Replica, why: str) -> None:
        items = replica.inflight or []
        replica.inflight, replica.inflight_rows = None, 0
        if replica.watchdog is not None:
            replica.watchdog.cancel()
        err = ApiError(
            503,
            f"{why}; the request was not answered by the model, retry it.",
            headers={"retry-after": "1"},
        )
        for item in items:
            _fail(item, err)

    async def _died(self, replica: Replica) -> None:
        replica.ready = False
        code = replica.proc.poll() if replica.proc is not None else None
        log.warning(
            "%s replica %d (pid %s) died (exit %s); restarting it",
            self.label,
            replica.index,
            replica.pid,
            code,
        )
        self._kill(replica)
        self._fail_inflight(replica, f"replica {replica.index} of {self.label} died")
        if self.ready_count == 0 and self.on_empty is not None:
            self.on_empty()
        loop = asyncio.get_running_loop()
        if replica.proc is not None:
            await loop.run_in_executor(None, replica.proc.wait)
        while not self._closing:
            await asyncio.sleep(min(10.0, self.options.restart_backoff_s * 2**replica.failures))
            if self._closing:
                return
            try:
                await self._spawn(replica)
            except ServerError as exc:
                replica.failures += 1
                log.error("%s: %s", self.label, exc)
                continue
            replica.restarts += 1
            self.restarts_total += 1
            self._make_ready(replica)
            return


def _fail(item: Pending, err: ApiError) -> None:
    if not item.future.done():
        item.future.set_exception(err)
