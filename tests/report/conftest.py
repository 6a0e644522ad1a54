"""A knowledge base holding what a real demo recorded (tests/data/demo-runs.json.gz)."""

from __future__ import annotations

import datetime as dt
import gzip
import json
import pathlib
from collections.abc import Iterator

import pytest
from sqlalchemy import delete

from modelscale.store import Store, open_store
from modelscale.store.schema import ModelVersionRow, RunRow

DEMO_RUNS = pathlib.Path(__file__).resolve().parents[1] / "data" / "demo-runs.json.gz"


def _time(value: str) -> dt.datetime:
    at = dt.datetime.fromisoformat(value)
    return at if at.tzinfo else at.replace(tzinfo=dt.UTC)


def load_demo_runs(store: Store) -> None:
    """Insert the demo's model versions and runs with their ids, moved in time so that the
    newest ran a minute ago (evidence ages stay what they were when the demo ran)."""
    doc = json.loads(gzip.decompress(DEMO_RUNS.read_bytes()))
    newest = max(_time(r["created_at"]) for r in doc["runs"])
    shift = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1) - newest
    with store._sessions() as s:
        for v in doc["model_versions"]:
            s.add(ModelVersionRow(**{**v, "created_at": _time(v["created_at"]) + shift}))
        for r in doc["runs"]:
            s.add(RunRow(**{**r, "created_at": _time(r["created_at"]) + shift}))
        s.commit()


def delete_runs(store: Store, ids: list[int]) -> None:
    """Remove runs, as someone pruning the knowledge base would."""
    with store._sessions() as s:
        s.execute(delete(RunRow).where(RunRow.id.in_(ids)))
        s.commit()


@pytest.fixture
def demo_store() -> Iterator[Store]:
    """The test's default knowledge base (MODELSCALE_DB), holding the demo's runs."""
    store = open_store()
    load_demo_runs(store)
    try:
        yield store
    finally:
        store.close()
