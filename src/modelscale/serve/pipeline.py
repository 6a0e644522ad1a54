"""The request pipeline: every request passes an ordered list of small stages, then recorders.

(The records and the recorders' queues are in ``records``.)

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

import enum
import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import orjson

from modelscale.errors import InvalidInput
from modelscale.serve.features import Events
from modelscale.serve.protocol import ApiError
from modelscale.serve.records import RecordQueue, RequestRecord

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
    "FEATURE_ENDPOINTS",
    "Endpoint",
    "Exchange",
    "Pipeline",
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
    FEATURE = "feature"
    """A GET route of a feature (the request log, dashboard data), behind the API key."""
    PAGE = "page"
    """A public GET route of a feature (a page that carries no data of its own)."""
    NOT_FOUND = "not_found"
    NOT_ALLOWED = "not_allowed"


ALL_ENDPOINTS = frozenset(Endpoint)
FEATURE_ENDPOINTS = frozenset({Endpoint.FEATURE, Endpoint.PAGE})
CONTROL_ENDPOINTS = ALL_ENDPOINTS - {Endpoint.INFER} - FEATURE_ENDPOINTS


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
        "more_headers",
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
        self.more_headers: list[tuple[bytes, bytes]] | None = None
        """Headers a stage adds to whatever answer the request gets (an experiment's arm)."""

    def add_header(self, name: bytes, value: bytes) -> None:
        """Send ``name: value`` (lower-case name) with the answer, whichever stage gives it."""
        if self.more_headers is None:
            self.more_headers = []
        self.more_headers.append((name, value))

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


@dataclass(frozen=True)
class StageContext:
    """What a feature's stage may need from the server it is built for."""

    spec: DeploymentSpec
    registry: ModelRegistry
    metrics: Metrics
    events: Events = field(default_factory=Events)
    """Notices between features (``modelscale.serve.features.Events``)."""


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
