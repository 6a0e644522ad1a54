"""The built-in stages of the request pipeline, in the order they run.

auth       bearer API key, compared in constant time, with the scope the route needs (every
           route but the health probes and public pages)
decode     read the body (size-capped) and validate it against the model's contract
tokenize   text models only: strings to the token inputs the graph takes (``text``)
route      pick the version: the one named in the path, else by the versions' weights
dispatch   queue for a batch, wait for the replicas' outcome (503 shed, 504 timed out)
answer     encode the V2 reply (JSON or the binary tensor extension)
control    everything that is not inference: metadata, health, readiness, /metrics, 404/405
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, ClassVar

import orjson

from modelscale.serve.auth import Authenticator, key_id
from modelscale.serve.codec import decode_request, encode_response
from modelscale.serve.offload import OFFLOAD_BYTES, BodyHold
from modelscale.serve.pipeline import (
    ALL_ENDPOINTS,
    CONTROL_ENDPOINTS,
    FEATURE_ENDPOINTS,
    Endpoint,
    Exchange,
    Stage,
)
from modelscale.serve.protocol import ApiError, body_too_large
from modelscale.serve.text import TokenizeStage

if TYPE_CHECKING:
    from modelscale.serve.features import Route
    from modelscale.serve.front import FrontState
    from modelscale.serve.registry import ModelRegistry

__all__ = [
    "ENDPOINT_SCOPES",
    "AnswerStage",
    "AuthStage",
    "ClientGone",
    "ControlStage",
    "DecodeStage",
    "DispatchStage",
    "FeatureRoutesStage",
    "RouteStage",
    "builtin_stages",
    "check_content_type",
    "key_id",
    "read_route_body",
]

_JSON = (b"content-type", b"application/json")
_LIMIT = "server.max_body_mb"
_NOT_READY = 400
"""The V2 protocol answers a health or readiness check that is false with a 4xx (Triton: 400)."""
_UNAUTHORISED = (
    b'{"error":"missing or wrong API key; send the header Authorization: Bearer <key>",'
    b'"field":"Authorization"}'
)
"""One answer for every key that is not an active key, so that it tells nobody which it was."""
_CHALLENGE = (b"www-authenticate", b'Bearer realm="modelscale"')

ENDPOINT_SCOPES: Mapping[Endpoint, str | None] = {
    Endpoint.INFER: "infer",
    Endpoint.SERVER_METADATA: "infer",
    Endpoint.MODEL_METADATA: "infer",
    Endpoint.MODEL_READY: "infer",
    Endpoint.METRICS: "logs:read",
    # Any active key learns that a path does not exist or takes another method.
    Endpoint.NOT_FOUND: None,
    Endpoint.NOT_ALLOWED: None,
}
"""The scope each built-in endpoint needs (None: any active key); a feature's route says its own
(``Route.scope``), and the health probes and public pages need no key."""


_MEDIA_TYPES = frozenset(
    {
        b"application/json",
        b"application/octet-stream",
        # What curl -d sends unless told otherwise, as in the protocol's own examples.
        b"application/x-www-form-urlencoded",
    }
)


def check_content_type(value: bytes) -> None:
    """415 unless ``value`` is JSON or the binary extension's type (parameters are ignored)."""
    media = value.split(b";", 1)[0].strip().lower()
    if media in _MEDIA_TYPES or (media.startswith(b"application/") and media.endswith(b"+json")):
        return
    raise ApiError(
        415,
        f"Content-Type {value.decode('latin-1')[:100]!r} is not taken; send application/json, or "
        "application/octet-stream with Inference-Header-Content-Length (binary tensors).",
        field="Content-Type",
    )


class ClientGone(Exception):
    """The client disconnected before its request body arrived: nobody is listening."""


