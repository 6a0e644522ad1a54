"""A server with a p99 objective and no batch settings: real replicas, real HTTP, real load."""

from __future__ import annotations

import json
import time

import pytest

from modelscale.config import DeploymentSpec
from modelscale.loadgen import LoadOptions, run_load

from .test_e2e import _metrics, _post, _slow_body

pytestmark = pytest.mark.e2e


def _value(server, name: str, **labels: str) -> float:
    samples = _metrics(server).get(name, [])
    return sum(s.value for s in samples if all(s.labels.get(k) == v for k, v in labels.items()))


def _count(server, family: str) -> float:
    """Observations of a histogram."""
    return sum(s.value for s in _metrics(server).get(family, []) if s.name.endswith("_count"))


def _mean_batch(server) -> float:
    m = _metrics(server)["modelscale_batch_size"]
    total = sum(s.value for s in m if s.name.endswith("_sum"))
    count = sum(s.value for s in m if s.name.endswith("_count"))
    return total / count


def test_batches_are_chosen_from_the_objective_and_reported(server_factory, slow_path) -> None:
    # The objective leaves room for a batch of all six clients' rows behind another on a slow
    # machine (the model takes ~22 ms a row on a slow 2-core one): with 150 ms there, the
    # sixth request was rightly predicted late and refused, and refused again at once.
    objective_s = 0.4
    spec = DeploymentSpec.single(
        slow_path, name="slow", replicas=1, p99_ms=objective_s * 1000, max_queue=4096
    )
    server = server_factory(spec)
    status, _, meta = _metrics_meta(server)
    assert status == 200
    assert meta["parameters"]["batching"] == "slo" and "max_wait_ms" not in meta["parameters"]
    # One at a time: each request runs alone, at once.
    for _ in range(5):
        assert _post(server, _slow_body())[0] == 200
    assert _mean_batch(server) == 1.0
    # Closed-loop load from 6 clients keeps the replica busy: batches form, none beyond what
    # the objective allows, and every request is answered.
    result = run_load(
        server.url, model="slow", options=LoadOptions(concurrency=6, duration_s=3, warmup_s=0)
    )
    r = result.overall
    assert r.ok == r.sent, r.errors
    # The load test reads what the server did from its /metrics, and says it.
    assert result.server["batches"] > 0 and result.server["mean_batch"] > 1.5
    assert 0 <= result.server["within_10pct"] <= 1 and "mean_wait_ms" in result.server
    assert "Server: mean batch" in result.summary
    assert _mean_batch(server) > 1.5
    limit = _value(server, "modelscale_batch_limit", model="slow")
    assert 1 <= limit <= 64
    per_row = _value(server, "modelscale_batch_service_seconds", part="per_row")
    fixed = _value(server, "modelscale_batch_service_seconds", part="fixed")
    assert per_row > 0 and fixed >= 0
    assert fixed + limit * per_row <= objective_s / 2 + 1e-9  # the limit's batch fits half of it
    assert _count(server, "modelscale_batch_wait_seconds") > 0
    ratio_count = _count(server, "modelscale_latency_prediction_ratio")
    assert ratio_count >= r.ok  # every answered request's prediction was checked


def _metrics_meta(server):
    import http.client

    conn = http.client.HTTPConnection(server.host, server.port, timeout=10)
    conn.request("GET", "/v2/models/slow")
    resp = conn.getresponse()
    body = json.loads(resp.read())
    conn.close()
    return resp.status, None, body


def test_an_objective_below_one_row_is_said_at_start_and_served_with_batches_of_one(
    server_factory, slow_path
) -> None:
    spec = DeploymentSpec.single(slow_path, name="slow", replicas=1, p99_ms=0.01)
    server = server_factory(spec)
    assert "p99 objective (0 ms) is shorter than one row took at warm-up" in server.log_tail(50)
    r = run_load(
        server.url, model="slow", options=LoadOptions(concurrency=4, duration_s=2, warmup_s=0)
    ).overall
    assert r.ok > 0
    assert set(r.errors) <= {"503"}  # what would be late is refused, nothing else fails
    assert _value(server, "modelscale_batch_limit", model="slow") == 1
    assert _mean_batch(server) == 1.0
    deadline = time.monotonic() + 10
    while "below what this machine needs" not in server.log_tail(80):
        assert time.monotonic() < deadline, server.log_tail(80)
        time.sleep(0.2)


def test_max_batch_1_with_an_objective_serves_without_batching(server_factory, slow_path) -> None:
    spec = DeploymentSpec.single(slow_path, name="slow", replicas=1, p99_ms=500, max_batch=1)
    server = server_factory(spec)
    assert _metrics_meta(server)[2]["parameters"]["batching"] == "fixed"
    r = run_load(
        server.url, model="slow", options=LoadOptions(concurrency=4, duration_s=1, warmup_s=0)
    ).overall
    assert r.ok == r.sent
    assert _mean_batch(server) == 1.0
    assert (
        "modelscale_batch_limit" not in _metrics(server)
        or not _metrics(server)["modelscale_batch_limit"]
    )
