"""assess: the baseline keeps its evidence; slower and less accurate models are flagged, an
unchanged one is not; baselines are found or refused with a clear message."""

from __future__ import annotations

import pathlib
import shutil
from typing import Any

import numpy as np
import pytest

from modelscale.errors import InvalidInput
from modelscale.model import ModelArtifact
from modelscale.store import Store, open_store
from modelscale.workflow import record
from modelscale.workflow.assess import AssessOptions, AssessResult, assess_model
from modelscale.workflow.assess_baseline import find_baseline, resolve_model
from modelscale.workflow.assess_stats import Verdict
from tests.workflow.assess_models import LoadRun, save_files

# Short blocks: the planted effects (30x slower, every prediction wrong) dwarf any noise.
FAST = {"batches": (1,), "blocks": 4, "block_s": 0.05, "load": False}


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, pathlib.Path]:
    return save_files(tmp_path_factory.mktemp("assess"))


@pytest.fixture
def store(tmp_path: pathlib.Path) -> Store:
    return open_store(f"sqlite:///{tmp_path / 'kb.db'}")


def _assess(
    store: Store, path: pathlib.Path, *, baseline: int | None = None, **options: Any
) -> tuple[AssessResult, int]:
    artifact = ModelArtifact.load(path, name="clf")
    base = find_baseline(store, artifact, baseline)
    result = assess_model(artifact, baseline=base, options=AssessOptions(**{**FAST, **options}))
    return result, record(result, store).run_id


def _check(result: AssessResult, name: str) -> Any:
    return next(c for c in result.checks if c.name.startswith(name))


def test_the_first_assessment_is_the_baseline_and_keeps_its_evidence(
    files: dict[str, pathlib.Path], store: Store
) -> None:
    result, run_id = _assess(store, files["model"], eval=files["eval"])
    assert result.baseline_run_id is None
    assert {c.verdict for c in result.checks} == {Verdict.BASELINE}
    assert "baseline" in result.summary
    (point,) = result.evidence["latency"]
    assert (point["batch"], point["threads"], len(point["block_ms"])) == (1, 1, 4)
    acc = result.evidence["accuracy"]
    assert acc["rows"] == 200 and acc["hits"] == "1" * 200 and acc["accuracy"] == 1.0
    run = store.run(run_id)
    assert run.kind == "assess"
    assert run.model_version == ModelArtifact.load(files["model"]).sha256
    assert run.results["evidence"]["accuracy"]["hits"] == "1" * 200


def test_a_slower_model_is_flagged_side_by_side(
    files: dict[str, pathlib.Path], store: Store
) -> None:
    _, base = _assess(store, files["model"], eval=files["eval"])
    result, _ = _assess(store, files["slow"], baseline=base)
    latency = _check(result, "latency")
    assert latency.method == "side by side"
    assert result.side_by_side["latency"][0]["batch"] == 1
    assert latency.verdict == Verdict.REGRESSION, latency
    assert latency.low > 1.10
    assert _check(result, "accuracy").verdict == Verdict.OK  # same predictions
    assert result.regressed
    assert "regression" in result.summary and "latency" in result.summary


def test_a_slower_model_is_flagged_against_stored_blocks_when_the_baseline_file_is_gone(
    files: dict[str, pathlib.Path], store: Store, tmp_path: pathlib.Path
) -> None:
    gone = shutil.copy(files["model"], tmp_path / "clf.onnx")
    # Others' CPU is ignored here: this checks the statistics, not the disturbance guard.
    _, base = _assess(store, pathlib.Path(gone), accuracy=False)
    pathlib.Path(gone).unlink()
    result, _ = _assess(store, files["slow"], baseline=base, accuracy=False, max_other_cores=1000.0)
    latency = _check(result, "latency")
    assert latency.method == "against stored"
    assert latency.verdict == Verdict.REGRESSION, latency
    assert any("gone" in n for n in result.notes)


def test_a_model_with_flipped_outputs_is_flagged_less_accurate(
    files: dict[str, pathlib.Path], store: Store
) -> None:
    _, base = _assess(store, files["model"], eval=files["eval"], latency=False)
    # The eval set comes from the baseline run.
    result, _ = _assess(store, files["flipped"], baseline=base, latency=False)
    acc = _check(result, "accuracy")
    assert acc.verdict == Verdict.REGRESSION
    assert acc.baseline == 1.0 and acc.now < 0.5
    assert acc.high < -0.005 and acc.p_value < 1e-6
    assert result.regressed


