from __future__ import annotations

import pathlib

import pytest

from modelscale.compress import candidates as cands
from modelscale.compress import compress, record_search
from modelscale.examples import ExampleBuild
from modelscale.store import open_store
from tests.compress.conftest import fast


def test_trials_are_child_runs_and_the_chosen_model_has_the_original_as_parent(
    digits: ExampleBuild, tmp_path: pathlib.Path
) -> None:
    store = open_store()
    result = compress(
        digits.model_path,
        digits.eval_path,
        calibration=digits.calib_path,
        candidates=["int8-dynamic", "bf16-weights"],
        max_drop=0.05,
        out=tmp_path,
        **fast(),
    )
    recorded = record_search(store, result)
    search = store.run(recorded.search_run_id)
    assert search.kind == "compress" and search.parent_run_id is None
    assert search.results["chosen"] == result.chosen
    children = [r for r in store.runs(kind="compress") if r.parent_run_id == search.id]
    assert sorted(r.results["name"] for r in children) == sorted(t.name for t in result.trials)
    assert {r.model_version for r in children} == {result.model["sha256"]}
    if result.chosen_is_original:
        assert not recorded.registered_new_version
        assert store.lineage(result.model["sha256"])[0].parent_sha256 is None
    else:
        lineage = store.lineage(result.chosen_sha256)
        assert [m.sha256 for m in lineage] == [result.chosen_sha256, result.model["sha256"]]
        assert lineage[0].path == result.chosen_path


def test_a_failed_trial_is_stored_with_failed_status(
    digits: ExampleBuild, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(spec, **kwargs):
        raise RuntimeError("quantizer crashed")

    monkeypatch.setattr(cands, "build_candidate", broken)
    result = compress(digits.model_path, digits.eval_path, candidates=["int8-dynamic"], **fast())
    store = open_store()
    recorded = record_search(store, result)
    failed = store.run(recorded.trial_run_ids["int8-dynamic"])
    assert failed.status == "failed"
    assert failed.results["error"] == "RuntimeError: quantizer crashed"
    assert store.run(recorded.trial_run_ids["original"]).status == "ok"
    assert result.chosen_is_original and not recorded.registered_new_version
