"""The Ray backend's pieces in-process: the replica, the application's arguments, bad input.

Serving through a real Ray cluster, on both ways of running it, is ``test_backends.py``; the
config ``plan --emit ray`` writes is run under ``serve run`` in ``tests/plan/test_ray_e2e.py``.
"""

from __future__ import annotations

import asyncio
import pathlib
import sys

import numpy as np
import pytest
from typer.testing import CliRunner

from modelscale.cli import app
from modelscale.config import DeploymentSpec
from modelscale.errors import InvalidInput, MissingDependency
from modelscale.runtime.engine import Engine
from modelscale.serve.backend import Batch, BatchOk, BatchSplit, PartFailed
from modelscale.serve.ray_app import RayModel, build_app, check_user_config
from modelscale.serve.ray_backend import RayDeployments, _check_address, import_ray_serve


def test_a_replica_runs_whole_batches_and_isolates_a_bad_request(seq_path: pathlib.Path) -> None:
    model = RayModel(str(seq_path), threads=1)
    ids = np.ones((3, 4), dtype=np.int64)
    feeds = {"ids": ids, "mask": np.ones((3, 4), dtype=np.int64)}
    outcome = asyncio.run(model.run(Batch(feeds, (1, 2), ("out",))))
    assert isinstance(outcome, BatchOk) and outcome.outputs[0].shape == (3, 4, 8)
    expected = Engine(seq_path).run(feeds)[0]
    np.testing.assert_allclose(outcome.outputs[0], expected, rtol=1e-6)
    ids[1:] = 999  # outside the vocabulary: the second request only
    outcome = asyncio.run(model.run(Batch(feeds, (1, 2), ("out",))))
    assert isinstance(outcome, BatchSplit) and isinstance(outcome.parts[1], PartFailed)
    assert outcome.parts[1].status == 400 and model.ping() == outcome.replica


def test_user_config_changes_threads_in_place_and_rejects_anything_else(
    mlp_path: pathlib.Path,
) -> None:
    model = RayModel(str(mlp_path), threads=1)
    model.reconfigure({"threads": 2})
    assert model.threads == 2 and model.engine.options.intra_op_threads == 2
    for bad, field in (
        ({"threads": 0}, "user_config.threads"),
        ({"threads": True}, "user_config.threads"),
        ({"max_batch_size": 8}, "user_config.max_batch_size"),
        ([1, 2], "user_config"),
    ):
        with pytest.raises(InvalidInput) as info:
            model.reconfigure(bad)  # type: ignore[arg-type]
        assert info.value.field == field
    assert model.threads == 2  # a refused update leaves the replica as it was
    assert check_user_config(None, threads=3) == 3


def test_the_application_takes_a_deployment_spec_and_names_what_is_wrong(
    mlp_path: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    pytest.importorskip("ray.serve", reason="needs the ray extra")
    spec = DeploymentSpec.single(mlp_path, name="mlp").model_dump(mode="json")
    app_ = build_app({"deployment": spec})
    assert app_ is not None
    with pytest.raises(InvalidInput) as info:
        build_app({"model_path": str(mlp_path)})  # the arguments of an older release
    assert info.value.field == "args.deployment"
    with pytest.raises(InvalidInput) as info:
        build_app({"deployment": spec, "extra": 1})
    assert info.value.field == "args.extra"
    missing = {**spec, "models": {"mlp": {"versions": {"1": {"path": str(tmp_path / "x")}}}}}
    with pytest.raises(InvalidInput, match=r"models\.mlp\.versions\.1\.path"):
        build_app({"deployment": missing})


def test_without_the_ray_extra_the_message_names_the_pip_command(
    monkeypatch: pytest.MonkeyPatch, mlp_path: pathlib.Path
) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray now fails as if not installed
    with pytest.raises(MissingDependency, match=r'pip install "modelscale\[ray\]"'):
        import_ray_serve()
    result = CliRunner().invoke(
        app, ["serve", str(mlp_path), "--backend", "ray", "--no-store", "--port", "0"]
    )
    assert result.exit_code == 2, result.output
    assert 'pip install "modelscale[ray]"' in result.output


def test_an_unreachable_ray_address_fails_fast_naming_it(mlp_path: pathlib.Path) -> None:
    pytest.importorskip("ray.serve", reason="needs the ray extra")
    with pytest.raises(InvalidInput, match=r"Cannot reach the Ray cluster at 127\.0\.0\.1:9"):
        _check_address("127.0.0.1:9")
    with pytest.raises(InvalidInput, match="not host:port"):
        _check_address("nowhere")
    result = CliRunner().invoke(
        app,
        ["serve", str(mlp_path), "--backend", "ray", "--ray-address", "127.0.0.1:9",
         "--no-store", "--port", "0"],
    )  # fmt: skip
    assert result.exit_code == 2 and "Cannot reach the Ray cluster" in result.output


def test_a_spec_the_cluster_cannot_run_is_refused_naming_the_key(mlp_path: pathlib.Path) -> None:
    spec = DeploymentSpec.single(mlp_path, name="mlp", replicas=3, threads=2)
    with pytest.raises(InvalidInput) as info:
        RayDeployments(spec)._check_resources({"CPU": 4.0})
    assert info.value.field == "models.mlp.replicas" and "need 6 CPUs" in str(info.value)
    RayDeployments(spec)._check_resources({"CPU": 6.0})  # enough: no error


def test_options_only_the_ray_backend_takes_are_refused_elsewhere(
    mlp_path: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["serve", str(mlp_path), "--ray-address", "auto", "--no-store"])
    assert result.exit_code == 2 and "--ray-address needs the Ray backend" in result.output
    result = runner.invoke(app, ["serve", str(mlp_path), "--backend", "k8s", "--no-store"])
    assert result.exit_code == 2 and "--backend must be local or ray" in result.output
    config = tmp_path / "deploy.yaml"
    config.write_text(
        f"models:\n  mlp:\n    versions: {{'1': {{path: {mlp_path}}}}}\n"
        "    autoscaling: {min_replicas: 1, max_replicas: 4}\n",
        encoding="utf-8",
    )
    result = runner.invoke(app, ["serve", "-c", str(config), "--no-store", "--port", "0"])
    assert result.exit_code == 2 and "models.mlp.autoscaling" in result.output
    with pytest.raises(InvalidInput, match="num_cpus"):
        DeploymentSpec.from_dict(
            {
                "models": {"mlp": {"versions": {"1": {"path": str(mlp_path)}}}},
                "ray": {"address": "10.0.0.1:6379", "num_cpus": 4},
            }
        )
