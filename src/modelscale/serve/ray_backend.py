"""The Ray backend: a model version's replicas are a Ray Serve deployment, fed whole batches.

The front batches requests itself and calls a replica once per batch through the deployment's
handle, so Ray's per-call costs (routing, the actor call, scheduling) are paid per batch, not per
request. Ray places the replicas across the cluster, restarts them when they die, and adds or
removes them when autoscaling; the front learns how many are running from Ray's status every few
seconds and keeps ``max_ongoing_batches`` batches in flight per replica (2: the next batch waits at
the replica while the current one runs, so the trip to it is hidden).

Two ways to run it:
- ``modelscale serve --backend ray`` (``RayDeployments``): the front runs here under uvicorn and
  deploys one Ray Serve application per model version, without Ray's HTTP proxy;
- ``serve run`` on the config ``plan --emit ray`` writes (``modelscale.serve.ray_app``): the front
  is the ingress deployment of one application, behind Ray's proxy, on every node it places it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

from modelscale.config import DeploymentSpec, ModelSpec, ray_deployment_name
from modelscale.errors import InvalidInput, MissingDependency, ServerError
from modelscale.model.artifact import ModelArtifact
from modelscale.serve.backend import (
    BackendHealth,
    BackendState,
    Batch,
    BatchLost,
    BatchOutcome,
    ReplicaSettings,
    ReplicaState,
    ReplicaStats,
)

__all__ = [
    "RayBackend",
    "RayDeployments",
    "import_ray_serve",
    "model_deployment_options",
]

log = logging.getLogger("modelscale.serve.ray")

_STATUS_EVERY_S = 5.0
_START_TIMEOUT_S = 120.0


def import_ray_serve() -> Any:
    """``ray.serve``, or MissingDependency naming ``pip install "modelscale[ray]"``."""
    try:
        from ray import serve
    except ImportError:
        raise MissingDependency("ray[serve]", "ray") from None
    return serve


def model_deployment_options(spec: DeploymentSpec, model: str, version: str) -> dict[str, Any]:
    """The Ray deployment options of one version (as in the Ray config ``plan --emit ray`` writes)."""
    name = ray_deployment_name(model, version)
    for dep in spec.ray_deployments():
        if dep["name"] == name:
            return {k: v for k, v in dep.items() if k != "name"}
    raise InvalidInput(f"no model {model!r} version {version!r} in the spec", field="models")


class _Slots:
    """A counting semaphore whose size can change (replicas come and go)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.used = 0
        self._waiters: deque[asyncio.Future[None]] = deque()

    async def acquire(self) -> None:
        if self.used < self.size and not self._waiters:
            self.used += 1
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        await fut  # the slot was counted for us by the one who woke us

    def release(self) -> None:
        self.used -= 1
        self._wake()

    def resize(self, size: int) -> None:
        self.size = size
        self._wake()

    def _wake(self) -> None:
        while self._waiters and self.used < self.size:
            fut = self._waiters.popleft()
            if not fut.done():
                self.used += 1
                fut.set_result(None)

    def cancel(self) -> None:
        for fut in self._waiters:
            if not fut.done():
                fut.cancel()