class AuthStage:
    """401 unless the request carries an active key, 403 unless the key has the route's scope.

    Open without a key: the health probes and public pages. Every other route needs a scope
    (``ENDPOINT_SCOPES``, a feature route's ``Route.scope``, ``admin`` where nothing says
    otherwise); ``admin`` has them all. The 401 is the same for a missing, malformed, unknown,
    revoked or wrong key; the 403 names the scope that is missing.
    """

    name: ClassVar[str] = "auth"
    endpoints: ClassVar[frozenset[Endpoint]] = ALL_ENDPOINTS - {
        Endpoint.LIVE,
        Endpoint.READY,
        Endpoint.PAGE,
    }

    def __init__(
        self,
        keys: Authenticator | str,
        *,
        routes: Mapping[str, Route] | None = None,
        model_routes: Mapping[str, Route] | None = None,
    ) -> None:
        self.keys = Authenticator(api_key=keys) if isinstance(keys, str) else keys
        self.routes = routes or {}
        self.model_routes = model_routes or {}

    def allowed(self, header: bytes | None) -> bool:
        """Whether an ``Authorization`` header value carries an active key."""
        return self.keys.identify(header) is not None

    def scope(self, ex: Exchange) -> str | None:
        """The scope ``ex``'s route needs (None: any active key)."""
        if ex.endpoint is not Endpoint.FEATURE:
            return ENDPOINT_SCOPES.get(ex.endpoint, "admin")
        route = self.routes.get(ex.path)
        if route is None:
            route = self.model_routes.get(ex.path.rsplit("/", 1)[-1])
        return route.scope_for(ex.method) if route is not None else "admin"

    async def __call__(self, ex: Exchange) -> None:
        """Let the request on (``ex.key_id`` set), or answer 401 or 403."""
        key = self.keys.identify(ex.headers.get(b"authorization"))
        if key is None:
            ex.answer(401, _UNAUTHORISED, [_JSON, _CHALLENGE])
            return
        ex.key_id = key.id
        scope = self.scope(ex)
        if scope is not None and not key.allows(scope):
            raise ApiError(
                403,
                f"the API key {key.id} may not {ex.method} {ex.path[:200]}: that needs the scope "
                f"{scope!r}, and the key has {', '.join(key.scopes)}. Use a key with {scope!r} "
                f"(modelscale keys create NAME --scope {scope}).",
                field="Authorization",
            )


class DecodeStage:
    """Find the model, read the body within the size cap, decode and validate it."""

    name: ClassVar[str] = "decode"
    endpoints: ClassVar[frozenset[Endpoint]] = frozenset({Endpoint.INFER})

    def __init__(self, state: FrontState) -> None:
        self.state = state

    async def _read_body(self, ex: Exchange, declared: int | None, hold: BodyHold) -> bytes:
        """The body; a large one (declared, or as it turns out) is covered by ``hold``."""
        limit = self.state.max_body_bytes
        if declared is not None and declared > limit:
            raise body_too_large(limit, _LIMIT, size=declared, who="this server")
        if declared is not None and declared > OFFLOAD_BYTES:
            hold.cover(declared)
        chunks: list[bytes] = []
        size = 0
        more = True
        receive = ex.receive
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
                    if size > OFFLOAD_BYTES:  # undeclared, or longer than declared
                        hold.cover(size)
                    chunks.append(chunk)
            elif kind == "http.disconnect":
                raise ClientGone()
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    async def __call__(self, ex: Exchange) -> None:
        """Set ``ex.entry``, ``ex.body``, ``ex.contract`` and ``ex.decoded``."""
        if ex.content_type is not None:
            check_content_type(ex.content_type)
        registry = self.state.registry
        assert ex.model is not None  # the front only sends inference paths here
        contract = registry.find(ex.model, ex.version).contract
        ex.entry, ex.contract = registry.models[ex.model], contract
        declared = ex.content_length
        size = int(declared) if declared is not None and declared.isdigit() else None
        with self.state.body_budget.hold() as hold:
            ex.body = await self._read_body(ex, size, hold)
            if len(ex.body) > OFFLOAD_BYTES:
                decoded = await self.state.decoder.decode(ex.body, ex.header_length, contract)
            else:  # held nothing: small bodies are parsed here, at once
                decoded = decode_request(ex.body, ex.header_length, contract)
        ex.decoded = decoded
        if decoded.id is not None:
            ex.request_id = decoded.id


