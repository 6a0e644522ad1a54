"""Emitted deployment files parse, round-trip, and say what the plan says."""

from __future__ import annotations

import dataclasses
import json
import math
import pathlib
import shlex
import subprocess
import sys

import pytest
import yaml

import modelscale.config
from modelscale.errors import InvalidInput
from modelscale.machine import MachineInfo
from modelscale.plan import (
    BatchPolicy,
    PlanOptions,
    PlanResult,
    ServiceModel,
    chosen_option,
    deployment_spec,
    emit,
    image_build_command,
    kubernetes_manifests,
    load_catalog,
    plan_capacity,
    ray_serve_config,
)
from modelscale.plan.emit import dump_yaml

OPTS = {"sim_requests": 5_000, "policies": (BatchPolicy(1), BatchPolicy(4))}


@pytest.fixture
def plan(
    service: ServiceModel, two_core_machine: MachineInfo, mlp_path: pathlib.Path
) -> PlanResult:
    return plan_capacity(
        service, rps=1500.0, p99_ms=40.0, catalog=load_catalog(), machine=two_core_machine,
        options=PlanOptions(**OPTS, machine="c7i.xlarge", phases=(3000.0,)),
        model={"name": "mlp", "sha256": "cd" * 32, "path": str(mlp_path)},
        replica_bytes=200 * 2**20,
    )  # fmt: skip


def test_deploy_yaml_round_trips_and_validates(plan: PlanResult, tmp_path: pathlib.Path) -> None:
    path = emit(plan, "deploy", tmp_path)
    text = path.read_text(encoding="utf-8")
    assert text.startswith("# deploy.yaml for modelscale serve")
    data = yaml.safe_load(text)
    opt = chosen_option(plan)
    spec = deployment_spec(
        opt, model_name="mlp", model_path=plan.model["path"], p99_ms=40.0, target_rps=1500.0
    )
    assert (
        data["models"]
        == spec.model_dump(
            mode="json",
            exclude={
                "models": {"mlp": {"autoscaling": True, "versions": {"1": {"batch_time_ms"}}}}
            },
        )["models"]
    )
    assert data["backend"] == "local" and "ray" not in data
    m = data["models"]["mlp"]
    assert (m["replicas"], m["threads"]) == (opt.replicas, opt.threads)
    assert m["batching"]["max_batch"] == opt.max_batch
    slo = {k: m["slo"][k] for k in ("p99_ms", "target_rps", "availability", "latency")}
    assert slo == {
        "p99_ms": 40.0,
        "target_rps": round(1500.0 / opt.machines, 3),
        "availability": None,  # objectives the plan does not set
        "latency": None,
    }
    assert m["versions"] == {"1": {"path": plan.model["path"], "weight": 1.0}}
    assert data["store"] == {"url": None}
    assert yaml.safe_load(dump_yaml(data)) == data


def test_deploy_yaml_is_a_valid_deployment_spec(plan: PlanResult, tmp_path: pathlib.Path) -> None:
    spec_cls = getattr(modelscale.config, "DeploymentSpec", None)
    if spec_cls is None:
        pytest.skip("modelscale.config.DeploymentSpec is not available in this checkout")
    path = emit(plan, "deploy", tmp_path)
    spec = modelscale.config.load_deployment(path)
    model = spec.models["mlp"]
    opt = chosen_option(plan)
    assert (model.replicas, model.threads, model.batching.max_batch) == (
        opt.replicas, opt.threads, opt.max_batch,
    )  # fmt: skip
    assert model.slo.p99_ms == 40.0


