"""Run the server in the foreground: uvicorn on one event loop with the batchers and replica pools.

Startup: read the API keys, bind the socket, start serving (live at once, ready once every
replica has loaded); HTTPS when deploy.yaml's ``server.tls_cert`` and ``server.tls_key`` are set.
SIGTERM/SIGINT: stop accepting, let in-flight requests finish (up to ``drain_timeout_s``), stop the
replicas, return normally so the process exits 0. A second SIGINT forces the exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import pathlib
import signal
import socket
import ssl
import threading
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any, ClassVar

import uvicorn

from modelscale.config import DeploymentSpec
from modelscale.errors import InvalidInput, ServerError
from modelscale.result import ModelVersionInfo, Result, RunLinks
from modelscale.serve.auth import Authenticator, load_authenticator
from modelscale.serve.connection import ConnectionLimits, limited_protocol
from modelscale.serve.front import BackendFactory, build_front
from modelscale.serve.heap import freeze_startup_heap
from modelscale.serve.metrics import Metrics

__all__ = ["ServeResult", "bind_socket", "check_tls", "run_server", "server_url"]

log = logging.getLogger("modelscale.serve")


@dataclass(frozen=True)
class ServeResult(Result):
    """What a server did between start and stop: requests by status, per model version."""

    kind: ClassVar[str] = "serve"

    url: str
    uptime_s: float
    requests: dict[str, dict[str, int]]
    """'model:version' -> HTTP status -> count."""
    replica_restarts: dict[str, int]
    model_versions: dict[str, str]
    """'model:version' -> sha256."""
    params: dict[str, Any]
    model_files: dict[str, str] = field(default_factory=dict)
    """'model:version' -> the ONNX file it served."""

    def links(self) -> RunLinks:
        """Filed under the first version served; every version served is registered."""
        models = []
        for key, sha in self.model_versions.items():
            path = self.model_files.get(key)
            size = None
            with contextlib.suppress(OSError):
                size = pathlib.Path(path).stat().st_size if path else None
            models.append(
                ModelVersionInfo(sha, name=key.rsplit(":", 1)[0], path=path, size_bytes=size)
            )
        first = next(iter(self.model_versions.values()), None)
        return RunLinks(first, models=tuple(models))


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening-ready TCP socket (port 0 picks a free one; read it from ``getsockname``)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise InvalidInput(
            f"Cannot listen on {host}:{port}: {exc.strerror}. Pick another --port (0 = any free).",
            field="port",
        ) from None
    sock.set_inheritable(True)
    return sock


class _Server(uvicorn.Server):
    """uvicorn without its signal re-raise: after a graceful drain the process exits 0."""

    on_exit: Callable[[], None] | None = None

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        loop = asyncio.get_running_loop()
        handled: tuple[signal.Signals, ...] = (signal.SIGINT, signal.SIGTERM)
        try:
            for sig in handled:
                loop.add_signal_handler(sig, self.handle_exit, sig, None)
        except (NotImplementedError, RuntimeError, ValueError):
            handled = ()  # not the main thread: the owner stops us through should_exit
        try:
            yield
        finally:
            for sig in handled:
                loop.remove_signal_handler(sig)

    def handle_exit(self, sig: int, frame: Any) -> None:
        if self.on_exit is not None:
            self.on_exit()
        super().handle_exit(sig, frame)
        self._captured_signals.clear()


def _counts(metrics: Metrics) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for family in metrics.requests.collect():
        for sample in family.samples:
            if sample.name.endswith("_total"):
                key = f"{sample.labels['model']}:{sample.labels['version']}"
                out.setdefault(key, {})[sample.labels["status"]] = int(sample.value)
    return out


def server_url(host: str, port: int, *, tls: bool = False) -> str:
    """The base URL of a server listening on ``host:port`` (https with TLS)."""
    scheme = "https" if tls else "http"
    return f"{scheme}://{host if ':' not in host else f'[{host}]'}:{port}"


def check_tls(spec: DeploymentSpec) -> None:
    """InvalidInput unless ``server.tls_cert`` and ``server.tls_key`` load as a pair (if set)."""
    cert, key = spec.server.tls_cert, spec.server.tls_key
    if cert is None or key is None:
        return
    try:
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(cert, key)
    except (ssl.SSLError, OSError) as exc:
        raise InvalidInput(
            f"server.tls_cert ({cert}) and server.tls_key ({key}) do not load as a certificate "
            f"and its private key: {exc}. Expected PEM files, the key unencrypted and matching "
            "the certificate.",
            field="server.tls_cert",
        ) from None


async def _serve(
    spec: DeploymentSpec,
    sock: socket.socket,
    on_ready: Callable[[str], None] | None,
    log_level: str,
    backends: BackendFactory | None,
    auth: Authenticator | None,
) -> ServeResult:
    front = build_front(spec, backends=backends, auth=auth)
    state, registry, metrics = front.state, front.registry, front.state.metrics
    limits = ConnectionLimits(
        max_head_bytes=int(spec.server.max_header_kb * 1024),
        idle_timeout_s=spec.server.idle_timeout_s,
        head_timeout_s=spec.server.header_timeout_s,
        body_timeout_s=spec.server.body_timeout_s,
    )
    config = uvicorn.Config(
        front,
        lifespan="off",
        http=limited_protocol(limits, on_reject=metrics.count_refused),
        loop="none",
        access_log=False,
        log_level=log_level,
        timeout_graceful_shutdown=int(max(1, round(spec.server.drain_timeout_s))),
        timeout_keep_alive=max(1, round(spec.server.idle_timeout_s)),
        ssl_certfile=str(spec.server.tls_cert) if spec.server.tls_cert is not None else None,
        ssl_keyfile=str(spec.server.tls_key) if spec.server.tls_key is not None else None,
    )
    server = _Server(config)

    def draining() -> None:
        state.draining = True
        for rt in registry.runtimes():
            rt.backend.drain()

    server.on_exit = draining
    host, port = sock.getsockname()[:2]
    url = server_url(host, port, tls=spec.server.tls_cert is not None)
    started = time.monotonic()
    failure: list[BaseException] = []

    async def load() -> None:
        try:
            await registry.start()
        except BaseException as exc:
            failure.append(exc)
            server.should_exit = True
            return
        # Every replica has loaded: what the front holds now lives as long as it does. Not when
        # the server runs on a thread of another program (a test, an embedding application):
        # freezing would keep that program's objects from the collector too.
        if threading.current_thread() is threading.main_thread():
            freeze_startup_heap()
        if on_ready is not None:
            on_ready(url)

    loader = asyncio.get_running_loop().create_task(load())
    try:
        await server.serve(sockets=[sock])
    finally:
        if not loader.done():
            loader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await loader
        await front.stop()
    if failure:
        exc = failure[0]
        if isinstance(exc, ServerError | InvalidInput):
            raise exc
        raise ServerError(f"the server failed to start: {exc}") from exc
    return ServeResult(
        url=url,
        uptime_s=time.monotonic() - started,
        requests=_counts(metrics),
        replica_restarts={
            f"{rt.name}:{rt.version}": rt.backend.health().restarts for rt in registry.runtimes()
        },
        model_versions={
            f"{rt.name}:{rt.version}": rt.artifact.sha256 for rt in registry.runtimes()
        },
        model_files={
            f"{rt.name}:{rt.version}": str(rt.artifact.path) for rt in registry.runtimes()
        },
        params=spec.model_dump(mode="json"),
    )


def run_server(
    spec: DeploymentSpec,
    *,
    sock: socket.socket | None = None,
    on_ready: Callable[[str], None] | None = None,
    log_level: str = "warning",
    backends: BackendFactory | None = None,
) -> ServeResult:
    """Serve ``spec`` until SIGTERM/SIGINT and return what was served.

    ``sock`` is a bound socket to serve on (default: bind ``spec.server.host:port``); ``on_ready``
    is called with the base URL once every replica has loaded; ``backends`` makes each model
    version's backend (default: replica processes on this machine). Call it from the main thread:
    the signal handlers that drain the server are installed there.

    The API keys and the TLS files are read first: a keys file without its secret, or a
    certificate that does not load, fails here, before anything starts.
    """
    auth = load_authenticator(spec)
    check_tls(spec)
    return _run(
        spec, sock=sock, on_ready=on_ready, log_level=log_level, backends=backends, auth=auth
    )


def _run(
    spec: DeploymentSpec,
    *,
    sock: socket.socket | None,
    on_ready: Callable[[str], None] | None,
    log_level: str,
    backends: BackendFactory | None,
    auth: Authenticator | None,
) -> ServeResult:
    if backends is None and spec.backend == "ray":
        from modelscale.serve.ray_backend import RayDeployments

        # Ray is connected (or started) and the replicas deployed before the socket is bound:
        # a cluster that cannot run the spec fails here, with nothing to drain.
        with RayDeployments(spec) as ray:
            return _run(
                spec,
                sock=sock,
                on_ready=on_ready,
                log_level=log_level,
                backends=ray.backend,
                auth=auth,
            )
    if sock is None:
        sock = bind_socket(spec.server.host, spec.server.port)
    try:
        import uvloop

        runner = asyncio.Runner(loop_factory=uvloop.new_event_loop)
    except ImportError:  # uvloop is optional on platforms without it
        runner = asyncio.Runner()
    with runner:
        return runner.run(_serve(spec, sock, on_ready, log_level, backends, auth))
