"""A server in a background process: start it, wait until ready, stop it (SIGTERM, drained).

For the demo, tests and benchmarks: the server runs in its own process (``python -m
modelscale.serve``) so it never shares an interpreter, GIL or event loop with the caller or the load
generator. The caller binds the listening socket and passes it down, so ``port=0`` gets a free port
without a race.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import pathlib
import signal
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from types import TracebackType

from modelscale.config import DeploymentSpec
from modelscale.errors import ServerError
from modelscale.serve.runner import bind_socket, server_url

__all__ = ["ServerProcess", "start_server"]


class ServerProcess:
    """A ``modelscale serve`` process serving ``spec`` on a socket bound here."""

    def __init__(
        self,
        spec: DeploymentSpec,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        log_level: str = "warning",
        env: Mapping[str, str] | None = None,
        own_process_group: bool = False,
    ) -> None:
        self.spec = spec
        self.own_process_group = own_process_group
        """Start the server as the leader of a process group of its own (with its replicas),
        as a service manager does; signals to this process's group then do not reach it."""
        self.env = dict(env) if env is not None else None
        """Extra environment of the server process (e.g. PYTHONPATH of another build, to
        compare two)."""
        self.host = host
        self.port = port
        self.log_level = log_level
        self.proc: subprocess.Popen[bytes] | None = None
        self._dir = tempfile.TemporaryDirectory(prefix="modelscale-serve-")
        self.log_path = pathlib.Path(self._dir.name) / "server.log"

    @property
    def url(self) -> str:
        """Base URL, e.g. http://127.0.0.1:41234 (https when the spec sets TLS)."""
        return server_url(self.host, self.port, tls=self.spec.server.tls_cert is not None)

    @property
    def pid(self) -> int | None:
        """The server process id (None before start)."""
        return self.proc.pid if self.proc is not None else None

    def start(self) -> ServerProcess:
        """Start the process (returns at once; see ``wait_ready``)."""
        sock = bind_socket(self.host, self.port)
        self.port = sock.getsockname()[1]
        spec_path = pathlib.Path(self._dir.name) / "spec.json"
        # Defaults left out: the file then also suits a build that predates a newer key.
        data = self.spec.model_dump(mode="json", exclude_defaults=True)
        spec_path.write_text(json.dumps(data), encoding="utf-8")
        cmd = [
            sys.executable,
            "-m",
            "modelscale.serve",
            "--spec",
            str(spec_path),
            "--fd",
            str(sock.fileno()),
            "--log-level",
            self.log_level,
        ]
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                cmd,
                pass_fds=(sock.fileno(),),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                env={**os.environ, **self.env} if self.env else None,
                start_new_session=self.own_process_group,
            )
        sock.close()
        return self

    def log_tail(self, lines: int = 20) -> str:
        """The last lines the server wrote."""
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def _get(self, path: str, timeout: float = 2.0) -> int:
        conn: http.client.HTTPConnection
        if self.spec.server.tls_cert is not None:
            # Asking our own child whether it is ready, on the socket bound here: the
            # certificate (perhaps for a public name, not this address) is the clients' to check.
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
            conn = http.client.HTTPSConnection(
                self.host, self.port, timeout=timeout, context=context
            )
        else:
            conn = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
        try:
            conn.request("GET", path)
            resp = conn.getresponse()
            resp.read()
            return resp.status
        finally:
            conn.close()

    def wait_ready(self, timeout_s: float = 120.0) -> str:
        """Block until /v2/health/ready answers 200; returns the URL (ServerError if it never does)."""
        if self.proc is None:
            self.start()
        assert self.proc is not None  # started just above
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ServerError(
                    f"the server exited with code {self.proc.returncode} before it was ready:\n"
                    f"{self.log_tail()}"
                )
            with contextlib.suppress(OSError, http.client.HTTPException):
                if self._get("/v2/health/ready") == 200:
                    return self.url
            time.sleep(0.1)
        raise ServerError(f"the server was not ready within {timeout_s:.0f} s:\n{self.log_tail()}")

    def stop(self, timeout_s: float | None = None) -> int:
        """SIGTERM, wait for the drain (spec's drain timeout + 10 s), then kill; returns exit code."""
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            wait = timeout_s if timeout_s is not None else self.spec.server.drain_timeout_s + 10
            try:
                self.proc.wait(wait)
            except subprocess.TimeoutExpired:
                self._kill_tree()
                self.proc.wait()
        return self.proc.returncode

    def _kill_tree(self) -> None:
        assert self.proc is not None  # only called on a started process
        with contextlib.suppress(ImportError, OSError):
            import psutil

            for child in psutil.Process(self.proc.pid).children(recursive=True):
                with contextlib.suppress(psutil.Error):
                    child.kill()
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.proc.pid, signal.SIGKILL)

    def close(self) -> None:
        """Stop the server if running and remove its temporary files."""
        try:
            self.stop()
        finally:
            self._dir.cleanup()

    def __enter__(self) -> ServerProcess:
        if self.proc is None:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def start_server(
    spec: DeploymentSpec,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    wait: bool = True,
    env: Mapping[str, str] | None = None,
) -> ServerProcess:
    """Start ``spec`` in a background process; with ``wait``, return once it is ready.

    Example (the demo's serve step)::

        spec = DeploymentSpec.single("digits.onnx", name="digits", replicas=2)
        with start_server(spec) as server:
            result = run_load(server.url, model="digits", options=LoadOptions(rate=200))
    """
    server = ServerProcess(spec, host=host, port=port, env=env).start()
    if wait:
        try:
            server.wait_ready()
        except BaseException:
            server.close()
            raise
    return server