class RouteStage:
    """Pick the version to run: the one in the path, else by the versions' weights."""

    name: ClassVar[str] = "route"
    endpoints: ClassVar[frozenset[Endpoint]] = frozenset({Endpoint.INFER})

    def __init__(self, state: FrontState) -> None:
        self.state = state

    async def __call__(self, ex: Exchange) -> None:
        """Set ``ex.runtime``; re-validate if that version's inputs differ from the decoded ones."""
        assert ex.model is not None and ex.body is not None  # the decode stage ran
        rt = self.state.registry.route(ex.model, ex.version)
        ex.runtime = rt
        contract = ex.contract
        if (
            contract is not None
            and rt.contract is not contract
            and rt.contract.input_key != contract.input_key
        ):
            ex.decoded = decode_request(ex.body, ex.header_length, rt.contract)
            ex.contract = rt.contract


class DispatchStage:
    """Queue the request for a batch and wait for its share of the batch's outcome."""

    name: ClassVar[str] = "dispatch"
    endpoints: ClassVar[frozenset[Endpoint]] = frozenset({Endpoint.INFER})

    async def __call__(self, ex: Exchange) -> None:
        """Set ``ex.reply`` (ApiError on shedding, timeouts and model errors)."""
        assert ex.runtime is not None and ex.decoded is not None  # route and decode ran
        ex.reply = await ex.runtime.submit(ex.decoded)


class AnswerStage:
    """Encode the V2 reply."""

    name: ClassVar[str] = "answer"
    endpoints: ClassVar[frozenset[Endpoint]] = frozenset({Endpoint.INFER})

    async def __call__(self, ex: Exchange) -> None:
        """Set the 200 answer with the outputs the client asked for."""
        rt, reply, req = ex.runtime, ex.reply, ex.decoded
        assert rt is not None and reply is not None and req is not None  # dispatch ran
        content, content_headers = encode_response(
            model_name=rt.name,
            model_version=rt.version,
            request_id=req.id,
            outputs=reply.outputs,
            binary=req.binary_outputs,
        )
        headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in content_headers.items()]
        ex.answer(200, content, headers)


class ControlStage:
    """Metadata, health, readiness and /metrics; 404 and 405 for what is not a route."""

    name: ClassVar[str] = "control"
    endpoints: ClassVar[frozenset[Endpoint]] = CONTROL_ENDPOINTS

    def __init__(self, state: FrontState) -> None:
        self.state = state

    def _json(self, ex: Exchange, obj: object, status: int = 200) -> None:
        ex.answer(status, orjson.dumps(obj), [_JSON])

    async def __call__(self, ex: Exchange) -> None:
        """Answer the request."""
        state, ep = self.state, ex.endpoint
        registry = state.registry
        if ep is Endpoint.LIVE:
            self._json(ex, {"live": True})
        elif ep is Endpoint.READY:
            ok = registry.ready and not state.draining
            self._json(ex, {"ready": ok}, 200 if ok else _NOT_READY)
        elif ep is Endpoint.SERVER_METADATA:
            ex.answer(200, state.server_metadata, [_JSON])
        elif ep is Endpoint.METRICS:
            ex.answer(200, state.metrics.render(), [(b"content-type", state.metrics_type)])
        elif ep is Endpoint.MODEL_METADATA:
            assert ex.model is not None  # the front parsed it
            rt = registry.find(ex.model, ex.version)
            self._json(ex, rt.contract.metadata(versions=registry.versions(ex.model)))
        elif ep is Endpoint.MODEL_READY:
            assert ex.model is not None  # the front parsed it
            rt = registry.find(ex.model, ex.version)
            ok = rt.ready and not state.draining
            self._json(
                ex,
                {"name": rt.name, "version": rt.version, "ready": ok},
                200 if ok else _NOT_READY,
            )
        elif ep is Endpoint.NOT_ALLOWED:
            allowed = "POST" if ex.path.endswith("/infer") else "GET"
            raise ApiError(
                405,
                f"{ex.method} is not allowed on {ex.path}; use {allowed}",
                headers={"allow": allowed},
            )
        else:
            hint = ""
            if ex.path.endswith("/") and len(ex.path) > 1:
                hint = f" (did you mean {ex.path.rstrip('/')}?)"
            raise ApiError(404, f"no such endpoint {ex.path}{hint}; the V2 endpoints are under /v2")


