"""The one recorder: runs, their model versions, child runs and lineage."""

from __future__ import annotations

import pathlib

import pytest

from modelscale.compress import CompressOptions, compress
from modelscale.compress import candidates as cands
from modelscale.examples import ExampleBuild, build_example
from modelscale.profile import ProfileOptions, profile_model
from modelscale.store import open_store
from modelscale.workflow import Recorder, record
from tests.compress.conftest import FAST, fast


@pytest.fixture(scope="module")
def digits() -> ExampleBuild:
    return build_example("digits")


def test_trials_are_child_runs_and_the_chosen_model_has_the_original_as_parent(
    digits: ExampleBuild, tmp_path: pathlib.Path
) -> None:
    store = open_store()
    result = compress(
        digits.model_path,
        digits.eval_path,
        options=CompressOptions(
            calibration=digits.calib_path,
            candidates=["int8-dynamic", "bf16-weights"],
            max_drop=0.05,
            out=tmp_path,
            **fast(),
        ),
    )
    recorded = record(result, store)
    search = store.run(recorded.run_id)
    assert search.kind == "compress" and search.parent_run_id is None
    assert search.results["chosen"] == result.chosen
    children = [r for r in store.runs(kind="compress") if r.parent_run_id == search.id]
    assert sorted(r.results["name"] for r in children) == sorted(t.name for t in result.trials)
    assert {r.model_version for r in children} == {result.model["sha256"]}
    assert {store.run(i).parent_run_id for i in recorded.children.values()} == {search.id}
    if result.chosen_is_original:
        assert not recorded.new_versions
        assert store.lineage(result.model["sha256"])[0].parent_sha256 is None
    else:
        lineage = store.lineage(result.chosen_sha256)
        assert [m.sha256 for m in lineage] == [result.chosen_sha256, result.model["sha256"]]
        assert lineage[0].path == result.chosen_path
        assert lineage[0].meta == {"compress_run": search.id, "candidate": result.chosen}


def test_a_failed_trial_is_stored_with_failed_status(
    digits: ExampleBuild, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(spec, **kwargs):
        raise RuntimeError("quantizer crashed")

    monkeypatch.setattr(cands, "build_candidate", broken)
    result = compress(
        digits.model_path,
        digits.eval_path,
        options=CompressOptions(candidates=["int8-dynamic"], **fast()),
    )
    store = open_store()
    recorded = record(result, store)
    failed = store.run(recorded.children["int8-dynamic"])
    assert failed.status == "failed"
    assert failed.results["error"] == "RuntimeError: quantizer crashed"
    assert store.run(recorded.children["original"]).status == "ok"
    assert result.chosen_is_original and not recorded.new_versions


def test_a_profile_is_filed_under_its_model_which_is_registered(mlp_path: pathlib.Path) -> None:
    fast_profile = ProfileOptions(batches=[1], threads=[1], measure=FAST, isolate=False)
    result = profile_model(mlp_path, options=fast_profile)
    assert Recorder.open(enabled=False).record(result) is None  # --no-store
    recorder = Recorder.open()
    run = recorder.store.run(recorder.run_id(result))  # type: ignore[union-attr,arg-type]
    sha = result.model["sha256"]
    assert run.kind == "profile" and run.model_version == sha
    model = recorder.store.model(sha)  # type: ignore[union-attr]
    assert (
        model is not None and model.name == "mlp" and model.size_bytes == result.model["size_bytes"]
    )
