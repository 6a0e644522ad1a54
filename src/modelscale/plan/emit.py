"""Deployment files from a plan: deploy.yaml for ``modelscale serve``, Kubernetes, Ray Serve.

Every file is made from ``modelscale.config.DeploymentSpec`` objects, the one description of a
deployment: deploy.yaml is one serialised, the Kubernetes ConfigMap holds one, and the Ray config
carries one as its application's ``args.deployment``. deploy.yaml::

    models:
      <name>:
        versions: {"1": {path: /abs/model.onnx, weight: 1.0}}
        batching: {max_batch: 8, max_wait_ms: 0.0, max_queue: 64}
        replicas: 2            # replica processes on this machine
        threads: 1             # intra-op threads per replica
        slo: {p99_ms: 100.0, target_rps: 333.3}   # this machine's share of the target
    server: {host: 127.0.0.1, port: 8000}
    store: {url: null}         # null: MODELSCALE_DB

Kubernetes: a ConfigMap holding deploy.yaml, a Deployment (one pod per planned machine, CPU
requests = limits = replicas x threads, memory from the profile), a Service and an autoscaling/v2
HorizontalPodAutoscaler from the current phase's pod count to the last phase's. Ray Serve: a config
file with one application (``DeploymentSpec.ray_config``): the V2 front as its ingress, which batches,
and one deployment per model version with ``num_replicas`` (one phase) or ``autoscaling`` between the
current phase's replicas and the last phase's (several), ``num_cpus`` = threads per replica.
"""

from __future__ import annotations

import math
import pathlib
import re
from collections.abc import Sequence
from typing import Any, Literal

import yaml

from modelscale.config import RAY_IMPORT_PATH, DeploymentSpec
from modelscale.errors import InvalidInput
from modelscale.plan.results import PlanOption, PlanResult

__all__ = [
    "RAY_IMPORT_PATH",
    "SERVE_COMMAND",
    "EmitKind",
    "chosen_option",
    "deployment_spec",
    "dump_yaml",
    "emit",
    "kubernetes_manifests",
    "ray_serve_config",
]

EmitKind = Literal["deploy", "k8s", "ray"]

SERVE_COMMAND = ("modelscale", "serve", "--config", "/etc/modelscale/deploy.yaml")
"""The container command of the Kubernetes Deployment."""

_CONTAINER_MODEL_DIR = "/models"
_PORT = 8000
_MIB = 2**20
_BASE_MIB = 512  # the front process and the interpreter around the replicas


def _k8s_name(name: str) -> str:
    out = re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")
    return (out or "model")[:50]


def chosen_option(plan: PlanResult, *, rate_rps: float | None = None) -> PlanOption:
    """The option to deploy: this machine's best with --machine local, else the recommendation."""
    if plan.params.get("machine") == "local":
        if plan.local is None:
            raise InvalidInput(
                "Nothing to emit: no configuration on this machine meets the p99 bound.",
                field="emit",
            )
        return plan.local
    target = rate_rps if rate_rps is not None else plan.target["rps"]
    phase = plan.phase(float(target))
    if phase.recommended is None:
        raise InvalidInput(
            f"Nothing to emit: no configuration meets the plan at {target:g} req/s.", field="emit"
        )
    return phase.recommended


def _max_queue(option: PlanOption, p99_ms: float) -> int:
    """Requests one p99 window brings at the max rate: a request queued deeper misses the SLO."""
    window = option.per_machine_rps * p99_ms / 1000.0
    return int(max(2 * option.max_batch * option.replicas, math.ceil(2.0 * window), 16))


def deployment_spec(
    option: PlanOption,
    *,
    model_name: str,
    model_path: str | pathlib.Path,
    p99_ms: float,
    target_rps: float,
    host: str = "127.0.0.1",
    port: int = _PORT,
    store_url: str | None = None,
    replicas: int | None = None,
    autoscaling: tuple[int, int, float] | None = None,
    backend: Literal["local", "ray"] = "local",
    check_files: bool = True,
) -> DeploymentSpec:
    """The deployment of ``option``: one machine's share of ``target_rps`` (deploy.yaml), or the
    whole cluster's replicas (``replicas``, ``autoscaling`` = (min, max, target batches in flight
    per replica)) for the Ray backend. ``check_files=False`` for paths on other machines."""
    name = re.sub(r"[^A-Za-z0-9_.\-]+", "-", model_name).strip("-.") or "model"
    share = target_rps if backend == "ray" else target_rps / option.machines
    model: dict[str, Any] = {
        "versions": {"1": {"path": str(model_path), "weight": 1.0}},
        "batching": {
            "max_batch": int(option.max_batch),
            "max_wait_ms": float(option.max_wait_ms),
            "max_queue": _max_queue(option, p99_ms),
        },
        "replicas": int(replicas if replicas is not None else option.replicas),
        "threads": int(option.threads),
        "slo": {"p99_ms": float(p99_ms), "target_rps": round(float(share), 3)},
    }
    if autoscaling is not None:
        low, high, target = autoscaling
        model["autoscaling"] = {
            "min_replicas": low,
            "max_replicas": high,
            "target_ongoing_batches": target,
        }
    data = {
        "models": {name: model},
        "backend": backend,
        "server": {"host": host, "port": int(port)},
        "store": {"url": store_url},
    }
    return DeploymentSpec.from_dict(data, source="plan", check_files=check_files)


