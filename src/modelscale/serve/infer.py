"""``POST /v2/models/{name}[/versions/{v}]/infer`` as a plain ASGI app, the server's hot path.

Every request the server is loaded with comes here, so the handler talks ASGI itself: it reads the
body from ``receive`` and answers with two ``send`` calls, without Starlette's router, middleware
stack and Request/Response objects (their cost per request is a sizeable share of the front's CPU,
which the replicas share cores with). ``InferFastPath`` hands it inference requests straight from
the server; everything else, and anything it does not recognise, goes to the Starlette app, where
the same handler is also routed (so a mounted app and 405s behave as on any other route).
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

import orjson
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Receive, Scope, Send

from modelscale.serve.codec import decode_request, encode_response
from modelscale.serve.protocol import ApiError, body_too_large

if TYPE_CHECKING:
    from modelscale.serve.app import AppState

__all__ = ["InferEndpoint", "InferFastPath", "infer_target"]

log = logging.getLogger("modelscale.serve")

_LIMIT = "server.max_body_mb"
_PREFIX = "/v2/models/"
_SUFFIX = "/infer"
_JSON = (b"content-type", b"application/json")
_INTERNAL = b'{"error":"internal server error; see the server log"}'

RawHeaders = list[tuple[bytes, bytes]]


def infer_target(path: str) -> tuple[str, str | None] | None:
    """``(name, version)`` of an inference path, or None for any other path.

    Matches exactly what the Starlette routes ``/v2/models/{name}/infer`` and
    ``/v2/models/{name}/versions/{version}/infer`` match: each parameter is one non-empty segment.
    """
    if not (path.startswith(_PREFIX) and path.endswith(_SUFFIX)):
        return None
    parts = path[len(_PREFIX) : -len(_SUFFIX)].split("/")
    if len(parts) == 1:
        return (parts[0], None) if parts[0] else None
    if len(parts) == 3 and parts[1] == "versions" and parts[0] and parts[2]:
        return parts[0], parts[2]
    return None


async def _send(send: Send, status: int, body: bytes, headers: RawHeaders) -> None:
    headers.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _error_headers(exc: ApiError, request_id: str | None) -> RawHeaders:
    out = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in exc.headers.items()]
    if request_id is not None:
        out.append((b"x-request-id", request_id.encode("latin-1")))
    if not any(k == b"content-type" for k, _ in out):
        out.append(_JSON)
    return out


class InferEndpoint:
    """The inference handler: route, read, decode, queue, encode, count."""

    def __init__(self, state: AppState) -> None:
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve a request routed by Starlette (path parameters in the scope)."""
        params = scope["path_params"]
        await self.serve(scope, receive, send, params["name"], params.get("version"))

    async def _read_body(self, receive: Receive, declared: bytes | None) -> bytes:
        limit = self.state.max_body_bytes
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise body_too_large(limit, _LIMIT, size=int(declared), who="this server")
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            kind = message["type"]
            if kind == "http.request":
                chunk = message.get("body", b"")
                more = message.get("more_body", False)
                if chunk:
                    size += len(chunk)
                    if size > limit:
                        raise body_too_large(limit, _LIMIT, who="this server")
                    chunks.append(chunk)
            elif kind == "http.disconnect":
                raise ClientDisconnect()
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    async def serve(
        self, scope: Scope, receive: Receive, send: Send, name: str, version: str | None
    ) -> None:
        """Answer one inference request for ``name`` (and ``version``)."""
        status, body, headers = await self._answer(scope, receive, name, version)
        await _send(send, status, body, headers)

    async def _answer(
        self, scope: Scope, receive: Receive, name: str, version: str | None
    ) -> tuple[int, bytes, RawHeaders]:
        t0 = time.perf_counter()
        state = self.state
        metrics = state.metrics
        request_id: str | None = None
        declared: bytes | None = None
        header_length: str | None = None
        for key, value in scope["headers"]:
            # The first of repeated headers counts, as with Starlette's Headers.get().
            if key == b"content-length":
                if declared is None:
                    declared = value
            elif key == b"x-request-id":
                if request_id is None:
                    request_id = value.decode("latin-1")
            elif key == b"inference-header-content-length" and header_length is None:
                header_length = value.decode("latin-1")
        labels = ("_unknown", "")
        queue_s: float | None = None
        try:
            try:
                rt = state.registry.route(name, version)
                labels = (rt.name, rt.version)
                body = await self._read_body(receive, declared)
                decoded = decode_request(body, header_length, rt.contract)
                if decoded.id is not None:
                    request_id = decoded.id
                reply = await rt.submit(decoded)
                queue_s = reply.queue_s
                content, content_headers = encode_response(
                    model_name=rt.name,
                    model_version=rt.version,
                    request_id=decoded.id,
                    outputs=reply.outputs,
                    binary=decoded.binary_outputs,
                )
                headers = [
                    (k.encode("latin-1"), v.encode("latin-1")) for k, v in content_headers.items()
                ]
                if request_id is not None:
                    headers.append((b"x-request-id", request_id.encode("latin-1")))
            except ApiError as exc:
                headers = _error_headers(exc, request_id)
                metrics.observe_request(*labels, exc.status, time.perf_counter() - t0, queue_s)
                return exc.status, orjson.dumps(exc.body()), headers
        except ClientDisconnect:
            return 400, b"", []  # nobody is listening; nothing to count
        except Exception:
            log.exception("unexpected failure serving %s", scope["path"])
            metrics.observe_request(*labels, 500, time.perf_counter() - t0, queue_s)
            return 500, _INTERNAL, [_JSON]
        metrics.observe_request(*labels, 200, time.perf_counter() - t0, queue_s)
        return 200, content, headers


class InferFastPath:
    """Hand inference requests to ``endpoint`` directly and everything else to ``app``."""

    def __init__(self, app: ASGIApp, endpoint: InferEndpoint) -> None:
        self.app = app
        self.endpoint = endpoint

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Route one ASGI connection."""
        # Under a root_path, Starlette's own routing (which strips it) takes the request.
        if scope["type"] == "http" and scope["method"] == "POST" and not scope.get("root_path"):
            target = infer_target(scope["path"])
            if target is not None:
                await self.endpoint.serve(scope, receive, send, *target)
                return
        await self.app(scope, receive, send)
