"""The request pipeline: every request passes an ordered list of small stages, then recorders.

    auth -> decode and validate -> route -> batch and dispatch -> answer      (on the request path)
    record: metrics, request log, sketches, ...                               (off the request path)

A stage is an object with a ``name``, the ``endpoints`` it applies to, and one coroutine that reads
and writes the request's ``Exchange``; it answers early by raising ``ApiError`` (or, for routes that
need no model, by setting the exchange's answer). The front runs the stages for the request's
endpoint in order, sends the answer, and offers a ``RequestRecord`` of every inference request to
the recorders. Recorders never slow a request down: each has a bounded queue, drained in batches
after the answer is sent (in the event loop, or in a thread of its own for slow work such as
writing files); a full queue drops records and counts them (``modelscale_records_dropped_total``).

Features are added as stages or recorders, written once for every backend: ``assemble`` builds the
pipeline from the built-in stages plus ``StageFactory`` objects placed before or after a named
stage, so the serving core never imports the packages that provide them.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import threading
import time
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple, Protocol

import orjson

from modelscale.errors import InvalidInput
from modelscale.serve.protocol import ApiError

if TYPE_CHECKING:
    from modelscale.config import DeploymentSpec
    from modelscale.serve.batcher import Reply
    from modelscale.serve.codec import DecodedRequest
    from modelscale.serve.contract import ModelContract
    from modelscale.serve.metrics import Metrics
    from modelscale.serve.registry import ModelEntry, ModelRegistry, VersionRuntime

__all__ = [
    "ALL_ENDPOINTS",
    "CONTROL_ENDPOINTS",
    "DEFAULT_CAPACITY",
    "Endpoint",
    "Exchange",
    "Pipeline",
    "RecordQueue",
    "Recorder",
    "RequestRecord",
    "Stage",
    "StageContext",
    "StageFactory",
    "assemble",
]

log = logging.getLogger("modelscale.serve")


class Endpoint(enum.Enum):
    """What a request asks for, from its method and path."""

    INFER = "infer"
    SERVER_METADATA = "server_metadata"
    MODEL_METADATA = "model_metadata"
    MODEL_READY = "model_ready"
    LIVE = "live"
    READY = "ready"
    METRICS = "metrics"
    NOT_FOUND = "not_found"
    NOT_ALLOWED = "not_allowed"


ALL_ENDPOINTS = frozenset(Endpoint)
CONTROL_ENDPOINTS = ALL_ENDPOINTS - {Endpoint.INFER}


class Exchange:
    """One HTTP request on its way through the pipeline, and its answer once there is one."""

    __slots__ = (
        "body",
        "content",
        "content_length",
        "content_type",
        "contract",
        "decoded",
        "endpoint",
        "entry",
        "extras",
        "header_length",
        "headers",
        "key_id",
        "method",
        "model",
        "path",
        "receive",
        "reply",
        "request_id",
        "response_headers",
        "runtime",
        "scope",
        "started",
        "status",
        "version",
    )

    def __init__(
        self,
        scope: dict[str, Any],
        receive: Any,
        endpoint: Endpoint,
        *,
        path: str,
        model: str | None = None,
        version: str | None = None,
    ) -> None:
        self.scope = scope
        self.receive = receive
        self.endpoint = endpoint
        self.path = path
        self.method: str = scope.get("method", "GET")
        self.model = model
        """The model named in the path (None for routes without one)."""
        self.version = version
        """The version named in the path (None: the route stage picks one)."""
        self.started = time.perf_counter()
        self.headers: dict[bytes, bytes] = {}
        """The request headers the stages read (first of repeated ones), lower-case names."""
        self.request_id: str | None = None
        self.content_length: bytes | None = None
        self.header_length: str | None = None
        self.content_type: bytes | None = None
        self.key_id: str | None = None
        """Which API key the request carried (an id, never the key)."""
        self.body: bytes | None = None
        self.entry: ModelEntry | None = None
        self.contract: ModelContract | None = None
        """The contract ``decoded`` was validated against."""
        self.decoded: DecodedRequest | None = None
        self.runtime: VersionRuntime | None = None
        self.reply: Reply | None = None
        self.status = 0
        """The answer's HTTP status; 0 until a stage answers."""
        self.content = b""
        self.response_headers: list[tuple[bytes, bytes]] = []
        self.extras: dict[str, Any] | None = None
        """What stages leave for recorders (experiment arm, redaction report, ...); made by the
        first stage that has something to leave."""

    def answer(self, status: int, content: bytes, headers: list[tuple[bytes, bytes]]) -> None:
        """Set the answer (the remaining stages are skipped)."""
        self.status, self.content, self.response_headers = status, content, headers

    def fail(self, exc: ApiError) -> None:
        """Answer with ``exc``'s status, message and headers."""
        headers = [
            (k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in exc.headers.items()
        ]
        if not any(k == b"content-type" for k, _ in headers):
            headers.append((b"content-type", b"application/json"))
        self.answer(exc.status, orjson.dumps(exc.body()), headers)


class Stage(Protocol):
    """One step of the pipeline."""

    name: ClassVar[str]
    endpoints: ClassVar[frozenset[Endpoint]]
    """The endpoints whose requests pass this stage."""

    async def __call__(self, ex: Exchange) -> None:
        """Read and update ``ex``; raise ApiError (or call ``ex.answer``) to answer now."""


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

    def _drain_in_thread(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            self._run(self._take())
            if self._closed and not self._items:
                return

    def flush(self) -> None:
        """Drain what is queued now (in the calling thread for loop-drained recorders)."""
        if self.recorder.threaded and self._thread is not None:
            self._closed = True
            self._wake.set()
            self._thread.join(timeout=10)
            self._thread = None
            self._closed = False
        else:
            self._run(self._take())

    def close(self) -> None:
        """Drain what is queued and take no more."""
        self.flush()
        self._closed = True


@dataclass(frozen=True)
class StageContext:
    """What a feature's stage may need from the server it is built for."""

    spec: DeploymentSpec
    registry: ModelRegistry
    metrics: Metrics


class StageFactory(Protocol):
    """Builds a feature's stage for a server (None when the deployment does not use it)."""

    place: tuple[str, str]
    """("before" | "after", name of a built-in or earlier stage)."""

    def __call__(self, context: StageContext) -> Stage | None:
        """The stage for ``context``, or None."""


class Pipeline:
    """The stages in order, per endpoint, and the recorders' queues."""

    def __init__(self, stages: Sequence[Stage], recorders: Iterable[RecordQueue] = ()) -> None:
        names = [s.name for s in stages]
        if len(set(names)) != len(names):
            raise InvalidInput(
                f"Pipeline stage names must be unique; got {', '.join(names)}.", field="stages"
            )
        self.stages = tuple(stages)
        self.recorders = tuple(recorders)
        self._by_endpoint = {ep: tuple(s for s in stages if ep in s.endpoints) for ep in Endpoint}

    def stages_for(self, endpoint: Endpoint) -> tuple[Stage, ...]:
        """The stages a request to ``endpoint`` passes, in order."""
        return self._by_endpoint[endpoint]

    async def run(self, ex: Exchange) -> None:
        """Pass ``ex`` through its stages until one answers (ApiError included)."""
        try:
            for stage in self._by_endpoint[ex.endpoint]:
                await stage(ex)
                if ex.status:
                    return
        except ApiError as exc:
            ex.fail(exc)

    def record(self, ex: Exchange, wall_time: float) -> None:
        """Offer the finished ``ex`` to every recorder."""
        if not self.recorders:
            return
        record = RequestRecord.of(ex, wall_time, time.perf_counter() - ex.started)
        for queue in self.recorders:
            queue.offer(record)

    def close(self) -> None:
        """Drain every recorder's queue."""
        for queue in self.recorders:
            queue.close()


def assemble(
    builtin: Sequence[Stage], extra: Sequence[StageFactory], *, context: StageContext
) -> list[Stage]:
    """The built-in stages with each factory's stage placed before or after the stage it names."""
    stages = list(builtin)
    for factory in extra:
        stage = factory(context)
        if stage is None:
            continue
        where, anchor = factory.place
        names = [s.name for s in stages]
        if where not in ("before", "after") or anchor not in names:
            raise InvalidInput(
                f"stage {stage.name!r} is placed {where} {anchor!r}; expected 'before' or "
                f"'after' one of {', '.join(names)}.",
                field="stages",
            )
        at = names.index(anchor) + (1 if where == "after" else 0)
        stages.insert(at, stage)
    return stages
