"""A model served by Ray Serve: the application that ``plan --emit ray`` configures.

``modelscale serve`` runs replicas as processes on one machine. Once a model needs more machines,
Ray Serve places the replicas across a cluster, and this module is what each replica runs::

    $ modelscale plan model.onnx --rps 2000 --p99-ms 50 --emit ray --out plan/
    $ serve run plan/ray_serve.yaml          # or: serve deploy plan/ray_serve.yaml

``build_app`` is the config's ``import_path``. Each Ray replica loads the model into its own
ONNX Runtime session with ``threads`` intra-op threads (spinning off: replicas share cores) and
batches requests with Ray Serve's ``@serve.batch``, counting rows, not requests. The HTTP side speaks
the same Open Inference Protocol (V2) as ``modelscale serve``, decoded and encoded by the same codec,
so V2 clients (tritonclient, KServe clients, ``modelscale load``, ``plan --validate URL``) work
against either backend unchanged. Batch settings and threads can be changed on a running
application through the deployment's ``user_config``.

What Ray does here instead of modelscale: routing between replicas, autoscaling, restarts, metrics
(Ray's own ``ray_serve_*`` series) and backpressure (``max_ongoing_requests`` and
``max_queued_requests``).

The model path must exist on every node that runs a replica (a shared volume, or the same image).
Needs the ``ray`` extra: ``pip install 'modelscale[ray]'``.
"""

from __future__ import annotations

import asyncio
import logging
import math
import pathlib
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import orjson

from modelscale.errors import InvalidInput, ModelscaleError
from modelscale.serve.batcher import batch_replies, stack_inputs
from modelscale.serve.codec import HEADER_LENGTH, DecodedRequest, decode_request, encode_response
from modelscale.serve.contract import ModelContract
from modelscale.serve.protocol import ApiError, body_too_large, server_version
from modelscale.serve.replica import run_batch, warm_up

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response

__all__ = ["DEFAULTS", "ModelServer", "build_app", "check_user_config"]

DEFAULTS: Mapping[str, Any] = {
    "max_batch_size": 8,
    "batch_wait_timeout_s": 0.005,
    "intra_op_threads": 1,
}
"""The ``user_config`` keys a running application takes, with their defaults."""

log = logging.getLogger("modelscale.serve.ray")

_LIMIT = "args.max_body_mb"

_ARGS = ("model_path", "name", "version", "threads", "max_body_mb")
_EXTENSIONS = ("binary_tensor_data", "request_timeout")


def _where(key: str) -> str:
    return f"Ray application args.{key}"


