"""Models served by Ray Serve: the application that ``plan --emit ray`` configures.

``modelscale serve`` runs replicas as processes on one machine. Once a model needs more machines,
Ray Serve places the replicas across a cluster::

    $ modelscale plan model.onnx --rps 2000 --p99-ms 50 --emit ray --out plan/
    $ serve run plan/ray_serve.yaml          # or: serve deploy plan/ray_serve.yaml

``build_app`` is the config's ``import_path``; its ``args`` hold the deployment spec (the same
schema as deploy.yaml). The application has one ingress deployment, ``Front``, which runs the same
V2 front as ``modelscale serve`` (routes, codec, auth, batching, errors, /metrics), and one
deployment per model version (``<model>--<version>``) whose replicas each load the model into their
own ONNX Runtime session with ``threads`` intra-op threads (spinning off: replicas share cores). The
front forms batches and calls a replica once per batch through the deployment's handle.

Ray does the placement, restarts and autoscaling (``num_replicas`` / ``autoscaling_config`` of the
version deployments), and its own ``ray_serve_*`` metrics; the front's ``/metrics`` are the same
series as ``modelscale serve``'s, per front replica. Threads per replica change live through a
version deployment's ``user_config``.

The model files (and the API key files and server secret, if any) must exist at the same paths on
every node that runs a replica or a front (a shared volume, or the same image); each front replica
follows the keys file's changes itself. Ray's HTTP proxy serves the application: TLS is set there,
not by ``server.tls_cert``. Needs ``pip install "modelscale[ray]"``.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from modelscale.config import RAY_FRONT, DeploymentSpec, ray_deployment_name
from modelscale.errors import InvalidInput
from modelscale.serve.backend import Batch, BatchOutcome
from modelscale.serve.ray_backend import import_ray_serve, model_deployment_options
from modelscale.serve.replica import load_engine, run_batch

__all__ = ["RayFront", "RayModel", "build_app", "check_user_config", "model_deployment"]

log = logging.getLogger("modelscale.serve.ray")


def check_user_config(config: Mapping[str, Any] | None, *, threads: int) -> int:
    """The threads a version deployment's ``user_config`` asks for (InvalidInput naming the key)."""
    if config is None:
        return threads
    if not isinstance(config, Mapping):
        raise InvalidInput(
            f"user_config must be a mapping with 'threads'; got {type(config).__name__}.",
            field="user_config",
        )
    unknown = sorted(set(config) - {"threads"})
    if unknown:
        raise InvalidInput(
            f"user_config.{unknown[0]} is not a setting of a model deployment; it takes threads "
            "(batching is set in the deployment spec, args.deployment, and runs in the front).",
            field=f"user_config.{unknown[0]}",
        )
    value = config.get("threads", threads)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidInput(
            f"user_config.threads must be an integer >= 1; got {value!r}.",
            field="user_config.threads",
        )
    return value


class RayModel:
    """One replica of a model version: the model in an ONNX Runtime session, run batch by batch.

    Plain Python, so that it can be built and called without a Ray cluster; ``model_deployment``
    makes it a Ray Serve deployment.
    """

    def __init__(self, model_path: str, threads: int = 1) -> None:
        self.path = model_path
        self.threads = check_user_config(None, threads=threads)
        self.engine = load_engine(model_path, self.threads)
        # One batch at a time, off the replica's event loop, so that the next batch can arrive
        # (and wait here) while this one runs.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="modelscale-infer")
        self.replica_id = _replica_id()

    def reconfigure(self, user_config: Mapping[str, Any] | None) -> None:
        """Apply the deployment's ``user_config`` (Ray calls this at start and on every update)."""
        threads = check_user_config(user_config, threads=self.threads)
        if threads != self.threads:
            self.engine = load_engine(self.path, threads)
            self.threads = threads

    async def run(self, batch: Batch) -> BatchOutcome:
        """Run one batch (a bad request in it is isolated, as in ``modelscale serve``)."""
        call = functools.partial(run_batch, self.engine, batch, replica=self.replica_id)
        return await asyncio.get_running_loop().run_in_executor(self._executor, call)

    def ping(self) -> str:
        """This replica's id (the front asks once at start: the deployment answers)."""
        return self.replica_id


