"""Store a search in the knowledge base: a parent run, one child run per trial, and lineage."""

from __future__ import annotations

from dataclasses import dataclass

from modelscale.compress.results import CompressResult
from modelscale.store import Store

__all__ = ["RecordedSearch", "record_search"]


@dataclass(frozen=True)
class RecordedSearch:
    """Where a search went in the knowledge base."""

    search_run_id: int
    trial_run_ids: dict[str, int]
    chosen_model_version: str
    registered_new_version: bool


def record_search(store: Store, result: CompressResult) -> RecordedSearch:
    """Record ``result``: the search as a run, each trial as a child run, the chosen model's lineage.

    Every run is filed under the original model version. The chosen model, unless it is the
    original, becomes a new model version whose parent is the original.
    """
    model = result.model
    store.register_model(
        model["sha256"], name=model["name"], path=model["path"], size_bytes=model["size_bytes"]
    )
    search_id = store.record(result, model_version=model["sha256"])
    trial_ids = {
        t.name: store.record(
            t,
            model_version=model["sha256"],
            parent_run_id=search_id,
            status="ok" if t.ok else "failed",
            note=t.description,
        )
        for t in result.trials
    }
    chosen = result.chosen_trial
    registered = False
    if not result.chosen_is_original:
        store.register_model(
            result.chosen_sha256,
            name=f"{model['name']}.{chosen.name}",
            path=result.chosen_path,
            size_bytes=chosen.size_bytes,
            parent_sha256=model["sha256"],
            meta={"compress_run": search_id, "candidate": chosen.name},
        )
        registered = True
    return RecordedSearch(
        search_run_id=search_id,
        trial_run_ids=trial_ids,
        chosen_model_version=result.chosen_sha256,
        registered_new_version=registered,
    )
