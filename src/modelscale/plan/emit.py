"""Deployment files from a plan: deploy.yaml for ``modelscale serve``, Kubernetes, Ray Serve.

Every file is made from ``modelscale.config.DeploymentSpec`` objects, the one description of a
deployment: deploy.yaml is one serialised, the Kubernetes ConfigMap holds one, and the Ray config
carries one as its application's ``args.deployment``. deploy.yaml::

    models:
      <name>:
        versions: {"1": {path: /abs/model.onnx, weight: 1.0}}
        batching: {max_queue: 64}   # batches from the p99 objective; a fixed policy is
                                    # {max_batch: 8, max_wait_ms: 0.0, max_queue: 64, adaptive: false}
        replicas: 2            # replica processes on this machine
        threads: 1             # intra-op threads per replica
        slo: {p99_ms: 100.0, target_rps: 333.3}   # this machine's share of the target
    server: {host: 127.0.0.1, port: 8000}
    store: {url: null}         # null: MODELSCALE_DB

Kubernetes: a ConfigMap holding deploy.yaml, a Deployment (one pod per planned machine, CPU
requests = limits = replicas x threads, memory from the profile), a Service and, when the plan has
growth phases, an autoscaling/v2 HorizontalPodAutoscaler from the first phase's pod count to the last
phase's at the CPU utilisation the plan runs the pods at. Beside them a Dockerfile builds the image
the Deployment names from that folder: the model file (copied there) and a modelscale wheel
(``image_build_command`` says how to get it). Ray Serve: a config file with one application
(``DeploymentSpec.ray_config``): the V2 front as its ingress, which batches, and one deployment per
model version with ``num_replicas`` (one phase) or ``autoscaling`` between the first phase's
replicas and the last phase's (several), ``num_cpus`` = threads per replica.
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
from modelscale.plan.image import (
    CONTAINER_MODEL_DIR,
    SERVE_COMMAND,
    dockerfile,
    image_build_command,
    place_model,
)
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
        # Batches from the objective need no size or wait: the server finds them on whatever
        # machine it runs. A fixed policy is served as planned (not bounded by the SLO policy).
        "batching": (
            {"max_queue": _max_queue(option, p99_ms)}
            if option.objective_ms is not None
            else {
                "max_batch": int(option.max_batch),
                "max_wait_ms": float(option.max_wait_ms),
                "max_queue": _max_queue(option, p99_ms),
                "adaptive": False,
            }
        ),
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
        for v in m["versions"].values():
            if v.get("batch_time_ms") is None:  # serve fills it from this machine's profile
                v.pop("batch_time_ms", None)
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


def _phase_pods(plan: PlanResult, option: PlanOption) -> tuple[int, int, int]:
    """Pods at the first phase, now (the target) and at the last phase, for machines of the
    chosen type and configuration, each run at the plan's headroom."""
    per = plan.target["headroom"] * option.per_machine_rps

    def pods(rate: float) -> int:
        return max(1, math.ceil(rate / per - 1e-9))

    first, last = plan.phases[0].rate_rps, plan.phases[-1].rate_rps
    return min(option.machines, pods(first)), option.machines, max(option.machines, pods(last))


def _cpu_target(plan: PlanResult, option: PlanOption) -> int:
    """The CPU utilisation (%) the plan runs a pod at: its share of the load at the headroom."""
    util = 100 * plan.target["headroom"] * option.max_rate_rps / max(option.capacity_rps, 1e-9)
    return int(min(max(round(util), 10), 95))


