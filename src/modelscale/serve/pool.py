"""The local backend: replica processes of one model version on this machine.

Each replica is a ``python -m modelscale.serve.replica`` subprocess (a fresh interpreter: it
inherits neither the front's event loop nor anything it imported) talking over a Unix socketpair,
read in the front by one asyncio task per replica. A replica runs one batch at a time, so requests
wait in the batcher, where they can still join a batch, instead of in a replica's socket; the free
replica that has served the fewest rows takes the next batch.

A replica that dies is restarted; the batch it held comes back as ``BatchLost``. When no replica is
left, ``on_unavailable`` is called. A replica that hangs (stopped, deadlocked, swapping) is found by a
watchdog: a batch unanswered for ten times the slowest service time seen (at least
``watchdog_floor_s``), or an idle replica that does not answer a ping within the floor, is killed
and so restarted; while no replica can serve, the backend is not serving and the server not ready.
Once the server drains, a replica that dies is not replaced.
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
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from modelscale.errors import InvalidInput, ServerError
from modelscale.serve.backend import (
    BackendHealth,
    BackendState,
    Batch,
    BatchLost,
    BatchOutcome,
    ReplicaSettings,
    ReplicaState,
    ReplicaStats,
)
from modelscale.serve.ipc import pack, read_message
from modelscale.serve.replica import (
    Configure,
    Configured,
    Done,
    Loaded,
    LoadFailed,
    Ping,
    Pong,
    RunBatch,
    Stop,
)

__all__ = ["LocalBackend", "PoolOptions", "Replica"]

log = logging.getLogger("modelscale.serve")


@dataclass(frozen=True)
class PoolOptions:
    """How the replicas of one model version run."""

    path: str
    replicas: int = 1
    threads: int = 1
    load_timeout_s: float = 120.0
    watchdog_s: float | None = None
    """A replica that has not answered a batch within this long is taken as hung, killed and
    restarted; None derives it from the service times measured (see ``watchdog_floor_s``)."""
    watchdog_floor_s: float = 5.0
    """The derived watchdog's least value, and how long an idle replica may take to answer a ping."""
    ping_interval_s: float = 5.0
    """An idle replica is pinged after this long without a batch."""
    restart_backoff_s: float = 0.5


@dataclass(eq=False)
class Replica:
    """One replica process and what it is doing."""

    index: int
    state: ReplicaState = ReplicaState.STARTING
    proc: subprocess.Popen[bytes] | None = None
    writer: asyncio.StreamWriter | None = None
    reader_task: asyncio.Task[None] | None = None
    inflight: asyncio.Future[BatchOutcome] | None = None
    inflight_id: int = 0
    inflight_rows: int = 0
    asking: asyncio.Future[Any] | None = None
    """The answer awaited to a Configure or Ping."""
    watchdog: asyncio.TimerHandle | None = None
    sent_at: float = 0.0
    idle_since: float = 0.0
    restarts: int = 0
    failures: int = 0
    batches: int = 0
    served_rows: int = field(default=0)

    @property
    def pid(self) -> int | None:
        """The process id (None before it started)."""
        return self.proc.pid if self.proc is not None else None

    @property
    def ready(self) -> bool:
        """Loaded and able to take batches."""
        return self.state in (ReplicaState.IDLE, ReplicaState.BUSY)


def _child_stdio() -> int:
    try:
        return sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):
        return subprocess.DEVNULL