def _integer_at_least_1(value: Any, label: str, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidInput(f"{label} must be an integer >= 1; got {value!r}.", field=field)
    return value


def check_user_config(config: Mapping[str, Any] | None) -> dict[str, Any]:
    """``DEFAULTS`` updated with ``config``; InvalidInput naming any unknown key or bad value."""
    if config is None:
        return dict(DEFAULTS)
    if not isinstance(config, Mapping):
        raise InvalidInput(
            f"user_config must be a mapping of {', '.join(DEFAULTS)}; got {type(config).__name__}.",
            field="user_config",
        )
    unknown = sorted(set(config) - set(DEFAULTS))
    if unknown:
        raise InvalidInput(
            f"user_config.{unknown[0]} is not a setting of this application; it takes "
            f"{', '.join(DEFAULTS)}.",
            field=f"user_config.{unknown[0]}",
        )
    out = {**DEFAULTS, **config}
    for key in ("max_batch_size", "intra_op_threads"):
        _integer_at_least_1(out[key], f"user_config.{key}", f"user_config.{key}")
    wait = out["batch_wait_timeout_s"]
    if (
        isinstance(wait, bool)
        or not isinstance(wait, int | float)
        or not math.isfinite(wait)
        or wait < 0
    ):
        raise InvalidInput(
            f"user_config.batch_wait_timeout_s must be a number of seconds >= 0; got {wait!r}.",
            field="user_config.batch_wait_timeout_s",
        )
    return out


def _check_args(args: Mapping[str, Any]) -> dict[str, Any]:
    if not isinstance(args, Mapping):
        raise InvalidInput(
            f"the Ray application's args must be a mapping with model_path; got "
            f"{type(args).__name__}.",
            field="args",
        )
    unknown = sorted(set(args) - set(_ARGS))
    if unknown:
        raise InvalidInput(
            f"{_where(unknown[0])} is not an argument of this application; it takes "
            f"{', '.join(_ARGS)}.",
            field=f"args.{unknown[0]}",
        )
    raw_path = args.get("model_path")
    if not isinstance(raw_path, str) or not raw_path:
        raise InvalidInput(
            f"{_where('model_path')} must be the path of an ONNX model on every node; got "
            f"{raw_path!r}.",
            field="args.model_path",
        )
    path = pathlib.Path(raw_path).expanduser()
    if not path.is_file():
        raise InvalidInput(
            f"{_where('model_path')}: no file at {str(path)!r} on this node; the model must be "
            "at the same path on every node that runs a replica.",
            field="args.model_path",
        )
    name = args.get("name") or path.stem
    version = str(args.get("version", "1"))
    for key, value in (("name", name), ("version", version)):
        if not isinstance(value, str) or not value or "/" in value:
            raise InvalidInput(
                f"{_where(key)} must be a non-empty string without '/'; got {value!r}.",
                field=f"args.{key}",
            )
    threads = _integer_at_least_1(args.get("threads", 1), _where("threads"), "args.threads")
    body_mb = args.get("max_body_mb", 64.0)
    if isinstance(body_mb, bool) or not isinstance(body_mb, int | float) or not body_mb > 0:
        raise InvalidInput(
            f"{_where('max_body_mb')} must be a number > 0; got {body_mb!r}.",
            field="args.max_body_mb",
        )
    return {
        "model_path": str(path),
        "name": name,
        "version": version,
        "threads": threads,
        "max_body_mb": float(body_mb),
    }


def _json(obj: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    from starlette.responses import Response

    return Response(orjson.dumps(obj), status, dict(headers or {}), media_type="application/json")


def _error(exc: ApiError) -> Response:
    return _json(exc.body(), exc.status, exc.headers)


class ModelServer:
    """One replica: the model in an ONNX Runtime session, behind V2 HTTP routes.

    Plain Python, so that it can be built and called without a Ray cluster; ``build_app`` wraps
    it in a Ray Serve deployment whose ``_run_one`` is batched by ``@serve.batch``.
    """

    def __init__(
        self,
        model_path: str,
        name: str | None = None,
        version: str = "1",
        threads: int = 1,
        max_body_mb: float = 64.0,
    ) -> None:
        from modelscale.model.artifact import ModelArtifact

        args = _check_args(
            {
                "model_path": model_path,
                "name": name,
                "version": version,
                "threads": threads,
                "max_body_mb": max_body_mb,
            }
        )
        self.artifact = ModelArtifact.load(args["model_path"], name=args["name"])
        self.name, self.version = args["name"], args["version"]
        self.max_body_bytes = int(args["max_body_mb"] * 2**20)
        self.settings = check_user_config({"intra_op_threads": args["threads"]})
        # One batch at a time per replica, off the event loop so that requests keep arriving.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="modelscale-infer")
        self.engine = self._engine(args["threads"])
        self.contract = self._contract()
        self._server_meta = orjson.dumps(
            {"name": "modelscale", "version": server_version(), "extensions": list(_EXTENSIONS)}
        )

    def _engine(self, threads: int) -> Any:
        from modelscale.runtime.engine import Engine, EngineOptions

        engine = Engine(
            self.artifact, EngineOptions(intra_op_threads=threads, allow_spinning=False)
        )
        warm_up(engine)
        return engine

    def _contract(self) -> ModelContract:
        s = self.settings
        return ModelContract.from_artifact(
            self.artifact,
            name=self.name,
            version=self.version,
            max_batch=s["max_batch_size"],
            serving={
                "threads": s["intra_op_threads"],
                "max_wait_ms": s["batch_wait_timeout_s"] * 1000.0,
            },
        )

    def reconfigure(self, user_config: Mapping[str, Any] | None) -> None:
        """Apply a deployment's ``user_config`` (Ray calls this at start and on every update)."""
        new = check_user_config(user_config)
        if new["intra_op_threads"] != self.settings["intra_op_threads"]:
            self.engine = self._engine(new["intra_op_threads"])
        self.settings = new
        self.contract = self._contract()

    # -- inference ------------------------------------------------------------------------------
    async def infer_rows(self, requests: list[tuple[DecodedRequest, float]]) -> list[Any]:
        """Run decoded requests, stacking those of equal shapes; a reply or an ApiError each."""
        results: list[Any] = [None] * len(requests)
        groups: dict[tuple[Any, ...], list[int]] = {}
        now = time.monotonic()
        for i, (req, arrived) in enumerate(requests):
            if req.timeout_s is not None and now - arrived > req.timeout_s:
                results[i] = ApiError(
                    504,
                    f"the request waited {now - arrived:.3f} s for a batch, past its timeout of "
                    f"{req.timeout_s:.3f} s; it was not run.",
                )
                continue
            groups.setdefault((req.key, req.outputs), []).append(i)
        loop = asyncio.get_running_loop()
        for (_, outputs), idx in groups.items():
            batch = [requests[i][0] for i in idx]
            outcome = await loop.run_in_executor(
                self._executor,
                run_batch,
                self.engine,
                stack_inputs(batch),
                [r.rows for r in batch],
                outputs,
            )
            for i, reply in zip(idx, batch_replies(outcome, outputs, batch), strict=True):
                results[i] = reply
        return results

    async def _run_one(self, item: tuple[DecodedRequest, float]) -> Any:
        """One request's reply (batched with others' by the Ray deployment)."""
        return (await self.infer_rows([item]))[0]

    async def infer(self, body: bytes, header_length: str | None) -> tuple[bytes, dict[str, str]]:
        """Decode, run (batched with other requests) and encode one V2 inference request."""
        req = decode_request(body, header_length, self.contract)
        reply = await self._run_one((req, time.monotonic()))
        if isinstance(reply, ApiError):
            raise reply
        return encode_response(
            model_name=self.name,
            model_version=self.version,
            request_id=req.id,
            outputs=reply,
            binary=req.binary_outputs,
        )

    # -- HTTP -----------------------------------------------------------------------------------
    async def __call__(self, request: Request) -> Response:
        """Route a V2 request (Ray's proxy hands over every path under the route prefix)."""
        from starlette.responses import Response

        path = request.url.path
        root = request.scope.get("root_path") or ""
        if root and path.startswith(root):  # served under a route prefix other than "/"
            path = path[len(root) :]
        path = path.rstrip("/") or "/"
        method = request.method
        try:
            if path == "/v2/health/live" or path == "/v2/health/ready":
                self._allow(method, "GET", path)
                key = "live" if path.endswith("live") else "ready"
                return _json({key: True})
            if path == "/v2":
                self._allow(method, "GET", path)
                return Response(self._server_meta, media_type="application/json")
            rest = self._model_path(path)
            if rest == "":
                self._allow(method, "GET", path)
                return _json(self.contract.metadata(versions=(self.version,)))
            if rest == "/ready":
                self._allow(method, "GET", path)
                return _json({"name": self.name, "version": self.version, "ready": True})
            if rest == "/infer":
                self._allow(method, "POST", path)
                body = await self._body(request)
                content, headers = await self.infer(body, request.headers.get(HEADER_LENGTH))
                request_id = request.headers.get("x-request-id")
                if request_id is not None:
                    headers["x-request-id"] = request_id
                return Response(content, 200, headers)
            raise ApiError(404, f"no such endpoint {path}; the V2 endpoints are under /v2")
        except ApiError as exc:
            return _error(exc)
        except Exception:
            log.exception("unexpected failure serving %s", path)
            return _json({"error": "internal server error; see the replica's log"}, 500)

    @staticmethod
    def _allow(method: str, allowed: str, path: str) -> None:
        if method != allowed:
            raise ApiError(
                405, f"{method} is not allowed on {path}; use {allowed}", headers={"allow": allowed}
            )

    def _model_path(self, path: str) -> str | None:
        """What follows /v2/models/{name}[/versions/{v}] for this model; 404 for other models."""
        prefix = "/v2/models/"
        if not path.startswith(prefix):
            raise ApiError(404, f"no such endpoint {path}; the V2 endpoints are under /v2")
        name, _, rest = path[len(prefix) :].partition("/")
        if name != self.name:
            raise ApiError(
                404,
                f"unknown model {name!r}; this application serves {self.name!r}.",
                field="model",
            )
        rest = "/" + rest if rest else ""
        if rest.startswith("/versions/"):
            version, _, tail = rest[len("/versions/") :].partition("/")
            if version != self.version:
                raise ApiError(
                    404,
                    f"model {self.name!r} has no version {version!r}; it has {self.version!r}.",
                    field="version",
                )
            rest = "/" + tail if tail else ""
        return rest

    async def _body(self, request: Request) -> bytes:
        declared = request.headers.get("content-length")
        limit = self.max_body_bytes
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise body_too_large(limit, _LIMIT, size=int(declared), who="this application")
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise body_too_large(limit, _LIMIT, who="this application")
            chunks.append(chunk)
        return b"".join(chunks)


def _ray_serve() -> Any:
    try:
        from ray import serve
    except ImportError as exc:
        raise ModelscaleError(
            "Ray Serve is not installed: pip install 'modelscale[ray]' (ray[serve] >= 2.60)."
        ) from exc
    return serve


def _deployment() -> Any:
    """``ModelServer`` as a Ray Serve deployment with batched inference (made on first use)."""
    serve = _ray_serve()

    class RayModelServer(ModelServer):
        def __init__(self, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self._apply_batching()

        def reconfigure(self, user_config: Mapping[str, Any] | None) -> None:
            super().reconfigure(user_config)
            self._apply_batching()

        def _apply_batching(self) -> None:
            self._run_one.set_max_batch_size(self.settings["max_batch_size"])
            self._run_one.set_batch_wait_timeout_s(self.settings["batch_wait_timeout_s"])

        # Called with one request, run with a list of them. Rows, not requests, fill a batch:
        # a request of 4 rows takes 4 places.
        @serve.batch(
            max_batch_size=DEFAULTS["max_batch_size"],
            batch_wait_timeout_s=DEFAULTS["batch_wait_timeout_s"],
            batch_size_fn=lambda items: sum(req.rows for req, _ in items),
        )
        async def _run_one(self, items: list[tuple[DecodedRequest, float]]) -> list[Any]:
            return await self.infer_rows(items)

    return serve.deployment(name="Model")(RayModelServer)


def build_app(args: Mapping[str, Any]) -> Any:
    """The Ray Serve application for ``args`` (the ``import_path`` of an emitted Ray config).

    Args:
        args: ``model_path`` (required), ``name`` (default: the file's stem), ``version``
            (default "1"), ``threads`` (intra-op threads per replica, default 1) and
            ``max_body_mb`` (default 64). Replicas, CPUs and batching come from the config's
            deployment section (``num_replicas``/``autoscaling_config``, ``ray_actor_options``,
            ``user_config``).
    """
    checked = _check_args(args)
    return _deployment().bind(**checked)
