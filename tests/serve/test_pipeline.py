"""The request pipeline: features' stages run in place, recorders never slow or fail a request."""

from __future__ import annotations

import pathlib
import threading
from collections.abc import Sequence
from typing import ClassVar

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient

from modelscale.config import DeploymentSpec
from modelscale.errors import InvalidInput
from modelscale.serve.front import build_front
from modelscale.serve.pipeline import Endpoint, Exchange, Stage, StageContext, assemble
from modelscale.serve.protocol import ApiError
from modelscale.serve.records import RecordQueue, RequestRecord
from modelscale.serve.stages import AnswerStage, DispatchStage
from tests.serve.conftest import infer_body


class Tag:
    """A feature's stage: tags requests after routing, refuses those asking for 'blocked'."""

    name: ClassVar[str] = "tag"
    endpoints: ClassVar[frozenset[Endpoint]] = frozenset({Endpoint.INFER})

    def __init__(self, seen: list[str]) -> None:
        self.seen = seen

    async def __call__(self, ex: Exchange) -> None:
        assert ex.runtime is not None  # placed after the route stage
        self.seen.append(ex.runtime.version)
        if ex.request_id == "blocked":
            raise ApiError(403, "this request is refused by a stage.", field="id")
        ex.extras = {"arm": "a"}


class TagFactory:
    place = ("after", "route")

    def __init__(self) -> None:
        self.seen: list[str] = []

    def __call__(self, context: StageContext) -> Stage | None:
        assert "mlp" in context.spec.models and context.registry.models
        return Tag(self.seen)


class Collect:
    """A recorder keeping what it gets; optionally slow (blocks until released) or broken."""

    name = "collect"

    def __init__(self, *, threaded: bool = False, capacity: int = 1000, broken: bool = False):
        self.threaded = threaded
        self.capacity = capacity
        self.broken = broken
        self.records: list[RequestRecord] = []
        self.release = threading.Event()
        if not threaded:
            self.release.set()

    def record(self, records: Sequence[RequestRecord]) -> None:
        self.release.wait(10)
        if self.broken:
            raise RuntimeError("a broken recorder")
        self.records.extend(records)


def _client(spec: DeploymentSpec, **kw: object) -> TestClient:
    return TestClient(build_front(spec, manage_registry=True, **kw))  # type: ignore[arg-type]


def _x(rows: int = 1) -> np.ndarray:
    return np.zeros((rows, 16), dtype=np.float32)


def _dropped(client: TestClient) -> dict[str, float]:
    families = text_string_to_metric_families(client.get("/metrics").text)
    family = next(f for f in families if f.name == "modelscale_records_dropped")
    return {s.labels["recorder"]: s.value for s in family.samples if s.name.endswith("_total")}


def test_a_features_stage_runs_in_place_and_its_extras_reach_the_recorders(
    mlp_path: pathlib.Path,
) -> None:
    factory, collect = TagFactory(), Collect()
    spec = DeploymentSpec.single(mlp_path, name="mlp")
    with _client(spec, stages=[factory], recorders=[collect]) as client:
        r = client.post("/v2/models/mlp/infer", json=infer_body(_x(2), id="r1"))
        assert r.status_code == 200
        r = client.post("/v2/models/mlp/infer", json=infer_body(_x(), id="blocked"))
        assert r.status_code == 403 and r.json()["field"] == "id"
        client.get("/v2/health/ready")  # not an inference request: passes no feature stage
    assert factory.seen == ["1", "1"]
    ok, refused = collect.records
    assert (ok.model, ok.version, ok.status, ok.request_id) == ("mlp", "1", 200, "r1")
    assert ok.rows == 2 and ok.batch_rows == 2 and ok.extras == {"arm": "a"}
    assert ok.outputs is not None and ok.outputs["y"].shape == (2, 4)
    assert ok.latency_s >= ok.queue_s >= ok.batch_wait_s >= 0 and ok.front_s is not None
    assert refused.status == 403 and refused.error and refused.queue_s is None


def test_a_recorder_that_falls_behind_drops_and_counts_and_never_blocks(
    mlp_path: pathlib.Path,
) -> None:
    slow = Collect(threaded=True, capacity=3)
    spec = DeploymentSpec.single(mlp_path, name="mlp")
    with _client(spec, recorders=[slow]) as client:
        for _ in range(12):  # the recorder's thread is stuck on its first batch meanwhile
            assert client.post("/v2/models/mlp/infer", json=infer_body(_x())).status_code == 200
        dropped = _dropped(client)
        assert dropped["metrics"] == 0 and 0 < dropped["collect"] <= 12 - 3
        slow.release.set()
    # Stopping drains what was queued: everything that was not dropped is recorded.
    assert len(slow.records) + dropped["collect"] == 12


def test_a_broken_recorder_fails_no_request(mlp_path: pathlib.Path, caplog) -> None:
    broken = Collect(broken=True)
    spec = DeploymentSpec.single(mlp_path, name="mlp")
    with _client(spec, recorders=[broken]) as client:
        for _ in range(3):
            assert client.post("/v2/models/mlp/infer", json=infer_body(_x())).status_code == 200
        assert client.get("/v2/health/ready").status_code == 200
    assert "recorder collect failed" in caplog.text


def test_stages_are_placed_by_name_and_unknown_places_are_refused(
    mlp_path: pathlib.Path,
) -> None:
    spec = DeploymentSpec.single(mlp_path, name="mlp")
    front = build_front(spec)
    context = StageContext(spec=spec, registry=front.registry, metrics=front.state.metrics)
    builtin: list[Stage] = [DispatchStage(), AnswerStage()]
    factory = TagFactory()
    factory.place = ("before", "answer")
    assert [s.name for s in assemble(builtin, [factory], context=context)] == [
        "dispatch",
        "tag",
        "answer",
    ]
    factory.place = ("after", "nowhere")
    with pytest.raises(InvalidInput, match="'after' one of dispatch, answer"):
        assemble(builtin, [factory], context=context)
    with pytest.raises(InvalidInput, match="capacity"):
        RecordQueue(Collect(), capacity=0)
    assert [s.name for s in front.pipeline.stages_for(Endpoint.READY)] == ["control"]
