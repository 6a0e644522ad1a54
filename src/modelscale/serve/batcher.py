"""Dynamic batching for one model version, in the front's event loop, over any backend.

A batch closes when it holds ``max_batch`` rows or ``max_wait`` after its first request arrived. It
is then handed to whichever replica the backend frees first; while every replica is busy it keeps
taking requests up to ``max_batch`` (it could not start earlier anyway, and a fuller batch drains
the queue faster). Only requests with identical non-batch shapes are stacked; requests with another
shape wait for a batch of their own, in arrival order. A request never shares a batch beyond
``max_batch`` rows (larger requests are rejected before they get here).

The backend runs the batch and returns one outcome; splitting it back into per-request replies
happens here, once for every backend.

A full queue is refused at once (503 + Retry-After); a request whose timeout passes while queued is
answered 504 without running.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import functools
import logging
import time
from collections import deque
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

from modelscale.batching import SloPolicy
from modelscale.serve.backend import (
    Backend,
    Batch,
    BatchFailed,
    BatchLost,
    BatchOk,
    BatchOutcome,
    BatchSplit,
    PartFailed,
)
from modelscale.serve.codec import DecodedRequest
from modelscale.serve.protocol import ApiError

log = logging.getLogger("modelscale.serve")

__all__ = [
    "BatchObserver",
    "Batcher",
    "Pending",
    "QueueState",
    "Reply",
    "batch_replies",
    "make_batch",
]


class QueueState(enum.Enum):
    """Where a queued request is."""

    QUEUED = "queued"
    TAKEN = "taken"
    """In a batch (sent, or about to be sent, to a replica)."""
    EXPIRED = "expired"
    """Answered without running (timed out, or failed with the queue)."""


DispatchObserver = Callable[[int, float], None]
"""Called at every dispatch of the SLO policy with (rows sent, seconds the batch waited for more
rows while a replica was free)."""

PredictionObserver = Callable[[float, float], None]
"""Called for every request answered from a batch the SLO policy sent, with (predicted seconds,
observed seconds), arrival to outcome."""

BatchObserver = Callable[[int, float, float, float], None]
"""Called after every batch a replica ran with (rows, inference seconds in the replica, wall
seconds from handing the batch over to having its outcome in the front, batches in flight per
ready replica when it was handed over, at least 1: a backend that queues batches at its replicas
makes each wait behind the others, and its wall time is then that many batches' worth)."""


def make_batch(requests: Sequence[DecodedRequest]) -> Batch:
    """One batch from ``requests``: inputs stacked along axis 0, the union of requested outputs."""
    first = requests[0]
    if len(requests) == 1:
        return Batch(first.inputs, (first.rows,), first.outputs)
    if first.pad is not None:
        feeds = {n: _stack_padded([r.inputs[n] for r in requests], v) for n, v in first.pad.items()}
    else:
        feeds = {n: np.concatenate([r.inputs[n] for r in requests]) for n in first.inputs}
    outputs: dict[str, None] = {}
    for r in requests:
        outputs.update(dict.fromkeys(r.outputs))
    return Batch(feeds, tuple(r.rows for r in requests), tuple(outputs))


def _stack_padded(arrays: Sequence[np.ndarray], value: int) -> np.ndarray:
    """[rows, length] arrays stacked along axis 0, each padded with ``value`` to the longest."""
    width = max(a.shape[1] for a in arrays)
    if all(a.shape[1] == width for a in arrays):
        return np.concatenate(arrays)
    out = np.full((sum(a.shape[0] for a in arrays), width), value, dtype=arrays[0].dtype)
    row = 0
    for a in arrays:
        out[row : row + a.shape[0], : a.shape[1]] = a
        row += a.shape[0]
    return out


def batch_replies(
    outcome: BatchOutcome,
    names: Sequence[str],
    requests: Sequence[DecodedRequest],
    *,
    trim: frozenset[str] = frozenset(),
) -> list[dict[str, Any] | ApiError]:
    """Each request's outputs, or the error it is answered with, from its batch's outcome.

    Outputs in ``outcome`` are in the order of ``names``. Stacked outputs are split back by rows,
    and each request gets the outputs it asked for; per-token outputs named in ``trim`` are cut
    back to the request's own token count (requests padded to a longer batch neighbour).
    """
    if isinstance(outcome, BatchOk):
        return _split_rows(dict(zip(names, outcome.outputs, strict=True)), requests, trim)
    if isinstance(outcome, BatchSplit):
        return [
            ApiError(part.status, _model_error(part.message), field="inputs")
            if isinstance(part, PartFailed)
            else _split_rows(dict(zip(names, part, strict=True)), [req])[0]
            for req, part in zip(requests, outcome.parts, strict=True)
        ]
    if isinstance(outcome, BatchFailed):
        status = outcome.status
        err = ApiError(
            status, _model_error(outcome.message), field="inputs" if status < 500 else None
        )
        return [err] * len(requests)
    lost = ApiError(
        503,
        f"{outcome.reason}; the request was not answered by the model, retry it.",
        headers={"retry-after": "1"},
    )
    return [lost] * len(requests)


def _split_rows(
    arrays: dict[str, Any],
    requests: Sequence[DecodedRequest],
    trim: frozenset[str] = frozenset(),
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
        part = {k: arrays[k][offset : offset + r.rows] for k in r.outputs}
        if r.lengths is not None and trim:
            # Per-token outputs come back as long as the batch's longest request; each request
            # gets its own length, as if it had run alone.
            width = max(r.lengths)
            for k in trim.intersection(part):
                part[k] = part[k][:, :width]
        parts.append(part)
        offset += r.rows
    return parts


def _model_error(text: str) -> str:
    return f"the model rejected the input: {text}"


class Reply(NamedTuple):
    """What a request gets back from its batch, with where its time went.

    A named tuple rather than a dataclass: one is made per request, on the server's hot path,
    and a frozen dataclass costs several times more to build.
    """

    outputs: dict[str, Any]
    queue_s: float
    """Arrival to hand-over: waiting for the batch to close, then for a free replica."""
    infer_s: float
    """The batch's inference time in the replica."""
    batch_rows: int
    batch_wait_s: float = 0.0
    """Arrival to the moment its batch closed (full, or max_wait passed)."""
    roundtrip_s: float = 0.0
    """Hand-over to outcome: inference plus the trip to the replica and back."""


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
    state: QueueState = QueueState.QUEUED
    timer: asyncio.TimerHandle | None = field(default=None, repr=False)


def _wake_up(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


class Batcher:
    """The queue and batch former of one model version."""

    def __init__(
        self,
        backend: Backend,
        *,
        max_batch: int,
        max_wait_s: float,
        max_queue: int,
        label: str = "",
        on_batch: BatchObserver | None = None,
        trim: frozenset[str] = frozenset(),
        policy: SloPolicy | None = None,
        on_dispatch: DispatchObserver | None = None,
        on_prediction: PredictionObserver | None = None,
    ) -> None:
        self.backend = backend
        self.on_batch = on_batch
        self.policy = policy
        """With a latency objective: chooses each batch's rows and wait (``adaptive``)."""
        self.on_dispatch = on_dispatch
        self.on_prediction = on_prediction
        self._busy: dict[int, tuple[float, int]] = {}
        """Batches handed to the backend and not answered yet: id -> (perf_counter() when sent,
        rows)."""
        self._batch_ids = 0
        self.trim = trim
        """Per-token outputs, cut back to each request's own length (``batch_replies``)."""
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
        self._wake_rows = max_batch
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
        if self.policy is not None:
            self.policy.meter.add(request.rows, item.arrived)
        self._queues.setdefault(key, deque()).append(item)
        rows = self._rows.get(key, 0) + request.rows
        self._rows[key] = rows
        self.queued += 1
        self.queued_rows += request.rows
        wake = self._wake
        if (
            wake is not None
            and not wake.done()
            and (self._wake_key is None or (key == self._wake_key and rows >= self._wake_rows))
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
        if item.state is not QueueState.QUEUED:
            return
        item.state = QueueState.EXPIRED
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
            while q and q[0].state is not QueueState.QUEUED:
                q.popleft()
            if not q:
                del self._queues[key]
                self._rows.pop(key, None)
                continue
            if best is None or q[0].arrived < best.arrived:
                best = q[0]
        return best

    def take(self, key: Hashable, limit: int | None = None) -> list[Pending]:
        """Pop the oldest requests of ``key`` up to ``limit`` (``max_batch``) rows (expired ones are
        504'd); the first request is taken whatever its rows."""
        limit = self.max_batch if limit is None else min(limit, self.max_batch)
        q = self._queues.get(key)
        items: list[Pending] = []
        rows = 0
        now = asyncio.get_running_loop().time()
        while q:
            item = q[0]
            if item.state is not QueueState.QUEUED:
                q.popleft()
                continue
            if item.deadline is not None and now >= item.deadline:
                q.popleft()
                self._expire(item)
                continue
            if items and rows + item.request.rows > limit:
                break
            q.popleft()
            self._forget(item)
            item.state = QueueState.TAKEN
            items.append(item)
            rows += item.request.rows
            if rows >= limit:
                break
        return items

    async def _sleep(
        self, key: Hashable | None, until: float | None, rows: int | None = None
    ) -> bool:
        """Wait for a wake-up (a new request, or ``key`` reaching ``rows``, ``max_batch`` by
        default) or loop time ``until``; True on the latter."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        self._wake, self._wake_key = fut, key
        self._wake_rows = self.max_batch if rows is None else rows
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
        if self.policy is not None:
            await self._run_adaptive(self.policy)
            return
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
            closed = time.perf_counter()
            slot = await self.backend.acquire()
            items = self.take(key)
            if not items:
                self.backend.release(slot)
                continue
            self._dispatch(slot, items, closed)

    async def _run_adaptive(self, policy: SloPolicy) -> None:
        """The batch loop with a latency objective: a free replica first, then the policy's word.

        No timer runs while every replica is busy (requests simply queue, and the next batch is
        formed when a replica frees); with a free replica, the policy sends at once or names how
        long to wait and how many rows would end the wait early.
        """
        loop = asyncio.get_running_loop()
        while not self._closed:
            if self._head() is None:
                await self._sleep(None, None)
                continue
            slot = await self.backend.acquire()
            free = time.perf_counter()
            head = self._head()
            decision = None
            while head is not None and not self._closed:
                key = head.request.key
                now = time.perf_counter()
                decision = policy.decide(
                    age_s=now - head.arrived,
                    rows=self._rows[key],
                    replicas=max(1, self.backend.health().ready),
                    now=now,
                )
                if decision.rows:
                    break
                await self._sleep(key, loop.time() + decision.wait_s, decision.need)
                head = self._head()
            if head is None or decision is None or not decision.rows:
                self.backend.release(slot)
                continue
            closed = time.perf_counter()
            items = self.take(head.request.key, decision.rows)
            if not items:
                self.backend.release(slot)
                continue
            self._dispatch(slot, items, closed)
            if self.on_dispatch is not None:
                waited = max(0.0, closed - max(free, items[0].arrived))
                try:
                    self.on_dispatch(sum(it.request.rows for it in items), waited)
                except Exception:
                    log.exception("observing a dispatch of %s failed", self.label)

    def _dispatch(self, slot: Any, items: list[Pending], closed: float) -> None:
        """Hand ``items`` as one batch to the reserved replica ``slot``."""
        requests = [it.request for it in items]
        batch = make_batch(requests)
        sent = time.perf_counter()
        self._batch_ids += 1
        self._busy[self._batch_ids] = (sent, batch.rows)
        overlap = max(1.0, self.in_flight / max(1, self.backend.health().ready))
        predicted = None
        if self.policy is not None and self.on_prediction is not None:
            predicted = self.policy.service.mean(batch.rows)
        outcome = self.backend.run(slot, batch)
        outcome.add_done_callback(
            functools.partial(
                self._done, items, batch, closed, sent, overlap, self._batch_ids, predicted
            )
        )

    def _done(
        self,
        items: list[Pending],
        batch: Batch,
        closed: float,
        sent: float,
        overlap: float,
        batch_id: int,
        predicted: float | None,
        fut: asyncio.Future[BatchOutcome],
    ) -> None:
        self._busy.pop(batch_id, None)
        self._complete(fut.result(), items, batch, closed, sent, overlap)
        if predicted is not None and self.on_prediction is not None:
            now = time.perf_counter()
            try:
                for it in items:
                    self.on_prediction(sent - it.arrived + predicted, now - it.arrived)
            except Exception:
                log.exception("observing the predictions of %s failed", self.label)

    @property
    def in_flight(self) -> int:
        """Batches handed to the backend and not answered yet."""
        return len(self._busy)

    def predict_s(self, rows: int) -> float:
        """Seconds until a request of ``rows`` arriving now would be answered (0 without a policy).

        Replicas busy with a batch are free when its predicted service time has passed; the
        queue ahead is served first.
        """
        policy = self.policy
        if policy is None:
            return 0.0
        now = time.perf_counter()
        mean = policy.service.mean
        busy = [sent + mean(r) for sent, r in self._busy.values()]
        ready = max(1, self.backend.health().ready)
        return policy.predict(
            ahead_rows=self.queued_rows,
            rows=rows,
            busy_until=busy[:ready],
            free=ready - len(busy),
            now=now,
        )

    def _complete(
        self,
        outcome: BatchOutcome,
        items: list[Pending],
        batch: Batch,
        closed: float,
        sent: float,
        overlap: float = 1.0,
    ) -> None:
        now = time.perf_counter()
        roundtrip = now - sent
        infer_s = 0.0 if isinstance(outcome, BatchLost) else outcome.infer_s
        rows = batch.rows
        if self.on_batch is not None and not isinstance(outcome, BatchLost):
            try:
                self.on_batch(rows, infer_s, roundtrip, overlap)
            except Exception:  # an observer's bug must not leave the batch's requests unanswered
                log.exception("observing a batch of %s failed", self.label)
        replies = batch_replies(
            outcome, batch.outputs, [it.request for it in items], trim=self.trim
        )
        for item, reply in zip(items, replies, strict=True):
            fut = item.future
            if fut.done():
                continue
            if isinstance(reply, ApiError):
                fut.set_exception(reply)
            else:
                fut.set_result(
                    Reply(
                        reply,
                        queue_s=sent - item.arrived,
                        infer_s=infer_s,
                        batch_rows=rows,
                        batch_wait_s=max(0.0, closed - item.arrived),
                        roundtrip_s=roundtrip,
                    )
                )

    def start(self) -> None:
        """Start the batch loop as a task of the running loop (restarted if it ever fails)."""
        self._task = asyncio.get_running_loop().create_task(
            self.run(), name=f"batcher {self.label}"
        )
        self._task.add_done_callback(self._ended)

    def _ended(self, task: asyncio.Task[None]) -> None:
        if self._closed or task.cancelled() or task.exception() is None:
            return
        # A bug here must not leave requests waiting forever: answer what is queued, go on.
        log.error("the batch loop of %s failed", self.label, exc_info=task.exception())
        self.fail_queued(ApiError(500, "internal server error; see the server log"))
        self.start()

    def fail_queued(self, error: ApiError) -> None:
        """Answer every queued request with ``error`` (the model's replicas are all gone)."""
        for q in self._queues.values():
            for item in q:
                if item.state is QueueState.QUEUED:
                    item.state = QueueState.EXPIRED
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