def test_the_unchanged_model_is_not_flagged(files: dict[str, pathlib.Path], store: Store) -> None:
    _assess(store, files["model"], eval=files["eval"], block_s=0.1)
    result, _ = _assess(store, files["model"], block_s=0.1)  # baseline found by sha256
    assert result.baseline_run_id is not None
    assert not result.regressed, result.checks
    acc = _check(result, "accuracy")
    assert (acc.effect, acc.low, acc.high, acc.verdict) == (0.0, 0.0, 0.0, Verdict.OK)
    assert _check(result, "latency").method == "against stored"


def test_an_eval_set_other_than_the_baselines_is_refused(
    files: dict[str, pathlib.Path], store: Store
) -> None:
    _, base = _assess(store, files["model"], eval=files["eval"], latency=False)
    with pytest.raises(InvalidInput, match="'eval' parameter of assess must be the baseline's"):
        _assess(store, files["model"], baseline=base, eval=files["other_eval"], latency=False)


def test_find_baseline_refuses_a_run_of_another_kind_and_a_missing_run(
    files: dict[str, pathlib.Path], store: Store
) -> None:
    artifact = ModelArtifact.load(files["model"])
    load_id = store.record(LoadRun())
    with pytest.raises(InvalidInput, match=rf"Got {load_id} instead, a run of kind load") as exc:
        find_baseline(store, artifact, load_id)
    assert exc.value.field == "baseline"
    with pytest.raises(InvalidInput, match="Got 999 instead: no run has that id"):
        find_baseline(store, artifact, 999)


def test_find_baseline_takes_the_oldest_of_the_version_then_of_the_name(
    files: dict[str, pathlib.Path], store: Store
) -> None:
    artifact = ModelArtifact.load(files["model"], name="clf")
    assert find_baseline(store, artifact) is None
    _, first = _assess(store, files["model"], latency=False, eval=files["eval"])
    _assess(store, files["model"], latency=False)
    base = find_baseline(store, artifact)
    assert base is not None and base.id == first
    other = ModelArtifact.load(files["flipped"], name="clf")  # another version, same name
    base = find_baseline(store, other)
    assert base is not None and base.id == first


def test_resolve_model_takes_a_file_or_a_known_name(
    files: dict[str, pathlib.Path], store: Store
) -> None:
    _assess(store, files["model"], latency=False, eval=files["eval"])
    assert resolve_model("clf", store).sha256 == ModelArtifact.load(files["model"]).sha256
    with pytest.raises(InvalidInput, match="'model' parameter of assess must be an ONNX file"):
        resolve_model("no-such-model", store)


@pytest.mark.parametrize(
    ("options", "name"),
    [
        ({"blocks": 1}, "blocks"),
        ({"windows": 0}, "windows"),
        ({"block_s": 0}, "block_s"),
        ({"max_slowdown": 0.9}, "max_slowdown"),
        ({"max_accuracy_drop": 2}, "max_accuracy_drop"),
        ({"max_rate_drop": -0.1}, "max_rate_drop"),
        ({"confidence": 1.0}, "confidence"),
        ({"max_other_cores": float("nan")}, "max_other_cores"),
        ({"batches": [0]}, "batches"),
        ({"concurrency": 0}, "concurrency"),
    ],
)
def test_bad_options_are_refused_naming_the_parameter(options: dict[str, Any], name: str) -> None:
    with pytest.raises(InvalidInput, match=rf"The '{name}' parameter of assess must be"):
        AssessOptions(**options)


def test_turning_every_check_off_is_refused() -> None:
    with pytest.raises(InvalidInput, match="Every check of assess is turned off"):
        AssessOptions(latency=False, accuracy=False, load=False)


@pytest.mark.e2e
def test_the_load_test_measures_windows_and_compares_them(
    files: dict[str, pathlib.Path], store: Store
) -> None:
    quick = {"latency": False, "accuracy": False, "load": True, "windows": 2, "window_s": 0.3}
    first, _ = _assess(store, files["model"], **quick)
    load = first.evidence["load"]
    assert len(load["rates"]) == 2 and min(load["rates"]) > 1
    assert (load["concurrency"], load["max_batch"], load["serve_threads"]) == (16, 8, 1)
    assert _check(first, "max rate").verdict == Verdict.BASELINE
    again, _ = _assess(store, files["model"], **quick)
    rate = _check(again, "max rate")
    assert rate.method == "against stored"
    assert rate.low is not None and rate.low <= rate.effect <= rate.high
    assert np.isfinite(rate.effect)