def kubernetes_manifests(
    plan: PlanResult,
    *,
    option: PlanOption | None = None,
    image: str = "modelscale:0.1.0",
    replica_bytes: int | None = None,
) -> list[dict[str, Any]]:
    """ConfigMap, Deployment, Service and (with growth phases) HorizontalPodAutoscaler for the plan.

    The autoscaler keeps between the first phase's pods and the last phase's, at the CPU
    utilisation the plan runs a pod at (its share of the load at the headroom). A plan with one
    phase gets none: with nothing to grow to, its minimum and maximum would be equal.
    """
    opt = option or chosen_option(plan)
    name = _k8s_name(str(plan.model.get("name", "model")))
    model_file = pathlib.PurePath(str(plan.model.get("path", "model.onnx"))).name
    spec = deployment_spec(
        opt,
        model_name=str(plan.model.get("name", "model")),
        model_path=f"{CONTAINER_MODEL_DIR}/{model_file}",
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
    least, now, most = _phase_pods(plan, opt)
    docs: list[dict[str, Any]] = [
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
    ]
    if most <= least:
        return docs
    docs.append(
        {
            "apiVersion": "autoscaling/v2",
            "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": name, "labels": dict(labels)},
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
                "minReplicas": least,
                "maxReplicas": most,
                "metrics": [
                    {
                        "type": "Resource",
                        "resource": {
                            "name": "cpu",
                            "target": {
                                "type": "Utilization",
                                "averageUtilization": _cpu_target(plan, opt),
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
        }
    )
    return docs


def ray_serve_config(plan: PlanResult, *, option: PlanOption | None = None) -> dict[str, Any]:
    """A Ray Serve config (``serve run`` / ``serve deploy``) for the plan.

    The whole target runs on one Ray cluster: the current phase's replicas, autoscaling up to the
    last phase's when there are several phases. Ray's autoscaler keeps the batches in flight per
    replica near the utilisation the plan runs the replicas at.
    """
    opt = option or chosen_option(plan)
    least_pods, now_pods, most_pods = _phase_pods(plan, opt)
    least, now, most = (n * opt.replicas for n in (least_pods, now_pods, most_pods))
    utilisation = plan.target["headroom"] * opt.max_rate_rps / max(opt.capacity_rps, 1e-9)
    spec = deployment_spec(
        opt,
        model_name=str(plan.model.get("name", "model")),
        model_path=str(plan.model.get("path", "")),
        p99_ms=plan.target["p99_ms"],
        target_rps=plan.target["rps"],
        host="0.0.0.0",
        replicas=now,
        autoscaling=(least, most, round(min(max(utilisation, 0.3), 1.0), 2))
        if most > least
        else None,
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
        extra = ""
    elif kind == "k8s":
        data = kubernetes_manifests(plan, option=opt, image=image)
        model = pathlib.Path(str(plan.model.get("path", "")))
        if not model.is_file():
            raise InvalidInput(
                f"The model file {model} is not there to put into the image. Expected the file "
                "the plan was made for; plan it from its path.",
                field="emit",
            )
        try:
            place_model(model, out / model.name)
            (out / "Dockerfile").write_text(
                dockerfile(plan, image=image, out_dir=str(out)), encoding="utf-8"
            )
        except OSError as exc:
            raise InvalidInput(f"Cannot write into {out}: {exc.strerror}.", field="out") from None
        path, what = out / "k8s.yaml", "Kubernetes manifests"
        hpa = next((d["spec"] for d in data if d["kind"] == "HorizontalPodAutoscaler"), None)
        extra = (
            f"The image {image} holds the model at {CONTAINER_MODEL_DIR}/{model.name}. Build it "
            "with the Dockerfile beside this file, push it where the cluster pulls from, apply:\n"
            f"  {image_build_command(out, image)}\n"
            f"  kubectl apply -f {path}\n"
            + (
                f"The HorizontalPodAutoscaler keeps {hpa['minReplicas']} pods (the first growth "
                f"phase's) to {hpa['maxReplicas']} (the last's), at the CPU utilisation the plan "
                "runs a pod at."
                if hpa is not None
                else "No HorizontalPodAutoscaler: the plan has one phase (plan with --phases "
                "for one that scales)."
            )
        )
    elif kind == "ray":
        data = ray_serve_config(plan, option=opt)
        path = out / "ray_serve.yaml"
        extra = ""
        what = (
            f"Ray Serve config (serve run / serve deploy; {RAY_IMPORT_PATH}). The model file must "
            "be at the same path on every node. Ray's proxy costs CPU per request: with "
            "RAY_SERVE_ENABLE_HA_PROXY=1 set where Ray starts, HAProxy forwards requests to the "
            "front directly; where the rate matters, run the front outside Ray instead, on the "
            "cluster's replicas: modelscale serve -c deploy.yaml --backend ray --ray-address auto "
            "(deploy.yaml from --emit deploy; several times the rate on one machine, "
            "docs/serving.md)"
        )
    else:
        raise InvalidInput(
            f"--emit must be deploy, k8s or ray. Got {kind!r} instead.", field="emit"
        )
    header = _header(plan, opt, what) + (f"\n{extra}" if extra else "")
    text = dump_yaml(data, header=header)
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise InvalidInput(f"Cannot write {path}: {exc.strerror}.", field="out") from None
    return path