class RayBackend:
    """One model version's Ray Serve deployment, called through its handle once per batch."""

    def __init__(
        self,
        handle: Any,
        *,
        label: str,
        app_name: str,
        deployment: str,
        replicas: int,
        max_ongoing_batches: int = 2,
        reconfigure: Callable[[ReplicaSettings], None] | None = None,
    ) -> None:
        self.handle = handle
        self.label = label
        self.app_name = app_name
        self.deployment = deployment
        self.depth = max_ongoing_batches
        self.desired = replicas
        self.running = 0
        self._slots = _Slots(0)
        self._rows_in_flight = 0
        self._by_replica: dict[str, list[int]] = {}
        self._started = False
        self._stopped = False
        self._lost_in_a_row = 0
        self._poller: asyncio.Task[None] | None = None
        self._redeploy = reconfigure
        self.on_unavailable: Callable[[], None] | None = None

    # -- lifecycle ------------------------------------------------------------------------------------
    async def start(self) -> None:
        """Wait until a replica answers, then serve with the replicas Ray reports running."""
        deadline = time.monotonic() + _START_TIMEOUT_S
        last: Exception | None = None
        while time.monotonic() < deadline:
            try:
                await asyncio.wait_for(self.handle.ping.remote(), 30)
                break
            except Exception as exc:  # not deployed yet, or a replica failed to load
                last = exc
                await asyncio.sleep(0.5)
        else:
            raise ServerError(
                f"no replica of {self.label} (Ray deployment {self.deployment}) answered within "
                f"{_START_TIMEOUT_S:.0f} s: {_first_line(last)}"
            )
        self._set_running(max(1, self.desired))
        self._started = True
        self._poller = asyncio.get_running_loop().create_task(self._poll_status())

    async def stop(self) -> None:
        """Stop asking Ray; batches in flight still complete (Ray owns the replicas)."""
        self._stopped = True
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller
        self._slots.cancel()

    def _set_running(self, running: int) -> None:
        was = self.running
        self.running = running
        self._slots.resize(running * self.depth)
        if was > 0 and running == 0 and self.on_unavailable is not None:
            self.on_unavailable()

    async def _poll_status(self) -> None:
        serve = import_ray_serve()
        loop = asyncio.get_running_loop()
        while not self._stopped:
            await asyncio.sleep(_STATUS_EVERY_S)
            try:
                status = await loop.run_in_executor(None, serve.status)
                app = status.applications[self.app_name]
                dep = app.deployments[self.deployment]
                running = int(dep.replica_states.get("RUNNING", 0))
            except Exception as exc:  # the controller is busy or restarting: keep what we know
                log.debug("Ray status of %s unavailable: %s", self.label, exc)
                continue
            self._set_running(running)

    # -- the backend protocol -------------------------------------------------------------------------
    async def acquire(self) -> None:
        """Wait for a free place among the batches in flight."""
        await self._slots.acquire()

    def release(self, slot: Any) -> None:
        """Give back an unused place."""
        self._slots.release()

    def run(self, slot: Any, batch: Batch) -> asyncio.Future[BatchOutcome]:
        """Send ``batch`` to a replica (Ray picks it); the task resolves with its outcome."""
        rows = batch.rows
        self._rows_in_flight += rows
        return asyncio.get_running_loop().create_task(self._call(batch, rows))

    async def _call(self, batch: Batch, rows: int) -> BatchOutcome:
        try:
            outcome: BatchOutcome = await self.handle.run.remote(batch)
        except Exception as exc:
            outcome = BatchLost(f"the Ray replica of {self.label} failed: {_first_line(exc)}")
        finally:
            self._rows_in_flight -= rows
            self._slots.release()
        if isinstance(outcome, BatchLost):
            self._lost_in_a_row += 1
        else:
            self._lost_in_a_row = 0
            counts = self._by_replica.setdefault(outcome.replica, [0, 0])
            counts[0] += 1
            counts[1] += rows
        return outcome

    def health(self) -> BackendHealth:
        """Replicas Ray reports running against the configured number."""
        if self._stopped:
            state = BackendState.STOPPED
        elif not self._started:
            state = BackendState.STARTING
        elif self.running == 0:
            state = BackendState.UNAVAILABLE
        elif self.running >= self.desired:
            state = BackendState.READY
        else:
            state = BackendState.DEGRADED
        return BackendHealth(state, self.running, self.desired)

    def serving(self) -> bool:
        """Started, not stopped, and Ray reports a replica running."""
        return self._started and not self._stopped and self.running > 0

    def stats(self) -> list[ReplicaStats]:
        """Batches and rows per Ray replica that has answered."""
        return [
            ReplicaStats(replica, ReplicaState.IDLE, batches, rows)
            for replica, (batches, rows) in sorted(self._by_replica.items())
        ]

    def in_flight_rows(self) -> int:
        """Rows sent to replicas and not answered yet."""
        return self._rows_in_flight

    def drain(self) -> None:
        """Nothing to do: Ray Serve replaces its replicas itself, and they outlive the front."""

    async def reconfigure(self, settings: ReplicaSettings) -> None:
        """Redeploy the version with new settings (Ray applies them to each replica in place)."""
        if self._redeploy is None:
            raise InvalidInput(
                f"the replicas of {self.label} belong to a Ray Serve application deployed from a "
                f"config file: change deployments[{self.deployment}].user_config.threads there "
                "and run `serve deploy` again.",
                field="threads",
            )
        redeploy = self._redeploy
        await asyncio.get_running_loop().run_in_executor(None, redeploy, settings)


def _first_line(exc: BaseException | None) -> str:
    if exc is None:
        return "no answer"
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def _check_address(address: str) -> None:
    """Fail fast, with the address named, when nothing listens there (Ray would retry for ages)."""
    if address == "auto":
        return
    parts = urlsplit(address if "://" in address else f"tcp://{address}")
    try:
        host, port = parts.hostname, parts.port
    except ValueError:
        host, port = None, None
    if not host or not port:
        raise InvalidInput(
            f"Ray address {address!r} is not host:port, ray://host:port or 'auto'.",
            field="ray.address",
        )
    try:
        with socket.create_connection((host, port), timeout=5):
            pass
    except OSError as exc:
        raise InvalidInput(
            f"Cannot reach the Ray cluster at {address} ({exc.strerror or exc}). Start one with "
            "`ray start --head`, give its address, or leave ray.address unset to start a local "
            "Ray on this machine.",
            field="ray.address",
        ) from None


