"""Profiles for the plan: from the knowledge base when this machine measured them, else measured."""

from __future__ import annotations

import dataclasses
import pathlib

import pytest

from modelscale.errors import InvalidInput
from modelscale.machine import machine_info
from modelscale.model import ModelArtifact
from modelscale.plan.profiles import (
    measure_profile,
    resolve_model,
    stored_inputs,
    stored_profile,
)
from modelscale.profile import MeasureOptions, ProfileOptions, profile_model
from modelscale.store import open_store
from modelscale.workflow import Recorder
from tests.exported_models import save_minus_one_batch, save_stateful
from tests.plan.conftest import linear_points, profile_result

FAST = MeasureOptions(warmup_runs=1, warmup_s=0.0, min_runs=3, min_time_s=0.01, max_time_s=0.05)


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


def test_stored_profiles_are_matched_by_batch_axes(tmp_path: pathlib.Path) -> None:
    kb = open_store()
    art = ModelArtifact.load(save_stateful(tmp_path / "s.onnx"))
    default = profile_result(linear_points())  # recorded before batch axes were: the defaults
    kb.record(default, model_version=art.sha256)
    assert stored_profile(art, kb) is not None
    moved = art.with_batch_axes({"state": 1})
    assert stored_profile(moved, kb) is None  # it fed state along another axis
    axes = dataclasses.replace(
        default, params={**default.params, "batch_axes": moved.signature.batch_axes}
    )
    run_id = kb.record(axes, model_version=art.sha256)
    found = stored_profile(moved, kb)
    assert found is not None and found.run_ids == (run_id,)


def test_a_later_profile_takes_a_stored_profiles_input_shapes(tmp_path: pathlib.Path) -> None:
    """What plan's advice promises: profile once with --shape, and plan can profile the model."""
    kb = open_store()
    art = ModelArtifact.load(save_minus_one_batch(tmp_path / "m.onnx"))
    kb.register_model(art.sha256, name="m", path=str(art.path))
    assert stored_inputs(art, kb) is None
    with pytest.raises(InvalidInput, match="axis 2 is an unnamed dynamic dim"):
        measure_profile(art, batches=(1, 2), threads=(1,), max_time_s=0.05)
    shaped = profile_model(
        art,
        options=ProfileOptions(
            batches=[1], threads=[1], shapes={"x": [1, 3, 10, 14]}, measure=FAST, isolate=False
        ),
    )  # with spinning on: its points do not serve the plan, its shapes do
    run_id = Recorder(kb).run_id(shaped)
    assert stored_profile(art, kb) is None
    found = stored_inputs(art, kb)
    assert found is not None and found.run_id == run_id
    assert found.shapes == {"x": (1, 3, 10, 14)}
    prof = measure_profile(art, batches=(1, 2), threads=(1,), max_time_s=0.05, inputs=found)
    assert prof.service.measured_batches == (1, 2)
    assert f"with the inputs of profile run {run_id}" in prof.service.source
