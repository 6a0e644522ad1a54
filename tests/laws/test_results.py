"""Results as runs: JSON-ready, stored in the knowledge base, and usable again once read back."""

from __future__ import annotations

import json
import pathlib

import pytest

from modelscale.config import get_settings
from modelscale.laws import ScalingLaw, ScalingLawFit, compute_optimal
from modelscale.store import open_store


@pytest.fixture
def temp_store(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> pathlib.Path:
    db = tmp_path / "laws.db"
    monkeypatch.setenv("MODELSCALE_DB", f"sqlite:///{db}")
    get_settings.cache_clear()
    yield db
    get_settings.cache_clear()


def test_stored_fit_appears_and_is_reusable(
    synthetic_fit: ScalingLawFit, temp_store: pathlib.Path
) -> None:
    store = open_store()
    run_id = store.record(synthetic_fit)
    assert temp_store.exists()
    runs = store.runs(kind="laws")
    assert [r.id for r in runs] == [run_id]
    run = runs[0]
    assert run.results["analysis"] == "fit" and run.results["summary"] == synthetic_fit.summary
    assert run.params["form"] == "chinchilla" and run.params["seed"] == 1
    assert ScalingLaw.from_dict(run.results["law"]) == synthetic_fit.law
    from_store = compute_optimal(run.results, flops=[1e20], warn=False)
    direct = compute_optimal(synthetic_fit, flops=[1e20], warn=False)
    assert from_store.allocations == direct.allocations

    optimal_id = store.record(from_store, parent_run_id=run_id)
    child = store.run(optimal_id)
    assert child.parent_run_id == run_id and child.results["analysis"] == "optimal"


def test_results_are_strict_json(synthetic_fit: ScalingLawFit) -> None:
    text = json.dumps(synthetic_fit.to_dict(), allow_nan=False)
    data = json.loads(text)
    assert {e["name"] for e in data["estimates"]} == {"E", "A", "B", "alpha", "beta"}
    assert len(data["bootstrap_samples"]) == synthetic_fit.bootstrap_succeeded