class LocalBackend:
    """Replica processes of one model version, fed whole batches by the front's batcher."""

    def __init__(self, options: PoolOptions, *, label: str) -> None:
        self.options = options
        self.label = label
        self.replicas = [Replica(index=i) for i in range(options.replicas)]
        self._idle: deque[Replica] = deque()
        self._waiters: deque[asyncio.Future[Replica]] = deque()
        self._wanted: dict[int, asyncio.Future[Replica]] = {}
        """Replicas reserved by index (to reconfigure each one once), served before any batch."""
        self._batch_ids = 0
        self._closing = False
        self._draining = False
        self._slowest_s = 0.0
        """The slowest batch round trip lately (decays), or the warm-up time times the rows."""
        self._warmup_s = 0.0
        self._pinger: asyncio.Task[None] | None = None
        self.restarts_total = 0
        self.loaded = False
        """True once every replica has loaded at least once."""
        self.on_unavailable: Callable[[], None] | None = None

    @property
    def warmup_s(self) -> float | None:
        """The slowest replica's warm-up run (one row on zeros), None before any loaded."""
        return self._warmup_s or None

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
        self._pinger = asyncio.get_running_loop().create_task(self._ping_idle())

    async def _spawn(self, replica: Replica) -> None:
        replica.state = ReplicaState.STARTING
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
        if not isinstance(hello, Loaded):
            self._kill(replica)
            why = hello.message if isinstance(hello, LoadFailed) else repr(hello)
            raise ServerError(f"replica {replica.index} of {self.label} failed to load: {why}")
        if hello.warmup_s is not None:
            self._warmup_s = max(self._warmup_s, hello.warmup_s)
        replica.reader_task = loop.create_task(self._read(replica, reader))

    def _make_ready(self, replica: Replica) -> None:
        replica.state = ReplicaState.IDLE
        replica.idle_since = asyncio.get_running_loop().time()
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
        if self._pinger is not None:
            self._pinger.cancel()
        for r in self.replicas:
            if r.writer is not None and not r.writer.is_closing():
                with contextlib.suppress(ConnectionError, RuntimeError):
                    r.writer.writelines(pack(Stop()))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        for r in self.replicas:
            r.state = ReplicaState.STOPPED
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
            self._lose_inflight(r, "the server is shutting down")
        for w in self._waiters:
            if not w.done():
                w.cancel()

    # -- the backend protocol -------------------------------------------------------------------------
    async def acquire(self) -> Replica:
        """The free replica that has served the fewest rows (waits while all are busy)."""
        while self._idle:
            r = self._idle.popleft()
            if r.state is ReplicaState.IDLE:
                return r
        fut: asyncio.Future[Replica] = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        return await fut

    def release(self, replica: Replica) -> None:
        """Mark ``replica`` free: hand it to a waiting batch or put it back in the idle set."""
        if replica.state is not ReplicaState.IDLE or self._closing:
            return
        wanted = self._wanted.pop(replica.index, None)
        if wanted is not None and not wanted.done():
            wanted.set_result(replica)
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

    def run(self, replica: Replica, batch: Batch) -> asyncio.Future[BatchOutcome]:
        """Send ``batch`` to the reserved ``replica``; the future resolves with its outcome."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[BatchOutcome] = loop.create_future()
        if replica.writer is None or replica.state is not ReplicaState.IDLE:
            fut.set_result(BatchLost(f"replica {replica.index} of {self.label} is not connected"))
            return fut
        self._batch_ids += 1
        replica.state = ReplicaState.BUSY
        replica.inflight, replica.inflight_id, replica.inflight_rows = (
            fut,
            self._batch_ids,
            batch.rows,
        )
        replica.writer.writelines(pack(RunBatch(self._batch_ids, batch)))
        replica.sent_at = loop.time()
        replica.watchdog = loop.call_later(self.watchdog_s(batch.rows), self._hung, replica)
        return fut

    def watchdog_s(self, rows: int) -> float:
        """How long a batch of ``rows`` may go unanswered before its replica is taken as hung."""
        if self.options.watchdog_s is not None:
            return self.options.watchdog_s
        expected = max(self._slowest_s, self._warmup_s * rows)
        return max(self.options.watchdog_floor_s, 10.0 * expected)

    def drain(self) -> None:
        """The server is shutting down: batches in flight finish, no replica is replaced."""
        self._draining = True

    def health(self) -> BackendHealth:
        """Ready replicas against the configured number."""
        ready, desired = self.ready_count, len(self.replicas)
        if self._closing:
            state = BackendState.STOPPED
        elif not self.loaded:
            state = BackendState.STARTING
        elif ready == desired:
            state = BackendState.READY
        else:
            state = BackendState.DEGRADED if ready else BackendState.UNAVAILABLE
        return BackendHealth(state, ready, desired, self.restarts_total)

    def serving(self) -> bool:
        """Loaded once, not stopping, and a replica is up."""
        if not self.loaded or self._closing:
            return False
        return any(
            r.state is ReplicaState.IDLE or r.state is ReplicaState.BUSY for r in self.replicas
        )

    def stats(self) -> list[ReplicaStats]:
        """Per replica: state, batches and rows served, restarts."""
        return [
            ReplicaStats(
                f"{r.index}:{r.pid}", r.state, r.batches, r.served_rows, restarts=r.restarts
            )
            for r in self.replicas
        ]

    def in_flight_rows(self) -> int:
        """Rows the replicas are running now."""
        return sum(r.inflight_rows for r in self.replicas)

    async def reconfigure(self, settings: ReplicaSettings) -> None:
        """Rebuild every replica's session with ``settings.threads``, one replica at a time.

        Each replica is taken between batches (as a batch would take it), so serving goes on with
        the others; a replica that cannot apply the settings keeps its old ones and the call
        raises InvalidInput naming why.
        """
        threads = settings.threads
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
            raise InvalidInput(
                f"threads must be an integer >= 1; got {threads!r}.", field="threads"
            )
        # Replicas (re)started from now on start with the new settings too.
        self.options = replace(self.options, threads=threads)
        errors = []
        for replica in self.replicas:
            try:
                await asyncio.wait_for(self._take(replica), self.options.load_timeout_s)
            except TimeoutError:
                errors.append(f"replica {replica.index} was not free within the load timeout")
                continue
            answer = await self._configure(replica, threads)
            if replica.state is ReplicaState.BUSY:
                replica.state = ReplicaState.IDLE
            self.release(replica)
            if answer.error:
                errors.append(f"replica {replica.index}: {answer.error}")
        if errors:
            raise InvalidInput(
                f"{self.label} could not use {threads} threads: {'; '.join(errors)}",
                field="threads",
            )

    async def _take(self, replica: Replica) -> None:
        """Reserve this very replica as soon as it is free (between two batches)."""
        if replica.state is ReplicaState.IDLE and replica in self._idle:
            self._idle.remove(replica)
            return
        fut: asyncio.Future[Replica] = asyncio.get_running_loop().create_future()
        self._wanted[replica.index] = fut
        try:
            await fut
        finally:
            self._wanted.pop(replica.index, None)

    async def _ask(self, replica: Replica, message: Configure | Ping, timeout_s: float) -> Any:
        """Send ``message`` to the reserved ``replica`` and wait for its answer (TimeoutError).

        A replica lost meanwhile answers ``Configured`` with the reason (``_lose_inflight``).
        """
        assert replica.writer is not None  # checked by the callers
        replica.state = ReplicaState.BUSY
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        replica.asking = fut
        replica.writer.writelines(pack(message))
        try:
            return await asyncio.wait_for(fut, timeout_s)
        finally:
            replica.asking = None

    async def _configure(self, replica: Replica, threads: int) -> Configured:
        if replica.writer is None:
            return Configured(threads, "not connected")
        try:
            answer: Configured = await self._ask(
                replica, Configure(threads), self.options.load_timeout_s
            )
        except TimeoutError:
            return Configured(threads, "timed out rebuilding its session")
        return answer

    async def _ping_idle(self) -> None:
        """Ping each replica that has been idle for a while; kill one that does not answer."""
        loop = asyncio.get_running_loop()
        interval = self.options.ping_interval_s
        while not self._closing:
            await asyncio.sleep(interval / 2)
            now = loop.time()
            due = [
                r
                for r in self.replicas
                if r.state is ReplicaState.IDLE
                and r in self._idle
                and now - r.idle_since >= interval
                and r.writer is not None
            ]
            # All at once: replicas that hang together (a stopped container) are found together.
            await asyncio.gather(*(self._ping(r) for r in due))

    async def _ping(self, replica: Replica) -> None:
        self._idle.remove(replica)  # reserved, as a batch would reserve it
        try:
            await self._ask(replica, Ping(), self.options.watchdog_floor_s)
        except TimeoutError:
            log.error(
                "%s replica %d (pid %s) did not answer a ping within %.0f s; killing it",
                self.label,
                replica.index,
                replica.pid,
                self.options.watchdog_floor_s,
            )
            self._kill(replica)
            return
        if replica.state is ReplicaState.BUSY:  # not lost meanwhile
            self._make_ready(replica)

    # -- replies --------------------------------------------------------------------------------------
    def _hung(self, replica: Replica) -> None:
        log.error(
            "%s replica %d (pid %s) has not answered a batch of %d rows in %.1f s; killing it",
            self.label,
            replica.index,
            replica.pid,
            replica.inflight_rows,
            asyncio.get_running_loop().time() - replica.sent_at,
        )
        self._kill(replica)

    async def _read(self, replica: Replica, reader: asyncio.StreamReader) -> None:
        try:
            while True:
                msg = await read_message(reader)
                if isinstance(msg, Done):
                    self._complete(replica, msg)
                elif isinstance(msg, Configured | Pong) and replica.asking is not None:
                    if not replica.asking.done():
                        replica.asking.set_result(msg)
                    replica.asking = None
        except (asyncio.IncompleteReadError, ConnectionError, OSError):
            pass
        except asyncio.CancelledError:
            return
        if not self._closing:
            await self._died(replica)

    def _complete(self, replica: Replica, msg: Done) -> None:
        fut = replica.inflight
        if fut is None or msg.batch_id != replica.inflight_id:
            return  # a late answer for a batch already given up on
        rows = replica.inflight_rows
        replica.inflight, replica.inflight_rows = None, 0
        if replica.watchdog is not None:
            replica.watchdog.cancel()
        now = asyncio.get_running_loop().time()
        # The slowest recent round trip: jumps up at once, forgets slowly (halves in ~70 batches).
        self._slowest_s = max(now - replica.sent_at, self._slowest_s * 0.99)
        replica.served_rows += rows
        replica.batches += 1
        replica.state = ReplicaState.IDLE
        replica.idle_since = now
        if not fut.done():
            fut.set_result(msg.outcome)
        self.release(replica)

    def _lose_inflight(self, replica: Replica, why: str) -> None:
        fut = replica.inflight
        replica.inflight, replica.inflight_rows = None, 0
        if replica.watchdog is not None:
            replica.watchdog.cancel()
        if fut is not None and not fut.done():
            fut.set_result(BatchLost(why, str(replica.pid)))
        asking = replica.asking
        if asking is not None and not asking.done():
            # A Configure learns why; a Ping's waiter sees the replica is no longer busy.
            asking.set_result(Configured(self.options.threads, why))

    async def _died(self, replica: Replica) -> None:
        if self._draining:
            replica.state = ReplicaState.STOPPED
            self._kill(replica)
            self._lose_inflight(replica, f"replica {replica.index} of {self.label} exited")
            log.info("%s replica %d exited while draining", self.label, replica.index)
            return
        replica.state = ReplicaState.RESTARTING
        code = replica.proc.poll() if replica.proc is not None else None
        log.warning(
            "%s replica %d (pid %s) died (exit %s); restarting it",
            self.label,
            replica.index,
            replica.pid,
            code,
        )
        self._kill(replica)
        self._lose_inflight(replica, f"replica {replica.index} of {self.label} died")
        if self.ready_count == 0 and self.on_unavailable is not None:
            self.on_unavailable()
        loop = asyncio.get_running_loop()
        if replica.proc is not None:
            await loop.run_in_executor(None, replica.proc.wait)
        while not self._closing:
            await asyncio.sleep(min(10.0, self.options.restart_backoff_s * 2**replica.failures))
            if self._closing or self._draining:
                replica.state = ReplicaState.STOPPED
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