def _replica_id() -> str:
    try:
        from ray import serve

        return str(serve.get_replica_context().replica_id.unique_id)
    except Exception:  # not inside a Ray replica (tests, direct use)
        import os

        return str(os.getpid())


def model_deployment() -> Any:
    """``RayModel`` as a Ray Serve deployment (options are set per version by the caller)."""
    serve = import_ray_serve()
    return serve.deployment(RayModel)


class RayFront:
    """The ingress: the same V2 front as ``modelscale serve``, over the version deployments."""

    def __init__(self, deployment: Mapping[str, Any], models: Mapping[str, Any]) -> None:
        from modelscale.serve.auth import load_authenticator
        from modelscale.serve.front import build_front
        from modelscale.serve.ray_backend import RayBackend

        spec = DeploymentSpec.from_dict(dict(deployment), source="args.deployment")
        app_name = _app_name()

        def backend(name: str, version: str, artifact: Any, m: Any) -> RayBackend:
            deployment_name = ray_deployment_name(name, version)
            least = m.autoscaling.min_replicas if m.autoscaling is not None else m.replicas
            return RayBackend(
                models[deployment_name],
                label=f"{name}:{version}",
                app_name=app_name,
                deployment=deployment_name,
                replicas=least,
                max_ongoing_batches=spec.ray.max_ongoing_batches,
            )

        self.front = build_front(
            spec,
            backends=backend,
            auth=load_authenticator(spec),
            manage_registry=True,
        )

    def __serve_build_asgi_app__(self) -> Any:
        """The ASGI app Ray's proxy hands requests to (its lifespan starts the backends)."""
        return self.front


def _app_name() -> str:
    try:
        from ray import serve

        return str(serve.get_replica_context().app_name)
    except Exception:  # not inside a Ray replica
        return "default"


def _check_args(args: Any) -> DeploymentSpec:
    if not isinstance(args, Mapping) or "deployment" not in args:
        raise InvalidInput(
            "the Ray application's args must be a mapping with 'deployment': the deployment spec "
            "(the schema of deploy.yaml), as `plan --emit ray` writes it.",
            field="args.deployment",
        )
    unknown = sorted(set(args) - {"deployment"})
    if unknown:
        raise InvalidInput(
            f"args.{unknown[0]} is not an argument of this application; it takes 'deployment'.",
            field=f"args.{unknown[0]}",
        )
    return DeploymentSpec.from_dict(args["deployment"], source="args.deployment")


def build_app(args: Mapping[str, Any]) -> Any:
    """The Ray Serve application for ``args`` (the ``import_path`` of an emitted Ray config).

    Args:
        args: ``deployment``: a deployment spec (deploy.yaml's schema). Each model version becomes
            a deployment named ``<model>--<version>`` with the spec's replicas (or autoscaling),
            ``num_cpus`` = threads and ``max_ongoing_requests`` = ``ray.max_ongoing_batches``;
            the config's ``deployments`` section may override them.
    """
    spec = _check_args(args)
    serve = import_ray_serve()
    model = model_deployment()
    models = {}
    for name, m in spec.models.items():
        for version, v in m.versions.items():
            dname = ray_deployment_name(name, version)
            options = model_deployment_options(spec, name, version)
            models[dname] = model.options(name=dname, **options).bind(str(v.path), m.threads)
    front = serve.deployment(name=RAY_FRONT)(serve.ingress()(RayFront))
    front_options = next(d for d in spec.ray_deployments() if d["name"] == RAY_FRONT)
    front_options = {k: v for k, v in front_options.items() if k != "name"}
    return front.options(**front_options).bind(spec.model_dump(mode="json"), models)