def _deploy_yaml(spec: DeploymentSpec) -> dict[str, Any]:
    """deploy.yaml's content: the spec's settings, without the Ray section a local server ignores."""
    data = spec.model_dump(mode="json")
    data.pop("ray", None)
    for m in data["models"].values():
        if m.get("autoscaling") is None:
            m.pop("autoscaling", None)
    return data


def dump_yaml(docs: dict[str, Any] | Sequence[dict[str, Any]], *, header: str = "") -> str:
    """YAML text (several documents for a list); ``header`` lines become comments."""
    comment = "".join(f"# {line}\n" for line in header.splitlines())
    if isinstance(docs, dict):
        return comment + yaml.safe_dump(docs, sort_keys=False)
    return comment + yaml.safe_dump_all(list(docs), sort_keys=False)


def _header(plan: PlanResult, option: PlanOption, what: str) -> str:
    return (
        f"{what}, written by `modelscale plan` for {plan.model.get('name')} "
        f"(sha256 {str(plan.model.get('sha256', ''))[:12]}).\n"
        f"Plan: {option.label()}; predicted max {option.max_rate_rps:,.0f} req/s at p99 <= "
        f"{plan.target['p99_ms']:g} ms ({option.method}"
        f"{', extrapolated' if option.extrapolated else ''}).\n"
        f"Target {plan.target['rps']:g} req/s with headroom {plan.target['headroom']:g}."
    )


def _phase_pods(plan: PlanResult, option: PlanOption) -> tuple[int, int]:
    """Pods now and at the last phase, for machines of the same type and configuration."""
    last = plan.phases[-1].rate_rps
    per = plan.target["headroom"] * option.per_machine_rps
    return option.machines, max(option.machines, math.ceil(last / per - 1e-9))


def kubernetes_manifests(
    plan: PlanResult,
    *,
    option: PlanOption | None = None,
    image: str = "modelscale:0.1.0",
    replica_bytes: int | None = None,
) -> list[dict[str, Any]]:
    """ConfigMap, Deployment, Service and HorizontalPodAutoscaler for the plan."""
    opt = option or chosen_option(plan)
    name = _k8s_name(str(plan.model.get("name", "model")))
    model_file = pathlib.PurePath(str(plan.model.get("path", "model.onnx"))).name
    spec = deployment_spec(
        opt,
        model_name=str(plan.model.get("name", "model")),
        model_path=f"{_CONTAINER_MODEL_DIR}/{model_file}",
        p99_ms=plan.target["p99_ms"],
        target_rps=plan.target["rps"],
        host="0.0.0.0",
        check_files=False,  # the path is the container's
    )
    per_replica = replica_bytes or int(plan.params.get("replica_bytes") or 0) or 256 * _MIB
    mem_mib = _BASE_MIB + math.ceil(opt.replicas * per_replica / _MIB)
    mem = f"{64 * math.ceil(mem_mib / 64)}Mi"
    cpu = str(opt.replicas * opt.threads)
    resources = {"cpu": cpu, "memory": mem}
    labels = {"app.kubernetes.io/name": name, "app.kubernetes.io/managed-by": "modelscale"}
    pod_spec: dict[str, Any] = {
        "containers": [
            {
                "name": "modelscale",
                "image": image,
                "command": list(SERVE_COMMAND),
                "ports": [{"name": "http", "containerPort": _PORT}],
                # requests == limits: the Guaranteed QoS class, whole CPUs for the ORT threads.
                "resources": {"requests": dict(resources), "limits": dict(resources)},
                "readinessProbe": {"httpGet": {"path": "/v2/health/ready", "port": _PORT}},
                "livenessProbe": {"httpGet": {"path": "/v2/health/live", "port": _PORT}},
                "volumeMounts": [{"name": "deploy", "mountPath": "/etc/modelscale"}],
            }
        ],
        "volumes": [{"name": "deploy", "configMap": {"name": f"{name}-deploy"}}],
    }
    if opt.provider != "local":
        pod_spec["nodeSelector"] = {"node.kubernetes.io/instance-type": opt.instance_type}
    now, most = _phase_pods(plan, opt)
    target_util = round(
        100 * plan.target["headroom"] * opt.max_rate_rps / max(opt.capacity_rps, 1e-9)
    )
    return [
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": f"{name}-deploy", "labels": dict(labels)},
            "data": {"deploy.yaml": dump_yaml(_deploy_yaml(spec))},
        },
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": name, "labels": dict(labels)},
            "spec": {
                "replicas": now,
                "selector": {"matchLabels": {"app.kubernetes.io/name": name}},
                "template": {"metadata": {"labels": dict(labels)}, "spec": pod_spec},
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": name, "labels": dict(labels)},
            "spec": {
                "selector": {"app.kubernetes.io/name": name},
                "ports": [{"name": "http", "port": 80, "targetPort": _PORT}],
            },
        },
        {
            "apiVersion": "autoscaling/v2",
            "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": name, "labels": dict(labels)},
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
                "minReplicas": now,
                "maxReplicas": most,
                "metrics": [
                    {
                        "type": "Resource",
                        "resource": {
                            "name": "cpu",
                            "target": {
                                "type": "Utilization",
                                "averageUtilization": int(min(max(target_util, 10), 95)),
                            },
                        },
                    }
                ],
                # A slow scale-down keeps a burst's end from removing pods the next burst needs.
                "behavior": {
                    "scaleDown": {
                        "stabilizationWindowSeconds": 300,
                        "policies": [{"type": "Pods", "value": 1, "periodSeconds": 60}],
                    }
                },
            },
        },
    ]


