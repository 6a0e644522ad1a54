"""What the pipeline's recorders get, and the bounded queues that keep them off the request path.

After an inference request's answer is sent, the front offers a ``RequestRecord`` of it to every
recorder (request log, metrics, sketches, ...). Each recorder has a ``RecordQueue``: records are
drained in batches, in the event loop or in a thread of the recorder's own for blocking work; a
full queue drops records and counts them (``modelscale_records_dropped_total``), so a slow or
broken recorder never delays or fails a request.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

import orjson

from modelscale.errors import InvalidInput

if TYPE_CHECKING:
    from modelscale.serve.codec import DecodedRequest
    from modelscale.serve.pipeline import Exchange

__all__ = ["DEFAULT_CAPACITY", "RecordQueue", "Recorder", "RequestRecord", "TickingRecorder"]

log = logging.getLogger("modelscale.serve")


class RequestRecord(NamedTuple):
    """What recorders get for each inference request, after its answer was sent.

    A named tuple: one is made per request, and building a frozen dataclass costs several times
    more on the server's hot path.
    """

    time: float
    """Unix time of arrival."""
    request_id: str | None
    model: str
    version: str
    status: int
    latency_s: float
    """Arrival in the front to the answer handed to the HTTP server."""
    queue_s: float | None = None
    """Arrival to hand-over to a replica (batch wait included)."""
    batch_wait_s: float | None = None
    """Arrival to the moment its batch closed."""
    infer_s: float | None = None
    """Its batch's inference time in the replica."""
    roundtrip_s: float | None = None
    """Hand-over to outcome: inference plus the trip to the replica and back."""
    batch_rows: int | None = None
    rows: int | None = None
    key_id: str | None = None
    error: str | None = None
    request: DecodedRequest | None = None
    """The decoded inputs (a reference, not a copy)."""
    outputs: dict[str, Any] | None = None
    extras: dict[str, Any] | None = None

    @property
    def front_s(self) -> float | None:
        """Time in the front itself: latency minus queueing and the replica round trip."""
        if self.queue_s is None or self.roundtrip_s is None:
            return None
        return max(0.0, self.latency_s - self.queue_s - self.roundtrip_s)

    @classmethod
    def of(cls, ex: Exchange, wall_time: float, latency_s: float) -> RequestRecord:
        """The record of a finished exchange."""
        rt, reply, req = ex.runtime, ex.reply, ex.decoded
        # Labelled by the version that ran it, or whose contract rejected it; "_unknown" when
        # no such model or version exists.
        where = rt.contract if rt is not None else ex.contract
        model, version = (where.name, where.version) if where is not None else ("_unknown", "")
        error = None
        if ex.status >= 400:
            with contextlib.suppress(orjson.JSONDecodeError, AttributeError, TypeError):
                error = orjson.loads(ex.content).get("error")
        return cls(
            time=wall_time,
            request_id=ex.request_id,
            model=model,
            version=version,
            status=ex.status,
            latency_s=latency_s,
            queue_s=reply.queue_s if reply is not None else None,
            batch_wait_s=reply.batch_wait_s if reply is not None else None,
            infer_s=reply.infer_s if reply is not None else None,
            roundtrip_s=reply.roundtrip_s if reply is not None else None,
            batch_rows=reply.batch_rows if reply is not None else None,
            rows=req.rows if req is not None else None,
            key_id=ex.key_id,
            error=error,
            request=req,
            outputs=reply.outputs if reply is not None else None,
            extras=ex.extras,
        )


class Recorder(Protocol):
    """Takes finished requests off the request path, in batches."""

    name: str
    threaded: bool
    """Drain in a thread of its own (for blocking work) instead of the event loop."""

    def record(self, records: Sequence[RequestRecord]) -> None:
        """Handle a batch of records (exceptions are logged and counted, never raised to clients)."""


class TickingRecorder(Recorder, Protocol):
    """A threaded recorder that also works on a clock (flush a buffer, evaluate alerts).

    Its thread calls ``tick()`` at least every ``tick_s`` seconds, with records or without, and
    ``tick(final=True)`` once when the server stops, after the last records.
    """

    tick_s: float

    def tick(self, *, final: bool = False) -> None:
        """Do the periodic work."""