class RayDeployments:
    """``modelscale serve --backend ray``: deploy each version's replicas on Ray, give backends.

    Connects to the cluster at ``spec.ray.address`` (or starts a local Ray), checks that the
    cluster has the CPUs the replicas need, deploys one Ray Serve application per model version
    (no HTTP route: the front here is the only way in) and, on close, deletes them and stops a
    Ray it started.
    """

    def __init__(self, spec: DeploymentSpec) -> None:
        self.spec = spec
        self.handles: dict[str, Any] = {}
        self._apps: list[str] = []
        self._started_ray = False

    def __enter__(self) -> RayDeployments:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def open(self) -> None:
        """Connect (or start Ray), check resources, deploy every version (blocking)."""
        serve = import_ray_serve()
        import ray

        address = self.spec.ray.address
        if address is not None:
            _check_address(address)
        if not ray.is_initialized():
            try:
                ray.init(
                    address=address,
                    num_cpus=self.spec.ray.num_cpus if address is None else None,
                    namespace="modelscale",
                    include_dashboard=False,
                    log_to_driver=False,
                    configure_logging=False,
                )
            except (ConnectionError, RuntimeError, ValueError) as exc:
                raise InvalidInput(
                    f"Cannot connect to Ray at {address or 'a new local cluster'}: "
                    f"{_first_line(exc)}",
                    field="ray.address",
                ) from None
            self._started_ray = address is None
        self._check_resources(ray.cluster_resources())
        try:
            serve.start(proxy_location="Disabled")
            for name, m in self.spec.models.items():
                for version, v in m.versions.items():
                    self._deploy(serve, name, version, str(v.path), m)
        except BaseException:
            self.close()
            raise

    def _check_resources(self, resources: Mapping[str, float]) -> None:
        have = float(resources.get("CPU", 0.0))
        need = self.spec.replica_cpus()
        if need > have + 1e-9:
            first = next(iter(self.spec.models))
            key = "autoscaling.min_replicas" if self.spec.models[first].autoscaling else "replicas"
            raise InvalidInput(
                f"models.{first}.{key}: the replicas need {need} CPUs (replicas x threads, every "
                f"version) but the Ray cluster has {have:g}. Lower replicas or threads, or add "
                "nodes to the cluster.",
                field=f"models.{first}.{key}",
            )

    def _deploy(self, serve: Any, name: str, version: str, path: str, m: ModelSpec) -> None:
        from modelscale.serve.ray_app import model_deployment

        deployment = ray_deployment_name(name, version)
        options = model_deployment_options(self.spec, name, version)
        app = model_deployment().options(name=deployment, **options).bind(path)
        app_name = f"modelscale-{deployment}"
        self.handles[deployment] = serve.run(app, name=app_name, route_prefix=None)
        self._apps.append(app_name)

    def backend(self, name: str, version: str, artifact: ModelArtifact, m: ModelSpec) -> RayBackend:
        """The backend of one version (a ``BackendFactory`` for ``run_server``)."""
        deployment = ray_deployment_name(name, version)
        spec = self.spec

        def redeploy(settings: ReplicaSettings) -> None:
            serve = import_ray_serve()
            options = model_deployment_options(spec, name, version)
            options["user_config"] = {"threads": settings.threads}
            options["ray_actor_options"] = {"num_cpus": settings.threads}
            from modelscale.serve.ray_app import model_deployment

            app = model_deployment().options(name=deployment, **options).bind(str(artifact.path))
            serve.run(app, name=f"modelscale-{deployment}", route_prefix=None)

        least = m.autoscaling.min_replicas if m.autoscaling is not None else m.replicas
        return RayBackend(
            self.handles[deployment],
            label=f"{name}:{version}",
            app_name=f"modelscale-{deployment}",
            deployment=deployment,
            replicas=least,
            max_ongoing_batches=spec.ray.max_ongoing_batches,
            reconfigure=redeploy,
        )

    def close(self) -> None:
        """Delete the deployed applications; stop the local Ray if it was started here."""
        serve = import_ray_serve()
        import ray

        if not ray.is_initialized():
            return
        if self._started_ray:
            # Everything here is this server's: stopping Ray stops the replicas with it, at
            # once (deleting the applications first waits for each replica's graceful stop).
            ray.shutdown()
            return
        for app_name in self._apps:
            with contextlib.suppress(Exception):
                serve.delete(app_name, _blocking=False)  # the cluster stops them; no need to wait
        self._apps.clear()
