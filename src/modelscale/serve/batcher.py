"""Dynamic batching for one model version, in the front's event loop.

A batch closes when it holds ``max_batch`` rows or ``max_wait`` after its first request arrived. It
is then handed to the least-loaded free replica; while every replica is busy it keeps taking
requests up to ``max_batch`` (it could not start earlier anyway, and a fuller batch drains the queue
faster). Only requests with identical non-batch shapes are stacked; requests with another shape
wait for a batch of their own, in arrival order. A request never shares a batch beyond
``max_batch`` rows (larger requests are rejected before they get here).

A full queue is refused at once (503 + Retry-After); a request whose timeout passes while queued is
answered 504 without running.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from modelscale.serve.codec import DecodedRequest
from modelscale.serve.protocol import ApiError

__all__ = ["Batcher", "Dispatcher", "Pending", "Reply", "batch_replies", "stack_inputs"]

QUEUED, TAKEN, EXPIRED = 0, 1, 2


def stack_inputs(requests: Sequence[DecodedRequest]) -> dict[str, np.ndarray]:
    """One batch's feeds: the requests' inputs stacked along axis 0 (one request's as they are)."""
    first = requests[0]
    if len(requests) == 1:
        return first.inputs
    return {n: np.concatenate([r.inputs[n] for r in requests]) for n in first.inputs}


def batch_replies(
    outcome: tuple[Any, ...], names: Sequence[str], requests: Sequence[DecodedRequest]
) -> list[dict[str, Any] | ApiError]:
    """Each request's outputs, or the error it is answered with, from its batch's outcome.

    ``outcome`` is what ``replica.run_batch`` returns: ``("ok", outputs, infer_s)``, ``("split",
    [("ok", outputs) | ("bad", (status, message))], infer_s)`` or ``("error", status, message,
    infer_s)``, with outputs in the order of ``names``. Stacked outputs are split back by rows, and
    each request gets the outputs it asked for.
    """
    kind = outcome[0]
    if kind == "ok":
        return _split_rows(dict(zip(names, outcome[1], strict=True)), requests)
    if kind == "split":
        return [
            _split_rows(dict(zip(names, payload, strict=True)), [req])[0]
            if status == "ok"
            else ApiError(payload[0], _model_error(payload[1]), field="inputs")
            for req, (status, payload) in zip(requests, outcome[1], strict=True)
        ]
    status, message = outcome[1], outcome[2]
    err = ApiError(status, _model_error(message), field="inputs" if status < 500 else None)
    return [err] * len(requests)


def _split_rows(
    arrays: Mapping[str, Any], requests: Sequence[DecodedRequest]
) -> list[dict[str, Any] | ApiError]:
    if len(requests) == 1:
        return [{k: arrays[k] for k in requests[0].outputs}]
    total = sum(r.rows for r in requests)
    flat = [k for k, v in arrays.items() if v.ndim == 0 or v.shape[0] != total]
    if flat:
        err = ApiError(500, f"output {flat[0]!r} has no batch axis to split by rows.")
        return [err] * len(requests)
    parts: list[dict[str, Any] | ApiError] = []
    offset = 0
    for r in requests:
        parts.append({k: arrays[k][offset : offset + r.rows] for k in r.outputs})
        offset += r.rows
    return parts


def _model_error(text: str) -> str:
    return f"the model rejected the input: {text}"


@dataclass(frozen=True)
class Reply:
    """What a request gets back from its batch."""

    outputs: dict[str, Any]
    queue_s: float
    infer_s: float
    batch_rows: int


@dataclass(eq=False)
class Pending:
    """One queued request and the future its handler awaits."""

    request: DecodedRequest
    future: asyncio.Future[Reply]
    arrived: float
    """perf_counter() at arrival, for latency metrics."""
    due: float
    """Loop time at which the batch this request starts must close."""
    deadline: float | None = None
    """Loop time after which the request is answered 504 instead of run."""
    state: int = QUEUED
    dispatched: float = 0.0
    timer: asyncio.TimerHandle | None = field(default=None, repr=False)


class Dispatcher(Protocol):
    """Where batches go: the replica pool (or a fake in tests)."""

    async def acquire(self) -> Any:
        """Wait for a free replica and reserve it."""

    def release(self, slot: Any) -> None:
        """Give back a reserved replica that got no batch."""

    def launch(self, slot: Any, items: list[Pending]) -> None:
        """Send ``items`` as one batch to the reserved replica; completes their futures later."""


def _wake_up(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


class Batcher:
    """The queue and batch former of one model version."""

    def __init__(
        self,
        dispatcher: Dispatcher,
        *,
        max_batch: int,
        max_wait_s: float,
        max_queue: int,
        label: str = "",
    ) -> None:
        self.dispatcher = dispatcher
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self.max_queue = max_queue
        self.label = label
        self._queues: dict[Hashable, deque[Pending]] = {}
        self._rows: dict[Hashable, int] = {}
        self.queued = 0
        """Requests waiting (not yet in a batch)."""
        self.queued_rows = 0
        self._wake: asyncio.Future[None] | None = None
        self._wake_key: Hashable | None = None
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    # -- the request side ---------------------------------------------------------------------------
    def submit(self, request: DecodedRequest) -> asyncio.Future[Reply]:
        """Queue ``request``; its future resolves with the reply (or an ApiError)."""
        if self._closed:
            raise ApiError(503, "the server is shutting down.", headers={"retry-after": "1"})
        if self.queued >= self.max_queue:
            raise ApiError(
                503,
                f"the queue of {self.label or 'this model'} is full ({self.max_queue} requests); "
                "retry later.",
                headers={"retry-after": "1"},
            )
        loop = asyncio.get_running_loop()
        now = loop.time()
        item = Pending(
            request=request,
            future=loop.create_future(),
            arrived=time.perf_counter(),
            due=now + self.max_wait_s,
        )
        if request.timeout_s is not None:
            item.deadline = now + request.timeout_s
            item.timer = loop.call_at(item.deadline, self._expire, item)
        key = request.key
        self._queues.setdefault(key, deque()).append(item)
        rows = self._rows.get(key, 0) + request.rows
        self._rows[key] = rows
        self.queued += 1
        self.queued_rows += request.rows
        wake = self._wake
        if (
            wake is not None
            and not wake.done()
            and (self._wake_key is None or (key == self._wake_key and rows >= self.max_batch))
        ):
            wake.set_result(None)
        return item.future

    def _forget(self, item: Pending) -> None:
        key = item.request.key
        self._rows[key] -= item.request.rows
        self.queued -= 1
        self.queued_rows -= item.request.rows
        if item.timer is not None:
            item.timer.cancel()

    def _expire(self, item: Pending) -> None:
        if item.state != QUEUED:
            return
        item.state = EXPIRED
        self._forget(item)
        if not item.future.done():
            timeout_us = (item.request.timeout_s or 0.0) * 1e6
            item.future.set_exception(
                ApiError(
                    504,
                    f"the request's timeout ({timeout_us:.0f} us) passed while it was queued; it "
                    "was not run.",
                    field="parameters.timeout",
                )
            )

    # -- the batch side -----------------------------------------------------------------------------
    def _head(self) -> Pending | None:
        """The oldest queued request (expired ones are dropped from the queue fronts)."""
        best: Pending | None = None
        for key in list(self._queues):
            q = self._queues[key]
            while q and q[0].state != QUEUED:
                q.popleft()
            if not q:
                del self._queues[key]
                self._rows.pop(key, None)
                continue
            if best is None or q[0].arrived < best.arrived:
                best = q[0]
        return best

    def take(self, key: Hashable) -> list[Pending]:
        """Pop the oldest requests of ``key`` up to ``max_batch`` rows (expired ones are 504'd)."""
        q = self._queues.get(key)
        items: list[Pending] = []
        rows = 0
        now = asyncio.get_running_loop().time()
        while q:
            item = q[0]
            if item.state != QUEUED:
                q.popleft()
                continue
            if item.deadline is not None and now >= item.deadline:
                q.popleft()
                self._expire(item)
                continue
            if items and rows + item.request.rows > self.max_batch:
                break
            q.popleft()
            self._forget(item)
            item.state = TAKEN
            items.append(item)
            rows += item.request.rows
            if rows >= self.max_batch:
                break
        return items

    async def _sleep(self, key: Hashable | None, until: float | None) -> bool:
        """Wait for a wake-up (a new request, or ``key`` filling up) or ``until``; True on the latter."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        self._wake, self._wake_key = fut, key
        timed_out = False

        def timeout() -> None:
            nonlocal timed_out
            timed_out = True
            _wake_up(fut)

        handle = loop.call_at(until, timeout) if until else None
        try:
            await fut
        finally:
            self._wake = None
            if handle is not None:
                handle.cancel()
        return timed_out

    async def run(self) -> None:
        """Form and dispatch batches until closed."""
        loop = asyncio.get_running_loop()
        while not self._closed:
            head = self._head()
            if head is None:
                await self._sleep(None, None)
                continue
            key = head.request.key
            # The timer's word is final: uvloop's timers have 1 ms granularity and may fire a
            # little before `due`; re-checking the clock would spin until it catches up.
            if (
                self._rows[key] < self.max_batch
                and loop.time() < head.due
                and not await self._sleep(key, head.due)
            ):
                continue
            slot = await self.dispatcher.acquire()
            items = self.take(key)
            if not items:
                self.dispatcher.release(slot)
                continue
            now = time.perf_counter()
            for item in items:
                item.dispatched = now
            self.dispatcher.launch(slot, items)

    def start(self) -> None:
        """Start the batch loop as a task of the running loop."""
        self._task = asyncio.get_running_loop().create_task(
            self.run(), name=f"batcher {self.label}"
        )

    def fail_queued(self, error: ApiError) -> None:
        """Answer every queued request with ``error`` (the model's replicas are all gone)."""
        for q in self._queues.values():
            for item in q:
                if item.state == QUEUED:
                    item.state = EXPIRED
                    self._forget(item)
                    if not item.future.done():
                        item.future.set_exception(error)
        self._queues.clear()
        self._rows.clear()

    async def close(self) -> None:
        """Stop forming batches and answer what is still queued with 503."""
        self._closed = True
        self.fail_queued(
            ApiError(503, "the server is shutting down.", headers={"retry-after": "1"})
        )
        if self._wake is not None and not self._wake.done():
            self._wake.set_result(None)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