class FeatureRoutesStage:
    """Answer the routes that features add (``modelscale.serve.features``): read a POST's body
    within the route's cap, check the method, call the handler."""

    name: ClassVar[str] = "feature_routes"
    endpoints: ClassVar[frozenset[Endpoint]] = FEATURE_ENDPOINTS

    def __init__(
        self,
        routes: Mapping[str, Route],
        model_routes: Mapping[str, Route] | None = None,
        *,
        registry: ModelRegistry | None = None,
    ) -> None:
        self.routes = routes
        self.model_routes = model_routes or {}
        self.registry = registry

    async def __call__(self, ex: Exchange) -> None:
        """Call the route's handler (405 for a method it does not take)."""
        route = self.routes.get(ex.path)
        if route is None:
            route = self.model_routes[ex.path.rsplit("/", 1)[-1]]
            models = self.registry.models if self.registry is not None else {}
            if ex.model not in models:
                raise ApiError(404, f"no model named {ex.model!r}", field="model")
        allowed = set(route.methods) | ({"HEAD"} if "GET" in route.methods else set())
        if ex.method not in allowed:
            use = " or ".join(route.methods)
            raise ApiError(
                405,
                f"{ex.method} is not allowed on {ex.path}; use {use}",
                headers={"allow": ", ".join(route.methods)},
            )
        if ex.method == "POST":
            if ex.content_type is not None:
                check_content_type(ex.content_type)
            if ex.body is None:  # a stage before may have read (and rewritten) it
                ex.body = await read_route_body(ex, route.max_body_bytes)
        await route.handler(ex)


async def read_route_body(ex: Exchange, limit: int) -> bytes:
    """A feature route's body of at most ``limit`` bytes (413 beyond), read whole."""
    declared = ex.content_length
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise body_too_large(limit, "this route's limit", size=int(declared), who="it")
    chunks: list[bytes] = []
    size = 0
    more = True
    while more:
        message = await ex.receive()
        if message["type"] == "http.request":
            chunk = message.get("body", b"")
            more = message.get("more_body", False)
            size += len(chunk)
            if size > limit:
                raise body_too_large(limit, "this route's limit", who="it")
            chunks.append(chunk)
        elif message["type"] == "http.disconnect":
            raise ClientGone()
    return b"".join(chunks)


def builtin_stages(
    state: FrontState,
    *,
    api_key: Authenticator | str | None,
    routes: Mapping[str, Route] | None = None,
    model_routes: Mapping[str, Route] | None = None,
) -> list[Stage]:
    """The built-in stages in order (auth only with keys)."""
    stages: list[Stage] = []
    if api_key is not None:
        stages.append(AuthStage(api_key, routes=routes, model_routes=model_routes))
    stages += [
        DecodeStage(state),
        *([TokenizeStage(state.registry.texts)] if state.registry.texts else []),
        RouteStage(state),
        DispatchStage(),
        AnswerStage(),
        ControlStage(state),
        FeatureRoutesStage(routes or {}, model_routes, registry=state.registry),
    ]
    return stages
