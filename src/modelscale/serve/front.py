"""The V2 front: one ASGI app for every backend (Open Inference Protocol, KServe V2, REST).

    GET  /v2                                        server metadata
    GET  /v2/health/live | /v2/health/ready         probes (200, or 400 when not ready)
    GET  /v2/models/{name}[/versions/{v}]           model metadata (parameters.sha256 = version id)
    GET  /v2/models/{name}[/versions/{v}]/ready     200 when the version serves, else 400
    POST /v2/models/{name}[/versions/{v}]/infer     inference, JSON or binary tensors
    GET  /metrics                                   Prometheus text format
    GET  ...                                        routes of features (the request log, dashboard)
    POST /v2/models/{name}[/versions/{v}]/{tail}    model routes of features (feedback)

The same app runs under uvicorn on one machine (``modelscale serve``, replicas as local processes)
and as the ingress of a Ray Serve application on a cluster (replicas as Ray deployments): the
routes, codec, auth, errors, batching policy and metrics are this code either way, and only the
backend that runs whole batches differs (``modelscale.serve.backend``).

Each request is classified by method and path (no router: the V2 routes are few, and this is the
server's hot path), then passes the pipeline's stages (``modelscale.serve.pipeline``). Errors are
JSON ``{"error": message, "field": name}``: 400 bad input, 401 no key (or not an active one), 403
a key without the route's scope, 404 unknown model, version or endpoint, 405 wrong method, 408 too
slow to send, 413 body too large, 415 not JSON or binary tensors, 431 headers too large, 503 full
or not ready (with Retry-After), 504 timed out in the queue. A failure nobody expected is logged and answered 500, never left hanging.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from modelscale.config import DeploymentSpec, ModelSpec
from modelscale.errors import InvalidInput
from modelscale.model.artifact import ModelArtifact
from modelscale.serve.auth import Authenticator
from modelscale.serve.backend import Backend
from modelscale.serve.features import Feature, FeatureFactory, Route, load_features
from modelscale.serve.metrics import CONTENT_TYPE, Metrics, MetricsRecorder
from modelscale.serve.offload import BodyBudget, Decoder
from modelscale.serve.pipeline import (
    Endpoint,
    Exchange,
    Pipeline,
    StageContext,
    StageFactory,
    assemble,
)
from modelscale.serve.protocol import (
    EXTENSIONS,
    ApiError,
    request_id_problem,
    server_version,
)
from modelscale.serve.records import DEFAULT_CAPACITY, Recorder, RecordQueue
from modelscale.serve.registry import ModelRegistry
from modelscale.serve.stages import ClientGone, builtin_stages

__all__ = ["BackendFactory", "Front", "FrontState", "build_front", "parse_target"]

log = logging.getLogger("modelscale.serve")

BackendFactory = Callable[[str, str, ModelArtifact, ModelSpec], Backend]
"""Makes the backend of one model version: (model name, version label, artifact, its spec)."""

_JSON = (b"content-type", b"application/json")
_INTERNAL = b'{"error":"internal server error; see the server log"}'
_GET: tuple[str, ...] = ("GET", "HEAD")
_POST: tuple[str, ...] = ("POST",)
_FIXED = {
    "/v2": Endpoint.SERVER_METADATA,
    "/v2/health/live": Endpoint.LIVE,
    "/v2/health/ready": Endpoint.READY,
    "/metrics": Endpoint.METRICS,
}
_WANTED = {
    b"authorization",
    b"content-length",
    b"content-type",
    b"x-request-id",
    b"inference-header-content-length",
}


def parse_target(
    method: str, path: str, tails: Collection[str] = ()
) -> tuple[Endpoint, str | None, str | None]:
    """(endpoint, model, version) of a request; NOT_FOUND / NOT_ALLOWED for anything else.

    Model routes are ``/v2/models/{name}[/versions/{v}][/ready|/infer]`` with each parameter one
    non-empty path segment, and ``.../{tail}`` for the ``tails`` features answer (FEATURE; their
    stage checks the method).
    """
    fixed = _FIXED.get(path)
    if fixed is not None:
        return (fixed if method in _GET else Endpoint.NOT_ALLOWED), None, None
    if not path.startswith("/v2/models/"):
        return Endpoint.NOT_FOUND, None, None
    parts = path[len("/v2/models/") :].split("/")
    name, version = parts[0], None
    rest = parts[1:]
    if len(rest) >= 2 and rest[0] == "versions":
        version, rest = rest[1], rest[2:]
        if not version:
            return Endpoint.NOT_FOUND, None, None
    if not name or len(rest) > 1:
        return Endpoint.NOT_FOUND, None, None
    tail = rest[0] if rest else None
    if tail is None:
        endpoint, allowed = Endpoint.MODEL_METADATA, _GET
    elif tail == "ready":
        endpoint, allowed = Endpoint.MODEL_READY, _GET
    elif tail == "infer":
        endpoint, allowed = Endpoint.INFER, _POST
    elif tail in tails:
        return Endpoint.FEATURE, name, version
    else:
        return Endpoint.NOT_FOUND, None, None
    if method not in allowed:
        return Endpoint.NOT_ALLOWED, name, version
    return endpoint, name, version


@dataclass
class FrontState:
    """What the stages share: the models, metrics, limits, and whether the server is draining."""

    registry: ModelRegistry
    metrics: Metrics
    max_body_bytes: int
    server_metadata: bytes
    body_budget: BodyBudget
    decoder: Decoder
    metrics_type: bytes = CONTENT_TYPE.encode()
    draining: bool = False


class Front:
    """The ASGI app: classify, run the pipeline, answer, record."""

    def __init__(
        self,
        state: FrontState,
        pipeline: Pipeline,
        *,
        manage_registry: bool = False,
        routes: dict[str, Route] | None = None,
        model_routes: dict[str, Route] | None = None,
        features: Sequence[Feature] = (),
    ) -> None:
        self.state = state
        self.pipeline = pipeline
        self.routes = routes or {}
        """Features' routes by path."""
        self.model_routes = model_routes or {}
        """Features' model routes by tail."""
        self._tails = frozenset(self.model_routes)
        self.features = tuple(features)
        self.manage_registry = manage_registry
        """Start and stop the replicas with the ASGI lifespan (a test client, a Ray ingress);
        ``run_server`` manages them itself so that the server is live while replicas load."""

    @property
    def registry(self) -> ModelRegistry:
        """The served model versions."""
        return self.state.registry

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        """Serve one ASGI connection scope."""
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)
        else:  # websockets: not part of the protocol
            await send({"type": "websocket.close", "code": 1003})

    async def _http(self, scope: Any, receive: Any, send: Any) -> None:
        path = scope["path"]
        root = scope.get("root_path")
        if root and path.startswith(root):  # served under a prefix (a Ray route prefix, a proxy)
            path = path[len(root) :] or "/"
        method = scope["method"]
        endpoint, model, version = parse_target(method, path, self._tails)
        if endpoint is Endpoint.NOT_FOUND and path in self.routes:
            # The route's stage answers a wrong method 405 (a public page without the key).
            endpoint = Endpoint.PAGE if self.routes[path].public else Endpoint.FEATURE
        ex = Exchange(scope, receive, endpoint, path=path, model=model, version=version)
        wanted = ex.headers
        for key, value in scope["headers"]:
            # The first of repeated headers counts, as with Starlette's Headers.get().
            if key in _WANTED and key not in wanted:
                wanted[key] = value
        bad_id = None
        if b"x-request-id" in wanted:
            request_id = wanted[b"x-request-id"].decode("latin-1")
            bad_id = request_id_problem(request_id)
            if bad_id is None:
                ex.request_id = request_id
        ex.content_length = wanted.get(b"content-length")
        if b"inference-header-content-length" in wanted:
            ex.header_length = wanted[b"inference-header-content-length"].decode("latin-1")
        ex.content_type = wanted.get(b"content-type")
        wall = time.time()
        try:
            if bad_id is not None:
                ex.fail(ApiError(400, f"X-Request-Id {bad_id}.", field="X-Request-Id"))
            else:
                await self.pipeline.run(ex)
        except ClientGone:
            await _send(send, 400, b"", [], head=False)  # nobody is listening; nothing to count
            return
        except Exception:
            log.exception("unexpected failure serving %s", path)
            ex.answer(500, _INTERNAL, [_JSON])
        if not ex.status:
            log.error("no stage answered %s %s", method, path)
            ex.answer(500, _INTERNAL, [_JSON])
        headers = ex.response_headers
        if ex.more_headers:
            headers.extend(ex.more_headers)
        if ex.request_id is not None:
            headers.append((b"x-request-id", ex.request_id.encode("latin-1")))
        await _send(send, ex.status, ex.content, headers, head=method == "HEAD")
        if endpoint is Endpoint.INFER:
            self.pipeline.record(ex, wall)

    async def _lifespan(self, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    if self.manage_registry:
                        await self.state.registry.start()
                except Exception as exc:
                    # As Starlette does: report it, then raise so that the server (or a test
                    # client) stops with the cause instead of waiting for a shutdown message.
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    raise
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self.manage_registry:
                    await self.stop()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def stop(self) -> None:
        """Stop the replicas and drain the recorders."""
        try:
            await self.state.registry.stop()
        finally:
            self.state.decoder.close()
            self.pipeline.close()
            for feature in self.features:
                if feature.close is not None:
                    try:
                        feature.close()
                    except Exception:
                        log.exception("feature %s failed to close", feature.name)


async def _send(
    send: Any, status: int, body: bytes, headers: list[tuple[bytes, bytes]], *, head: bool
) -> None:
    headers.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": b"" if head else body})


def build_front(
    spec: DeploymentSpec,
    *,
    backends: BackendFactory | None = None,
    api_key: str | None = None,
    auth: Authenticator | None = None,
    metrics: Metrics | None = None,
    stages: Sequence[StageFactory] = (),
    recorders: Sequence[Recorder] = (),
    manage_registry: bool = False,
    extensions: Sequence[str] = EXTENSIONS,
    features: Sequence[FeatureFactory] | None = None,
) -> Front:
    """The front for ``spec``: its registry (one backend per model version), pipeline and metrics.

    Args:
        spec: The deployment.
        backends: Makes each version's backend (default: local replica processes).
        api_key: Require ``Authorization: Bearer <key>`` on every route but the health probes
            and public pages (this key is allowed every scope).
        auth: The keys to require instead (``modelscale.serve.auth.load_authenticator``): the
            single key, scoped keys, or both.
        metrics: The Prometheus instruments (default: new ones with the spec's buckets).
        stages: Features' stages, each placed before or after a named stage.
        recorders: Features' recorders, after the metrics recorder (a recorder's ``capacity``
            attribute, if it has one, bounds its queue; default 65,536 records).
        manage_registry: Start and stop the replicas with the ASGI lifespan.
        extensions: What GET /v2 lists.
        features: Builds the features' stages, recorders and routes (default: every feature
            installed packages declare, ``modelscale.serve.features.load_features``).
    """
    if api_key is not None and auth is not None:
        raise InvalidInput(
            "Give build_front an api_key or an auth, not both (an Authenticator takes both "
            "kinds of key).",
            field="auth",
        )
    metrics = metrics or Metrics(latency_buckets_ms=spec.server.latency_buckets_ms)
    registry = ModelRegistry(spec, metrics=metrics, backends=backends)
    state = FrontState(
        registry=registry,
        metrics=metrics,
        max_body_bytes=int(spec.server.max_body_mb * 2**20),
        body_budget=BodyBudget(int(spec.server.body_memory_mb * 2**20)),
        decoder=Decoder(),
        server_metadata=orjson.dumps(
            {"name": "modelscale", "version": server_version(), "extensions": list(extensions)}
        ),
    )
    context = StageContext(spec=spec, registry=registry, metrics=metrics)
    built = [
        f
        for f in (
            factory(context) for factory in (load_features() if features is None else features)
        )
        if f is not None
    ]
    routes: dict[str, Route] = {}
    for feature in built:
        for path, route in feature.routes.items():
            if path in routes or parse_target("GET", path)[0] is not Endpoint.NOT_FOUND:
                raise InvalidInput(
                    f"feature {feature.name!r} adds the route {path}, which is taken.",
                    field="features",
                )
            routes[path] = route
    model_routes: dict[str, Route] = {}
    for feature in built:
        for tail, route in feature.model_routes.items():
            taken = tail in model_routes or tail in ("ready", "infer", "versions")
            if taken or not tail or "/" in tail:
                raise InvalidInput(
                    f"feature {feature.name!r} adds the model route .../{tail}, which is "
                    "taken or not one path segment.",
                    field="features",
                )
            model_routes[tail] = route
    every = [*recorders, *(r for f in built for r in f.recorders)]
    queues = [RecordQueue(MetricsRecorder(metrics))] + [
        RecordQueue(r, capacity=getattr(r, "capacity", DEFAULT_CAPACITY)) for r in every
    ]
    metrics.watch_records(queues)
    for q in queues:
        q.start()  # ticking recorders work on a clock, with requests or without
    extra = [*stages, *(s for f in built for s in f.stages)]
    ordered = assemble(
        builtin_stages(
            state,
            api_key=auth if auth is not None else api_key,
            routes=routes,
            model_routes=model_routes,
        ),
        extra,
        context=context,
    )
    return Front(
        state,
        Pipeline(ordered, queues),
        manage_registry=manage_registry,
        routes=routes,
        model_routes=model_routes,
        features=built,
    )