def test_kubernetes_manifests(plan: PlanResult, tmp_path: pathlib.Path) -> None:
    docs = list(yaml.safe_load_all(emit(plan, "k8s", tmp_path).read_text(encoding="utf-8")))
    assert docs == kubernetes_manifests(plan)
    kinds = [d["kind"] for d in docs]
    assert kinds == ["ConfigMap", "Deployment", "Service", "HorizontalPodAutoscaler"]
    cm, dep, svc, hpa = docs
    opt = chosen_option(plan)
    container = dep["spec"]["template"]["spec"]["containers"][0]
    res = container["resources"]
    assert res["requests"] == res["limits"]
    assert res["requests"]["cpu"] == str(opt.replicas * opt.threads)
    assert res["requests"]["memory"].endswith("Mi")
    assert int(res["requests"]["memory"][:-2]) >= 512 + opt.replicas * 200
    assert dep["spec"]["replicas"] == opt.machines
    assert dep["spec"]["template"]["spec"]["nodeSelector"] == {
        "node.kubernetes.io/instance-type": "c7i.xlarge"
    }
    assert svc["spec"]["ports"][0]["targetPort"] == 8000
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"]["name"] == dep["metadata"]["name"]
    assert hpa["spec"]["minReplicas"] == opt.machines
    last = plan.phases[-1].recommended
    assert hpa["spec"]["maxReplicas"] >= last.machines > opt.machines
    target = hpa["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"]
    assert 10 <= target <= 95
    inner = yaml.safe_load(cm["data"]["deploy.yaml"])
    assert (
        inner["models"]["mlp"]["versions"]["1"]["path"]
        == f"/models/{pathlib.Path(plan.model['path']).name}"
    )
    assert inner["server"]["host"] == "0.0.0.0"


def test_ray_serve_config(plan: PlanResult, tmp_path: pathlib.Path) -> None:
    data = yaml.safe_load(emit(plan, "ray", tmp_path).read_text(encoding="utf-8"))
    assert data == ray_serve_config(plan)
    app = data["applications"][0]
    assert app["import_path"] == modelscale.config.RAY_IMPORT_PATH
    # The application carries a deployment spec, the same schema as deploy.yaml.
    spec = modelscale.config.DeploymentSpec.from_dict(app["args"]["deployment"])
    opt = chosen_option(plan)
    model = spec.models["mlp"]
    assert spec.backend == "ray" and model.threads == opt.threads
    assert model.batching.max_batch == opt.max_batch  # batching runs in the front
    assert model.batching.max_queue >= 2 * opt.max_batch * opt.replicas  # backpressure: 503
    front, version = app["deployments"]
    assert front["name"] == modelscale.config.RAY_FRONT
    assert front["ray_actor_options"] == {"num_cpus": 0}
    assert version["name"] == modelscale.config.ray_deployment_name("mlp", "1")
    assert version["ray_actor_options"]["num_cpus"] == opt.threads
    assert version["user_config"] == {"threads": opt.threads}
    auto = version["autoscaling_config"]  # two phases: from now to the last phase's replicas
    assert auto["min_replicas"] == opt.machines * opt.replicas == model.autoscaling.min_replicas
    assert auto["max_replicas"] > auto["min_replicas"]
    assert 0 < auto["target_ongoing_requests"] <= 1.0
    assert app["logging_config"] == {"enable_access_log": False}
    one_phase = dataclasses.replace(plan, phases=plan.phases[:1])
    fixed = ray_serve_config(one_phase)["applications"][0]["deployments"][1]
    assert fixed["num_replicas"] == opt.machines * opt.replicas
    assert "autoscaling_config" not in fixed
    from ray.serve.schema import ServeDeploySchema

    ServeDeploySchema.model_validate(data)  # Ray's own schema for `serve deploy` accepts it


def test_nothing_to_emit(plan: PlanResult, tmp_path: pathlib.Path) -> None:
    empty = dataclasses.replace(
        plan, phases=tuple(dataclasses.replace(p, recommended=None) for p in plan.phases)
    )
    with pytest.raises(InvalidInput, match="Nothing to emit"):
        emit(empty, "deploy", tmp_path)
    with pytest.raises(InvalidInput, match="--emit must be"):
        emit(plan, "helm", tmp_path)  # type: ignore[arg-type]


