"""A minimal keep-alive HTTP/1.1 client built for load generation: asyncio protocols + httptools.

Why not a general client: at thousands of requests per second on two cores the client's own cost
per request decides whether it measures the server or itself. General asyncio clients (aiohttp,
httpx) build header objects, streams and tasks per request, tens of microseconds each; here a
request is one ``transport.write`` of pre-encoded bytes and a response is parsed by httptools (the C
parser uvicorn uses) straight into a status code, with no per-request task. On uvloop it sustains
well over 5,000 requests/s on one core against a trivial endpoint (bench/serving.py measures it).

The ``Shooter`` runs one measurement: open loop (every request has a planned send time; a request
due while all ``max_connections`` are busy waits in a backlog and is sent late, never skipped; its
latency still counts from the planned time) or closed loop (``concurrency`` requests always in
flight, each sent when the previous one on its connection finished).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import cast

import httptools
import numpy as np

__all__ = ["CONNECTION_ERROR", "TIMEOUT", "Outcome", "Shooter", "build_request"]

CONNECTION_ERROR = -1
"""Status recorded for a request whose connection failed or closed before the response."""
TIMEOUT = -2
"""Status recorded for a request still unanswered when the run's timeout passed."""
_EARLY_S = 0.0015


def build_request(
    method: str, host: str, port: int, path: str, body: bytes, headers: dict[str, str]
) -> bytes:
    """One HTTP/1.1 request, fully encoded."""
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}:{port}", f"Content-Length: {len(body)}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


@dataclass
class Outcome:
    """Per-request timings (perf_counter seconds) and status codes of one run."""

    intended: np.ndarray
    sent: np.ndarray
    done: np.ndarray
    status: np.ndarray
    started: float
    """perf_counter() at the schedule's zero."""
    ended: float


class _Conn(asyncio.Protocol):
    __slots__ = ("index", "owner", "parser", "transport")

    def __init__(self, owner: Shooter) -> None:
        self.owner = owner
        self.parser = httptools.HttpResponseParser(self)
        self.index = -1
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport but have its methods.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            if self.transport is not None:
                self.transport.close()

    def on_message_complete(self) -> None:
        index, self.index = self.index, -1
        self.owner._finished(
            self, index, self.parser.get_status_code(), self.parser.should_keep_alive()
        )

    def connection_lost(self, exc: Exception | None) -> None:
        index, self.index = self.index, -1
        self.owner._lost(self, index)

    def send(self, index: int, data: bytes) -> None:
        self.index = index
        assert self.transport is not None  # only connected connections are sent on
        self.transport.write(data)


