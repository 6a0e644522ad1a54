"""The one recorder: runs, their model versions, child runs and lineage."""

from __future__ import annotations

import dataclasses
import json
import pathlib
from typing import Any, ClassVar

import pytest

from modelscale.compress import CompressOptions, compress
from modelscale.compress import candidates as cands
from modelscale.errors import StoreError
from modelscale.examples import ExampleBuild, build_example
from modelscale.profile import ProfileOptions, profile_model
from modelscale.result import ModelVersionInfo, Result, RunLinks
from modelscale.store import open_store
from modelscale.workflow import NotStored, Recorder, record
from tests.compress.conftest import FAST, fast
from tests.read_only import read_only_url


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


@dataclasses.dataclass(frozen=True)
class Measured(Result):
    """A result as small as a load test's, filed under a model version."""

    kind: ClassVar[str] = "load"
    rps: float
    params: dict[str, Any] = dataclasses.field(default_factory=dict)

    def links(self) -> RunLinks:
        return RunLinks("c" * 64, models=(ModelVersionInfo("c" * 64, name="m"),))


def test_a_read_only_knowledge_base_costs_no_result(db_url: str, tmp_path: pathlib.Path) -> None:
    recorder = Recorder.open(url=read_only_url(db_url, tmp_path), tolerant=True)
    assert recorder.enabled and recorder.open_error is None  # reading works; writing will not
    kept = recorder.keep(Measured(123.0, {"rate": 10}), save_dir=tmp_path)
    assert isinstance(kept, NotStored) and ("readonly" in kept.error or "read-only" in kept.error)
    assert kept.saved is not None and kept.saved.parent == tmp_path
    assert kept.saved.name.startswith("modelscale-load-") and kept.saved.suffix == ".json"
    doc = json.loads(kept.saved.read_text())
    assert doc["kind"] == "load" and doc["model_version"] == "c" * 64
    assert doc["results"] == {"rps": 123.0} and doc["params"] == {"rate": 10}
    assert str(kept.saved) in kept.message() and "not stored" in kept.message()


def test_an_unreachable_knowledge_base_is_noted_at_open_and_the_result_saved(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = "postgresql://modelscale@127.0.0.1:1/nowhere"  # nothing listens on port 1
    with pytest.raises(StoreError, match="Cannot open the knowledge base"):
        Recorder.open(url=url)
    recorder = Recorder.open(url=url, tolerant=True)
    assert not recorder.enabled and recorder.open_error is not None
    assert "127.0.0.1:1" in recorder.open_error
    monkeypatch.chdir(tmp_path)  # saved in the working directory by default
    kept = recorder.keep(Measured(1.0))
    assert isinstance(kept, NotStored) and kept.saved is not None
    assert kept.saved.parent == tmp_path.resolve() and kept.error == recorder.open_error


def test_when_saving_fails_too_the_message_says_why(tmp_path: pathlib.Path) -> None:
    recorder = Recorder(None, open_error="the database is down.")
    kept = recorder.keep(Measured(1.0), save_dir=tmp_path / "missing")
    assert isinstance(kept, NotStored) and kept.saved is None
    assert "No such file or directory" in kept.message()


def test_no_store_keeps_nothing_and_saves_nothing(tmp_path: pathlib.Path) -> None:
    assert Recorder.open(enabled=False).keep(Measured(1.0), save_dir=tmp_path) is None
    assert list(tmp_path.iterdir()) == []