def test_the_autoscaler_spans_the_first_phase_to_the_last(
    service: ServiceModel, two_core_machine: MachineInfo, mlp_path: pathlib.Path
) -> None:
    plan = plan_capacity(
        service, rps=1500.0, p99_ms=40.0, catalog=load_catalog(), machine=two_core_machine,
        options=PlanOptions(**OPTS, machine="c7i.xlarge", phases=(100.0, 6000.0)),
        model={"name": "mlp", "sha256": "cd" * 32, "path": str(mlp_path)},
    )  # fmt: skip
    docs = kubernetes_manifests(plan)
    dep, hpa = docs[1], docs[3]
    opt = chosen_option(plan)
    per_pod = plan.target["headroom"] * opt.per_machine_rps
    assert dep["spec"]["replicas"] == opt.machines  # started at the target's pods
    assert hpa["spec"]["minReplicas"] == max(1, math.ceil(100.0 / per_pod)) < opt.machines
    assert hpa["spec"]["maxReplicas"] == math.ceil(6000.0 / per_pod) > opt.machines
    # The CPU target is the utilisation the plan runs a pod at: its share at the headroom.
    target = hpa["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"]
    assert target == round(100 * plan.target["headroom"] * opt.max_rate_rps / opt.capacity_rps)
    auto = ray_serve_config(plan)["applications"][0]["deployments"][1]["autoscaling_config"]
    assert auto["min_replicas"] == hpa["spec"]["minReplicas"] * opt.replicas


def test_one_phase_gets_no_autoscaler_that_cannot_scale(
    plan: PlanResult, tmp_path: pathlib.Path
) -> None:
    one_phase = dataclasses.replace(plan, phases=plan.phases[:1])
    text = emit(one_phase, "k8s", tmp_path).read_text(encoding="utf-8")
    assert [d["kind"] for d in yaml.safe_load_all(text)] == ["ConfigMap", "Deployment", "Service"]
    assert "No HorizontalPodAutoscaler: the plan has one phase" in text


def test_the_image_the_deployment_names_can_be_built_from_the_folder(
    plan: PlanResult, tmp_path: pathlib.Path
) -> None:
    out = tmp_path / "deploy"
    text = emit(plan, "k8s", out, image="registry.example/mlp:1").read_text(encoding="utf-8")
    (_, dep, *_) = yaml.safe_load_all(text)
    container = dep["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "registry.example/mlp:1"
    docker = (out / "Dockerfile").read_text(encoding="utf-8")
    lines = [line for line in docker.splitlines() if line and not line.startswith("#")]
    assert lines[0].startswith("FROM python:3.")
    copies = [line.split()[1:] for line in lines if line.startswith("COPY ")]
    # Every COPY source is in the folder once the wheel is: the model is placed there now.
    model = pathlib.Path(plan.model["path"])
    assert copies == [["modelscale-*.whl", "/tmp/"], [model.name, f"/models/{model.name}"]]
    assert (out / model.name).read_bytes() == model.read_bytes()
    # The container runs the model at the path deploy.yaml names, with the Deployment's command.
    inner = yaml.safe_load(next(yaml.safe_load_all(text))["data"]["deploy.yaml"])
    assert inner["models"]["mlp"]["versions"]["1"]["path"] == f"/models/{model.name}"
    assert lines[-1] == "CMD " + json.dumps(container["command"])
    build = image_build_command(out, "registry.example/mlp:1")
    assert build.endswith(f"docker build -t registry.example/mlp:1 {out}")
    assert build.startswith(f"pip wheel --no-deps --wheel-dir {out} ")  # an editable install here
    assert build in docker and build in text
    emit(plan, "k8s", out)  # again: the model already there is kept
    assert (out / model.name).read_bytes() == model.read_bytes()


def test_k8s_needs_the_model_file(plan: PlanResult, tmp_path: pathlib.Path) -> None:
    gone = dataclasses.replace(plan, model={**plan.model, "path": str(tmp_path / "gone.onnx")})
    with pytest.raises(InvalidInput, match=r"gone.onnx is not there to put into the image"):
        emit(gone, "k8s", tmp_path / "out")


@pytest.mark.slow
def test_the_build_command_s_wheel_step_makes_the_wheel_the_dockerfile_copies(
    plan: PlanResult, tmp_path: pathlib.Path
) -> None:
    out = tmp_path / "deploy"
    emit(plan, "k8s", out)
    wheel_step = image_build_command(out, "modelscale:test").split(" && ")[0]
    args = shlex.split(wheel_step)
    assert args[:2] == ["pip", "wheel"]
    subprocess.run(
        [sys.executable, "-m", *args, "--no-build-isolation", "--quiet"],
        check=True,
        timeout=300,
    )
    assert len(list(out.glob("modelscale-*.whl"))) == 1
