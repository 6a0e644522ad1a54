"""Real servers for end-to-end tests: ``modelscale serve`` on either backend, and ``serve run``.

Each starts in its own process group and is stopped with everything it started, so a Ray cluster
started for one test never outlives it.
"""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass

import psutil
import yaml

from modelscale.config import DeploymentSpec
from modelscale.serve import ServerProcess

__all__ = ["Served", "free_port", "kill_tree", "serve_run", "served_by", "wait_ready"]

RAY_ENV = {"RAY_USAGE_STATS_ENABLED": "0", "RAY_DEDUP_LOGS": "0"}


def free_port() -> int:
    """A TCP port nobody listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class Served:
    """A running server: where it is and how it runs."""

    kind: str
    host: str
    port: int
    key: str | None = None

    @property
    def url(self) -> str:
        """Base URL."""
        return f"http://{self.host}:{self.port}"

    def headers(self) -> dict[str, str]:
        """The auth header, when the server needs one."""
        return {"Authorization": f"Bearer {self.key}"} if self.key else {}


def kill_tree(tree: list[psutil.Process]) -> None:
    """Kill what is left of ``tree`` and wait for it."""
    for child in tree:
        with contextlib.suppress(psutil.NoSuchProcess):
            child.kill()
    psutil.wait_procs(tree, timeout=30)


def wait_ready(url: str, proc: subprocess.Popen[bytes], log: pathlib.Path, path: str) -> None:
    """Wait until ``url + path`` answers 200 (the process must stay up meanwhile)."""
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(log.read_text(errors="replace")[-4000:])
        with (
            contextlib.suppress(urllib.error.URLError, ConnectionError, TimeoutError),
            urllib.request.urlopen(f"{url}{path}", timeout=5) as r,
        ):
            if r.status == 200:
                return
        time.sleep(0.5)
    raise AssertionError("not ready in 240 s:\n" + log.read_text(errors="replace")[-4000:])


@contextlib.contextmanager
def serve_run(
    config: pathlib.Path, log: pathlib.Path, *, cpus: int | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """Ray's own ``serve run CONFIG`` (a local Ray cluster of ``cpus`` CPUs, default the
    machine's), stopped with all it started."""
    serve_cli = pathlib.Path(sys.executable).parent / "serve"
    env = {**os.environ, **RAY_ENV}
    if cpus is not None:
        env["RAY_OVERRIDE_RESOURCES"] = json.dumps({"CPU": cpus})
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(serve_cli), "run", str(config)],
            cwd=config.parent,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield proc
    finally:
        # Ray's own shutdown is not what the tests check, and it can take minutes on a loaded
        # machine: ask once, then make sure nothing of this local cluster is left running (the
        # processes serve run started, and only those: another Ray on this machine is left alone).
        try:
            tree = psutil.Process(proc.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            tree = []
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        kill_tree(tree)


@contextlib.contextmanager
def served_by(
    kind: str, spec: DeploymentSpec, tmp: pathlib.Path, *, key: str | None = None
) -> Iterator[Served]:
    """``spec`` served by ``modelscale serve`` on the local backend ('local') or Ray ('ray'), or
    by ``serve run`` on the Ray config that ``plan --emit ray`` would write for it ('ray-ingress')."""
    if kind in ("local", "ray"):
        data = spec.model_dump(mode="json")
        data["backend"] = kind
        server = ServerProcess(DeploymentSpec.from_dict(data), log_level="warning").start()
        assert server.pid is not None
        try:
            server.wait_ready(240)
            yield Served(kind, server.host, server.port, key)
        finally:
            try:
                tree = psutil.Process(server.pid).children(recursive=True)
            except psutil.NoSuchProcess:
                tree = []
            server.stop(timeout_s=60)
            server.close()
            kill_tree(tree)
        return
    port = free_port()
    config = tmp / "ray_serve.yaml"
    config.write_text(
        yaml.safe_dump(spec.ray_config(app_name="corpus", host="127.0.0.1", port=port)),
        encoding="utf-8",
    )
    log = tmp / "serve_run.log"
    with serve_run(config, log, cpus=spec.ray.num_cpus) as proc:
        wait_ready(f"http://127.0.0.1:{port}", proc, log, "/v2/health/ready")
        yield Served(kind, "127.0.0.1", port, key)
