"""The SLO batcher's starting batch time: fitted to this machine's stored profile of the file."""

from __future__ import annotations

import asyncio
import pathlib

import pytest

from modelscale.config import DeploymentSpec
from modelscale.machine import machine_info
from modelscale.model import ModelArtifact
from modelscale.serve.metrics import Metrics
from modelscale.serve.prior import fit_batch_time, stored_batch_time, with_stored_batch_times
from modelscale.serve.registry import ModelRegistry
from modelscale.store import open_store
from tests.plan.conftest import linear_points, profile_result

from .test_batcher import FakePool


def test_fit_takes_the_threads_asked_and_the_dims_with_most_sizes() -> None:
    points = [
        {"batch": n, "threads": 1, "dims": {"seq": 32}, "p50_ms": 3.0 + 8.0 * n}
        for n in (1, 2, 4, 8)
    ]
    points += [{"batch": n, "threads": 2, "dims": {"seq": 32}, "p50_ms": 1.0 + n} for n in (1, 4)]
    points += [{"batch": 1, "threads": 1, "dims": {"seq": 128}, "p50_ms": 40.0}]
    points += [{"batch": "x"}, {"threads": 1}, {"batch": 2, "threads": 1, "p50_ms": -1}]
    a, b = fit_batch_time(points, 1)  # type: ignore[misc]
    assert (a, b) == (pytest.approx(3.0), pytest.approx(8.0))
    assert fit_batch_time(points, 2) == (pytest.approx(1.0), pytest.approx(1.0))
    assert fit_batch_time(points, 4) is None  # no points at 4 threads
    assert fit_batch_time(points[:1], 1) is None  # one batch size gives no line
    falling = [{"batch": n, "threads": 1, "p50_ms": 10.0 - n} for n in (1, 2, 4)]
    assert fit_batch_time(falling, 1) is None
    steep = [{"batch": n, "threads": 1, "p50_ms": 5.0 * n - 1.0} for n in (1, 2, 4)]
    a, b = fit_batch_time(steep, 1)  # type: ignore[misc]
    assert a == 0.0 and b > 0  # a negative intercept: through the origin instead


def test_only_this_machines_profile_of_this_file_without_spinning_counts(
    mlp_path: pathlib.Path,
) -> None:
    kb = open_store()
    art = ModelArtifact.load(mlp_path)
    kb.register_model(art.sha256, name="mlp", path=str(mlp_path))
    assert stored_batch_time(kb, art, 1) is None
    elsewhere = {**machine_info().to_dict(), "cpu_model": "Some Other CPU"}
    kb.record(profile_result(linear_points()), model_version=art.sha256, machine=elsewhere)
    kb.record(profile_result(linear_points(), allow_spinning=True), model_version=art.sha256)
    assert stored_batch_time(kb, art, 1) is None
    kb.record(profile_result(linear_points(fixed=1.0, per_item=2.0)), model_version=art.sha256)
    assert stored_batch_time(kb, art, 1) == (pytest.approx(1.0), pytest.approx(2.0))

    spec = DeploymentSpec.single(mlp_path, name="mlp", p99_ms=100)
    filled = with_stored_batch_times(spec, kb)
    assert filled.models["mlp"].versions["1"].batch_time_ms == (
        pytest.approx(1.0),
        pytest.approx(2.0),
    )
    fixed = DeploymentSpec.single(mlp_path, name="mlp")  # no objective: nothing to start
    assert with_stored_batch_times(fixed, kb) is fixed
    kb.close()


def test_the_batcher_starts_from_the_versions_batch_time(mlp_path: pathlib.Path) -> None:
    data = DeploymentSpec.single(mlp_path, name="mlp", p99_ms=100).model_dump(mode="json")
    data["models"]["mlp"]["versions"]["1"]["batch_time_ms"] = [3.0, 8.0]
    spec = DeploymentSpec.from_dict(data)

    async def main() -> None:
        registry = ModelRegistry(
            spec,
            metrics=Metrics(),
            backends=lambda *_: FakePool(),  # type: ignore[arg-type,return-value]
        )
        policy = registry.find("mlp", "1").policy
        assert policy is not None and policy.service.known
        assert policy.service.mean(4) == pytest.approx(0.035)
        assert policy.cap() == 5  # 3 + 8 n <= 50 ms, before any batch ran

    asyncio.run(main())


@pytest.mark.parametrize("line", [[-1.0, 2.0], [1.0, 0.0], [1.0, float("nan")], [1.0]])
def test_a_bad_batch_time_is_refused_naming_it(mlp_path: pathlib.Path, line: list) -> None:
    data = DeploymentSpec.single(mlp_path, name="mlp", p99_ms=100).model_dump(mode="json")
    data["models"]["mlp"]["versions"]["1"]["batch_time_ms"] = line
    with pytest.raises(Exception, match="batch_time_ms"):
        DeploymentSpec.from_dict(data)
