"""The ASGI app: Open Inference Protocol (KServe V2) REST routes, validation, errors and /metrics.

    GET  /v2                                        server metadata
    GET  /v2/health/live | /v2/health/ready         probes (200, or 503 when not ready)
    GET  /v2/models/{name}[/versions/{v}]           model metadata (parameters.sha256 = version id)
    GET  /v2/models/{name}[/versions/{v}]/ready     200 when the version serves, else 503
    POST /v2/models/{name}[/versions/{v}]/infer     inference, JSON or binary tensors
    GET  /metrics                                   Prometheus text format

Errors are JSON ``{"error": message, "field": name}``: 400 bad input, 401 no key, 404 unknown model
or version, 413 body too large, 503 full or not ready (with Retry-After), 504 timed out in the queue.
A failure nobody expected is logged and answered 500, never left hanging.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp

from modelscale.serve.auth import ApiKeyAuth
from modelscale.serve.infer import InferEndpoint, InferFastPath
from modelscale.serve.metrics import CONTENT_TYPE, Metrics
from modelscale.serve.protocol import EXTENSIONS, ApiError, server_version
from modelscale.serve.registry import ModelRegistry

__all__ = ["AppState", "create_app"]

log = logging.getLogger("modelscale.serve")


@dataclass
class AppState:
    """What the routes share: the models, metrics, limits, and whether the server is draining."""

    registry: ModelRegistry
    metrics: Metrics
    max_body_bytes: int
    draining: bool = False


def _json(obj: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(obj), status, headers, media_type="application/json")


def _error(exc: ApiError) -> Response:
    return _json(exc.body(), exc.status, dict(exc.headers))


def create_app(
    state: AppState, *, api_key: str | None = None, manage_registry: bool = False
) -> ASGIApp:
    """The V2 app for ``state``; with ``api_key``, wrapped in bearer-key authentication.

    With ``manage_registry`` the app's lifespan starts and stops the replicas (for embedding the
    app in another ASGI server or a test client); ``run_server`` manages them itself so that the
    server is live while replicas load.
    """
    registry, metrics = state.registry, state.metrics
    server_meta = orjson.dumps(
        {"name": "modelscale", "version": server_version(), "extensions": list(EXTENSIONS)}
    )

    async def server_metadata(request: Request) -> Response:
        return Response(server_meta, media_type="application/json")

    async def live(request: Request) -> Response:
        return _json({"live": True})

    async def ready(request: Request) -> Response:
        ok = registry.ready and not state.draining
        return _json({"ready": ok}, 200 if ok else 503)

    def _target(request: Request) -> tuple[str, str | None]:
        return request.path_params["name"], request.path_params.get("version")

    async def model_metadata(request: Request) -> Response:
        try:
            name, ver = _target(request)
            rt = registry.find(name, ver)
        except ApiError as exc:
            return _error(exc)
        versions = tuple(registry.models[name].versions)
        return _json(rt.contract.metadata(versions=versions))

    async def model_ready(request: Request) -> Response:
        try:
            rt = registry.find(*_target(request))
        except ApiError as exc:
            return _error(exc)
        ok = rt.ready and not state.draining
        return _json({"name": rt.name, "version": rt.version, "ready": ok}, 200 if ok else 503)

    async def prometheus(request: Request) -> Response:
        return Response(metrics.render(), media_type=CONTENT_TYPE)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)  # registered for HTTPException only
        message = {
            404: f"no such endpoint {request.url.path}; the V2 endpoints are under /v2",
            405: f"{request.method} is not allowed on {request.url.path}",
        }.get(exc.status_code, str(exc.detail))
        return _json({"error": message}, exc.status_code, dict(exc.headers or {}))

    model = "/v2/models/{name}"
    versioned = "/v2/models/{name}/versions/{version}"
    infer = InferEndpoint(state)
    routes = [  # InferFastPath serves these first; routed here, they answer 405s and root paths
        Route(f"{model}/infer", infer, methods=["POST"]),
        Route(f"{versioned}/infer", infer, methods=["POST"]),
        Route("/v2", server_metadata, methods=["GET"]),
        Route("/v2/health/live", live, methods=["GET"]),
        Route("/v2/health/ready", ready, methods=["GET"]),
        Route("/metrics", prometheus, methods=["GET"]),
        Route(model, model_metadata, methods=["GET"]),
        Route(versioned, model_metadata, methods=["GET"]),
        Route(f"{model}/ready", model_ready, methods=["GET"]),
        Route(f"{versioned}/ready", model_ready, methods=["GET"]),
    ]

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await registry.start()
        try:
            yield
        finally:
            await registry.stop()

    app: ASGIApp = InferFastPath(
        Starlette(
            routes=routes,
            exception_handlers={HTTPException: http_error},
            lifespan=lifespan if manage_registry else None,
        ),
        infer,
    )
    if api_key is not None:
        app = ApiKeyAuth(app, key=api_key)
    return app