def ray_serve_config(plan: PlanResult, *, option: PlanOption | None = None) -> dict[str, Any]:
    """A Ray Serve config (``serve run`` / ``serve deploy``) for the plan.

    The whole target runs on one Ray cluster: the current phase's replicas, autoscaling up to the
    last phase's when there are several phases. Ray's autoscaler keeps the batches in flight per
    replica near the utilisation the plan runs the replicas at.
    """
    opt = option or chosen_option(plan)
    now_pods, most_pods = _phase_pods(plan, opt)
    now, most = now_pods * opt.replicas, most_pods * opt.replicas
    utilisation = plan.target["headroom"] * opt.max_rate_rps / max(opt.capacity_rps, 1e-9)
    spec = deployment_spec(
        opt,
        model_name=str(plan.model.get("name", "model")),
        model_path=str(plan.model.get("path", "")),
        p99_ms=plan.target["p99_ms"],
        target_rps=plan.target["rps"],
        host="0.0.0.0",
        replicas=now,
        autoscaling=(now, most, round(min(max(utilisation, 0.3), 1.0), 2)) if most > now else None,
        backend="ray",
        check_files=False,  # the path is the cluster nodes'
    )
    return spec.ray_config(app_name=_k8s_name(str(plan.model.get("name", "model"))), port=_PORT)


def emit(
    plan: PlanResult,
    kind: EmitKind,
    out_dir: str | pathlib.Path,
    *,
    store_url: str | None = None,
    image: str = "modelscale:0.1.0",
) -> pathlib.Path:
    """Write one deployment file for ``plan`` into ``out_dir`` and return its path."""
    out = pathlib.Path(out_dir).expanduser()
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InvalidInput(
            f"Cannot create the output folder {out}: {exc.strerror}.", field="out"
        ) from None
    opt = chosen_option(plan)
    if kind == "deploy":
        data: Any = _deploy_yaml(
            deployment_spec(
                opt,
                model_name=str(plan.model.get("name", "model")),
                model_path=str(plan.model.get("path", "")),
                p99_ms=plan.target["p99_ms"],
                target_rps=plan.target["rps"],
                store_url=store_url,
            )
        )
        path, what = out / "deploy.yaml", "deploy.yaml for modelscale serve (one machine)"
    elif kind == "k8s":
        data = kubernetes_manifests(plan, option=opt, image=image)
        model_file = pathlib.PurePath(str(plan.model.get("path", "model.onnx"))).name
        path = out / "k8s.yaml"
        what = (
            f"Kubernetes manifests (the image {image} must hold the model at "
            f"{_CONTAINER_MODEL_DIR}/{model_file}, or mount it there)"
        )
    elif kind == "ray":
        data = ray_serve_config(plan, option=opt)
        path = out / "ray_serve.yaml"
        what = (
            f"Ray Serve config (serve run / serve deploy; {RAY_IMPORT_PATH}). The model file must "
            "be at the same path on every node. Ray's proxy costs CPU per request: with "
            "RAY_SERVE_ENABLE_HA_PROXY=1 set where Ray starts, HAProxy forwards requests to the "
            "front directly (docs/serving.md)"
        )
    else:
        raise InvalidInput(
            f"--emit must be deploy, k8s or ray. Got {kind!r} instead.", field="emit"
        )
    text = dump_yaml(data, header=_header(plan, opt, what))
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise InvalidInput(f"Cannot write {path}: {exc.strerror}.", field="out") from None
    return path