class Shooter:
    """Sends pre-encoded requests to one host:port and records when each was answered."""

    def __init__(
        self,
        host: str,
        port: int,
        requests: Sequence[bytes],
        *,
        max_connections: int = 256,
        on_tick: Callable[[int, int], None] | None = None,
    ) -> None:
        self.host, self.port = host, port
        self.requests = list(requests)
        self.max_connections = max_connections
        self.on_tick = on_tick
        self._conns: set[_Conn] = set()
        self._idle: list[_Conn] = []
        self._connecting = 0
        self._backlog: deque[int] = deque()
        self._reset(0, closed_loop=False)

    # -- connection events -------------------------------------------------------------------------
    def _send(self, conn: _Conn, i: int) -> None:
        self._t_sent[i] = time.perf_counter()
        conn.send(i, self.requests[i % len(self.requests)])

    def _finished(self, conn: _Conn, i: int, status: int, keep_alive: bool) -> None:
        if i >= 0:
            self._record(i, status)
        if not keep_alive:
            assert conn.transport is not None  # it just delivered a response
            conn.transport.close()  # connection_lost sends the backlog on a new connection
            return
        if self._backlog:
            self._send(conn, self._backlog.popleft())
        else:
            self._idle.append(conn)

    def _lost(self, conn: _Conn, i: int) -> None:
        self._conns.discard(conn)
        if conn in self._idle:
            self._idle.remove(conn)
        if i >= 0:
            self._record(i, CONNECTION_ERROR)
        if self._backlog and self._running:
            self._connect(self._backlog.popleft())

    def _record(self, i: int, status: int) -> None:
        if self._status[i] != 0:
            return  # already counted (a timeout, then the connection closing)
        self._t_done[i] = time.perf_counter()
        self._status[i] = status
        self._completed += 1
        if self._closed_loop and self._running and self._t_done[i] < self._end:
            # Goes out on the connection that just finished (or a new one if that one closed).
            self._backlog.append(self._plan_next())
        done = self._all_done
        if self._completed >= self._planned and done is not None and not done.done():
            done.set_result(None)

    def _connect(self, i: int) -> None:
        self._connecting += 1
        asyncio.get_running_loop().create_task(self._open_and_send(i))

    async def _open_and_send(self, i: int) -> None:
        loop = asyncio.get_running_loop()
        try:
            _, conn = await loop.create_connection(lambda: _Conn(self), self.host, self.port)
        except OSError:
            self._connecting -= 1
            self._record(i, CONNECTION_ERROR)
            if self._backlog and self._running:
                self._connect(self._backlog.popleft())
            return
        self._connecting -= 1
        self._conns.add(conn)
        self._send(conn, i)

    def _dispatch(self, i: int) -> None:
        if self._idle:
            self._send(self._idle.pop(), i)
        elif len(self._conns) + self._connecting < self.max_connections:
            self._connect(i)
        else:
            self._backlog.append(i)  # sent late, never skipped: lateness is in its latency

    # -- runs ----------------------------------------------------------------------------------------
    def _reset(self, n: int, closed_loop: bool) -> None:
        self._t_intended = np.zeros(n)
        self._t_sent = np.zeros(n)
        self._t_done = np.zeros(n)
        self._status = np.zeros(n, dtype=np.int32)
        self._completed = 0
        self._planned = n
        self._next_index = 0
        self._closed_loop = closed_loop
        self._running = True
        self._all_done: asyncio.Future[None] | None = None
        self._end = float("inf")

    def _plan_next(self) -> int:
        # Closed loop: the next request is planned the moment the previous one finished.
        i = self._next_index
        if i >= len(self._t_intended):
            grow = max(1024, len(self._t_intended))
            self._t_intended = np.concatenate([self._t_intended, np.zeros(grow)])
            self._t_sent = np.concatenate([self._t_sent, np.zeros(grow)])
            self._t_done = np.concatenate([self._t_done, np.zeros(grow)])
            self._status = np.concatenate([self._status, np.zeros(grow, dtype=np.int32)])
        self._next_index += 1
        self._t_intended[i] = time.perf_counter()
        return i

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(0.25)
            if self.on_tick is not None:
                self.on_tick(self._completed, self._planned)

    async def _drain(self, timeout_s: float) -> None:
        self._all_done = asyncio.get_running_loop().create_future()
        if self._completed >= self._planned:
            return
        try:
            await asyncio.wait_for(asyncio.shield(self._all_done), timeout_s)
        except TimeoutError:
            self._running = False
            n = self._planned
            unanswered = self._status[:n] == 0
            self._t_done[:n][unanswered] = time.perf_counter()
            self._status[:n][unanswered] = TIMEOUT
            self.close()

    def _outcome(self, n: int, t0: float) -> Outcome:
        return Outcome(
            self._t_intended[:n].copy(),
            self._t_sent[:n].copy(),
            self._t_done[:n].copy(),
            self._status[:n].copy(),
            t0,
            time.perf_counter(),
        )

    async def open_loop(self, offsets: np.ndarray, *, timeout_s: float = 30.0) -> Outcome:
        """Send request i at ``offsets[i]`` seconds after the start, whatever the server does."""
        n = len(offsets)
        self._reset(n, closed_loop=False)
        ticker = asyncio.get_running_loop().create_task(self._tick())
        t0 = time.perf_counter() + 0.005
        self._t_intended[:] = t0 + offsets
        intended = self._t_intended
        i = 0
        try:
            while i < n:
                now = time.perf_counter()
                if intended[i] > now + _EARLY_S:
                    await asyncio.sleep(intended[i] - now)
                    continue
                # Event-loop timers have ~1 ms granularity and may wake a little early; waiting out
                # the rest would spin. A request sent up to _EARLY_S early is re-planned at its real
                # send time, so its latency is never shortened.
                while i < n and intended[i] <= now + _EARLY_S:
                    if intended[i] > now:
                        intended[i] = now
                    self._dispatch(i)
                    i += 1
            await self._drain(timeout_s)
        finally:
            self._running = False
            ticker.cancel()
        return self._outcome(n, t0)

    async def closed_loop(
        self, concurrency: int, duration_s: float, *, timeout_s: float = 30.0
    ) -> Outcome:
        """Keep ``concurrency`` requests in flight for ``duration_s`` seconds."""
        self._reset(0, closed_loop=True)
        self._planned = 2**62  # unknown until the end
        ticker = asyncio.get_running_loop().create_task(self._tick())
        t0 = time.perf_counter()
        self._end = t0 + duration_s
        try:
            for _ in range(concurrency):
                self._dispatch(self._plan_next())
            await asyncio.sleep(duration_s)
            self._end = -1.0  # the timer may fire a little early: stop planning now, exactly
            self._planned = self._next_index
            self._backlog.clear()
            self._planned -= int(np.count_nonzero(self._t_sent[: self._planned] == 0))
            await self._drain(timeout_s)
        finally:
            self._running = False
            ticker.cancel()
        n = self._next_index
        sent = self._t_sent[:n] > 0
        out = self._outcome(n, t0)
        return Outcome(
            out.intended[sent], out.sent[sent], out.done[sent], out.status[sent], t0, out.ended
        )

    async def aclose(self) -> None:
        """Close every connection, and let the loop process the closes."""
        self.close()
        await asyncio.sleep(0)

    def close(self) -> None:
        """Close every connection and forget queued sends."""
        self._backlog.clear()
        for conn in list(self._conns):
            if conn.transport is not None:
                conn.transport.close()
        self._idle.clear()