DEFAULT_CAPACITY = 65_536
"""Records a recorder's queue holds before it drops (and counts) new ones."""


class RecordQueue:
    """A recorder's bounded queue: offered records are drained in batches; a full queue drops."""

    def __init__(self, recorder: Recorder, *, capacity: int = DEFAULT_CAPACITY) -> None:
        if capacity < 1:
            raise InvalidInput(
                f"The 'capacity' of a record queue must be >= 1. Got {capacity!r} instead.",
                field="capacity",
            )
        self.recorder = recorder
        self.capacity = capacity
        self.dropped = 0
        self.failed = 0
        self._items: deque[RequestRecord] = deque()
        self._scheduled = False
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._closed = False
        self._final = False
        self._tick_s: float | None = (
            getattr(recorder, "tick_s", None) if recorder.threaded else None
        )
        self._wake_at = max(1, capacity // 4)

    @property
    def name(self) -> str:
        """The recorder's name (the label of its drop counter)."""
        return self.recorder.name

    def offer(self, record: RequestRecord) -> None:
        """Queue ``record`` (or drop and count it when the queue is full); never blocks."""
        if len(self._items) >= self.capacity or self._closed:
            self.dropped += 1
            return
        self._items.append(record)
        if self.recorder.threaded:
            if self._thread is None:
                self._start_thread()
            # A ticking recorder drains on its clock: waking its thread for every request would
            # cost a thread switch (and the GIL's hand-over) per request for nothing, so it is
            # woken early only when its queue fills up.
            if self._tick_s is None or len(self._items) >= self._wake_at:
                self._wake.set()
        elif not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._drain_in_loop)

    def _take(self) -> list[RequestRecord]:
        items = []
        pop = self._items.popleft
        with contextlib.suppress(IndexError):
            for _ in range(len(self._items)):
                items.append(pop())
        return items

    def _run(self, items: list[RequestRecord]) -> None:
        if not items:
            return
        try:
            self.recorder.record(items)
        except Exception:
            self.failed += len(items)
            log.exception("recorder %s failed on %d records", self.name, len(items))

    def _drain_in_loop(self) -> None:
        self._scheduled = False
        self._run(self._take())

    def _start_thread(self) -> None:
        with self._lock:
            if self._thread is not None:
                return
            self._thread = threading.Thread(
                target=self._drain_in_thread, name=f"recorder {self.name}", daemon=True
            )
            self._thread.start()

    def _tick(self, *, final: bool = False) -> None:
        try:
            self.recorder.tick(final=final)  # type: ignore[attr-defined]
        except Exception:
            log.exception("recorder %s failed on its clock", self.name)

    def _drain_in_thread(self) -> None:
        tick_s = getattr(self.recorder, "tick_s", None)
        next_tick = time.monotonic() + tick_s if tick_s else None
        while True:
            if next_tick is None:
                self._wake.wait()
            else:
                self._wake.wait(max(0.0, next_tick - time.monotonic()))
            self._wake.clear()
            self._run(self._take())
            if next_tick is not None and time.monotonic() >= next_tick:
                self._tick()
                next_tick = time.monotonic() + tick_s  # type: ignore[operator]
            if self._closed and not self._items:
                if tick_s and self._final:
                    self._tick(final=True)
                return

    def start(self) -> None:
        """Start a ticking recorder's thread now, so it ticks before the first record."""
        if self.recorder.threaded and getattr(self.recorder, "tick_s", None):
            self._start_thread()

    def flush(self) -> None:
        """Drain what is queued now (in the calling thread for loop-drained recorders)."""
        if self.recorder.threaded and self._thread is not None:
            self._closed = True
            self._wake.set()
            self._thread.join(timeout=30)
            self._thread = None
            self._closed = False
        else:
            self._run(self._take())

    def close(self) -> None:
        """Drain what is queued, tick a last time (ticking recorders), and take no more."""
        self._final = True
        if (
            self.recorder.threaded
            and self._thread is None
            and getattr(self.recorder, "tick_s", None)
        ):
            self._run(self._take())
            self._tick(final=True)
        self.flush()
        self._closed = True
