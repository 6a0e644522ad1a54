"""Profiles for the plan: from the knowledge base when this machine measured them, else measured."""

from __future__ import annotations

import pathlib

import pytest

from modelscale.errors import InvalidInput
from modelscale.machine import machine_info
from modelscale.model import ModelArtifact
from modelscale.plan.profiles import measure_profile, resolve_model, stored_profile
from modelscale.store import open_store
from modelscale.workflow import Recorder
from tests.plan.conftest import linear_points, profile_result


def test_stored_profile_of_this_machine(mlp_path: pathlib.Path) -> None:
    kb = open_store()
    art = ModelArtifact.load(mlp_path)
    kb.register_model(art.sha256, name="mlp", path=str(mlp_path))
    assert stored_profile(art, kb) is None
    elsewhere = {**machine_info().to_dict(), "cpu_model": "Some Other CPU"}
    kb.record(
        profile_result(linear_points(per_item=9.0)), model_version=art.sha256, machine=elsewhere
    )
    assert stored_profile(art, kb) is None  # measured on another machine: not used
    kb.record(
        profile_result(linear_points(per_item=9.0), allow_spinning=True), model_version=art.sha256
    )
    assert stored_profile(art, kb) is None  # spinning threads: faster than a replica runs it
    run_id = kb.record(profile_result(linear_points(), dims={"seq": 8}), model_version=art.sha256)
    assert stored_profile(art, kb) is None  # other dims
    prof = stored_profile(art, kb, dims={"seq": 8})
    assert prof is not None and prof.run_ids == (run_id,) and not prof.measured_now
    assert prof.service.max_rel_residual < 1e-6
    assert str(run_id) in prof.service.source
    assert prof.replica_bytes == 50 * 2**20 + 100 * 2**20  # the session plus a replica process


def test_measure_profile_records_a_run(mlp_path: pathlib.Path) -> None:
    kb = open_store()
    art = ModelArtifact.load(mlp_path)
    prof = measure_profile(
        art, record=Recorder(kb).run_id, batches=(1, 4), threads=(1,), max_time_s=0.05
    )
    assert prof.measured_now and len(prof.run_ids) == 1
    assert prof.service.measured_batches == (1, 4)
    run = kb.run(prof.run_ids[0])
    assert run.kind == "profile" and run.model_version == art.sha256
    assert (
        run.params["allow_spinning"] is False and run.results["engine"]["allow_spinning"] is False
    )
    again = stored_profile(art, kb)
    assert again is not None and again.run_ids == prof.run_ids


def test_resolve_model(mlp_path: pathlib.Path, tmp_path: pathlib.Path) -> None:
    kb = open_store()
    with pytest.raises(InvalidInput, match="Unknown model 'nothing-here'"):
        resolve_model("nothing-here", store=kb)
    art = ModelArtifact.load(mlp_path)
    kb.register_model(art.sha256, name="my-mlp", path=str(mlp_path))
    assert resolve_model("my-mlp", store=kb).sha256 == art.sha256
    kb.register_model("f" * 64, name="gone", path=str(tmp_path / "gone.onnx"))
    with pytest.raises(InvalidInput, match=r"file .* is gone"):
        resolve_model("gone", store=kb)
