"""The request log, live series and SLO routes of a real server over real HTTP."""

from __future__ import annotations

import pathlib
import time

import httpx
import numpy as np
import pyarrow.parquet as pq
import pytest

from modelscale.config import DeploymentSpec
from modelscale.observe import log_stats, query_log
from modelscale.serve import start_server

pytestmark = pytest.mark.e2e


def _spec(mlp_path: pathlib.Path, log_dir: pathlib.Path, **log: object) -> DeploymentSpec:
    return DeploymentSpec.from_dict(
        {
            "models": {
                "mlp": {
                    "versions": {"1": {"path": str(mlp_path)}},
                    "batching": {"max_batch": 8, "max_wait_ms": 2},
                    "slo": {"availability": 0.999, "latency": {"threshold_ms": 100}},
                }
            },
            "log": {"path": str(log_dir), "flush_s": 0.2, **log},
        }
    )


def _body(rows: int = 1, rid: str | None = None) -> dict[str, object]:
    x = np.random.default_rng(rows).standard_normal((rows, 16)).astype(np.float32)
    body: dict[str, object] = {
        "inputs": [
            {"name": "x", "shape": [rows, 16], "datatype": "FP32", "data": x.ravel().tolist()}
        ]
    }
    if rid is not None:
        body["id"] = rid
    return body


def _wait_for(predicate, timeout_s: float = 10.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.1)


def test_every_request_is_logged_with_its_id_latency_split_and_summaries(
    mlp_path: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    logs = tmp_path / "logs"
    with start_server(_spec(mlp_path, logs)) as server, httpx.Client(base_url=server.url) as c:
        ids = []
        for i in range(20):
            r = c.post("/v2/models/mlp/infer", json=_body(1 + i % 3))
            assert r.status_code == 200
            ids.append(r.headers["x-request-id"])  # given when the client sent none
        own = c.post("/v2/models/mlp/infer", json=_body(2, rid="mine-1"))
        assert own.headers["x-request-id"] == "mine-1"
        bad = c.post("/v2/models/mlp/infer", json={"inputs": [{"name": "nope"}]})
        assert bad.status_code == 400
        assert len(set(ids)) == 20
        got = _wait_for(lambda: c.get("/v2/logs", params={"limit": 100}).json()["count"] >= 22)
        assert got
        records = c.get("/v2/logs", params={"limit": 100}).json()["records"]
        errors = c.get("/v2/logs", params={"status": "error"}).json()["records"]
    by_id = {r["request_id"]: r for r in records}
    assert set(ids) | {"mine-1"} <= set(by_id)
    r = by_id["mine-1"]
    assert r["model"] == "mlp" and r["version"] == "1" and r["status"] == 200 and r["rows"] == 2
    assert r["latency_ms"] >= r["queue_ms"] >= 0 and r["compute_ms"] > 0 and r["front_ms"] >= 0
    assert r["batch_rows"] >= 2
    (x,) = r["inputs"]
    expected = np.random.default_rng(2).standard_normal((2, 16)).astype(np.float32)
    assert x["name"] == "x" and x["shape"] == [2, 16] and x["nan"] == 0
    assert x["mean"] == pytest.approx(float(expected.mean()), rel=1e-5)
    assert x["min"] == pytest.approx(float(expected.min())) and x["max"] == pytest.approx(
        float(expected.max())
    )
    assert r["outputs"][0]["shape"] == [2, 4]
    assert (
        len(r["top_class"]) == 2 and len(r["top_score"]) == 2
    )  # y[batch, 4]: a classifier's scores
    assert [e["status"] for e in errors] == [400] and "shape" in errors[0]["error"]
    # After the server stops, the files hold every record: no half-written file, none lost.
    files = sorted(logs.rglob("*.parquet"))
    assert files and not list(logs.rglob("*.tmp"))
    assert all(f.relative_to(logs).parts[0] in ("mlp", "_unknown") for f in files)
    total = sum(pq.read_metadata(f).num_rows for f in files)
    assert total == 22
    stats = log_stats(str(logs), by=["model", "version"])
    assert {(s.group["model"], s.requests) for s in stats.rows} == {("mlp", 22)}
    assert query_log(str(logs), "SELECT count(*) FROM requests WHERE status = 400").rows == [[1]]


def test_sampling_keeps_every_error_and_a_share_of_the_rest(
    mlp_path: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    logs = tmp_path / "logs"
    with (
        start_server(_spec(mlp_path, logs, sample=0.0)) as server,
        httpx.Client(base_url=server.url) as c,
    ):
        for _ in range(10):
            assert c.post("/v2/models/mlp/infer", json=_body()).status_code == 200
        assert c.post("/v2/models/mlp/infer", json={"inputs": []}).status_code == 400
        metrics = _wait_for(
            lambda: (
                'modelscale_log_records_total{result="sampled_out"} 10.0' in c.get("/metrics").text
            )
        )
        assert metrics
    rows = query_log(str(logs), "SELECT status FROM requests").rows
    assert rows == [[400]]


def test_live_view_and_metrics_show_requests_and_burn_rates(
    mlp_path: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    with (
        start_server(_spec(mlp_path, tmp_path / "logs")) as server,
        httpx.Client(base_url=server.url) as c,
    ):
        for _ in range(30):
            assert c.post("/v2/models/mlp/infer", json=_body()).status_code == 200

        def served() -> dict[str, object] | None:
            view = c.get("/v2/observe/live", params={"window_s": 60}).json()
            (v,) = view["versions"]
            return view if v["totals"]["requests"] >= 30 and sum(v["series"]["rps"]) >= 30 else None

        view = _wait_for(served)
        assert view is not None
        (v,) = view["versions"]
        assert v["model"] == "mlp" and v["replicas"]["ready"] == 1
        assert any(p is not None for p in v["series"]["p99_ms"])
        assert {s["sli"] for s in view["slo"]} == {"availability", "latency"}
        avail = next(s for s in view["slo"] if s["sli"] == "availability")
        assert avail["burn_rates"]["5m"] == 0.0
        assert [a["state"] for a in avail["alerts"]] == ["ok", "ok", "ok"]
        assert view["log"]["path"] == str(tmp_path / "logs")
        text = c.get("/metrics").text
        assert 'modelscale_slo_burn_rate{model="mlp",sli="availability",window="1h"} 0.0' in text
        assert "modelscale_log_dropped_total 0.0" in text
        page = c.get("/dashboard")
        assert page.status_code == 200 and "text/html" in page.headers["content-type"]
        js = c.get("/dashboard/plotly.min.js")
        assert js.status_code == 200 and len(js.content) > 1_000_000


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"limit": "0"}, "limit"),
        ({"limit": "many"}, "limit"),
        ({"since": "yesterday-ish"}, "since"),
        ({"status": "teapot"}, "status"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_bad_log_queries_are_400_naming_the_parameter(
    mlp_path: pathlib.Path,
    tmp_path: pathlib.Path,
    query: dict[str, str],
    field: str,
    request: pytest.FixtureRequest,
) -> None:
    server = _server_for_module(request, mlp_path, tmp_path)
    r = httpx.get(f"{server}/v2/logs", params=query)
    assert r.status_code == 400
    assert r.json()["field"] == field


def _server_for_module(
    request: pytest.FixtureRequest, mlp_path: pathlib.Path, tmp_path: pathlib.Path
) -> str:
    holder = getattr(request.module, "_shared", None)
    if holder is None:
        server = start_server(_spec(mlp_path, tmp_path / "logs"))
        request.module._shared = server
        request.session.addfinalizer(server.close)
        holder = server
    return holder.url


def test_unwritable_log_directory_stops_the_server_with_a_clear_error(
    mlp_path: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    from modelscale.errors import ModelscaleError

    with pytest.raises(ModelscaleError, match=r"log\.path: cannot write the request log"):
        start_server(_spec(mlp_path, blocker / "logs")).close()


def test_log_off_keeps_no_log_and_answers_404(
    mlp_path: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    with start_server(_spec(mlp_path, tmp_path / "logs", enabled=False)) as server:
        assert httpx.post(f"{server.url}/v2/models/mlp/infer", json=_body()).status_code == 200
        r = httpx.get(f"{server.url}/v2/logs")
        assert r.status_code == 404 and "log.enabled" in r.json()["error"]
        assert (
            "x-request-id"
            not in httpx.post(f"{server.url}/v2/models/mlp/infer", json=_body()).headers
        )
    assert not (tmp_path / "logs").exists()


def test_kill_9_leaves_only_readable_files_and_loses_at_most_the_unflushed(
    mlp_path: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    import os
    import signal
    import threading

    logs = tmp_path / "logs"
    server = start_server(_spec(mlp_path, logs, flush_s=0.3))
    answered = [0]
    try:
        with httpx.Client(base_url=server.url) as c:
            for _ in range(50):
                assert c.post("/v2/models/mlp/infer", json=_body()).status_code == 200
            time.sleep(1.0)  # three flushes: these 50 are in files
            stop = threading.Event()

            def more() -> None:
                with httpx.Client(base_url=server.url) as c2:
                    while not stop.is_set():
                        try:
                            if c2.post("/v2/models/mlp/infer", json=_body()).status_code == 200:
                                answered[0] += 1
                        except httpx.HTTPError:
                            return

            t = threading.Thread(target=more)
            t.start()
            time.sleep(1.0)
            assert server.proc is not None
            os.kill(server.proc.pid, signal.SIGKILL)
            stop.set()
            t.join(10)
    finally:
        server.close()
    files = sorted(logs.rglob("*.parquet"))
    rows = sum(pq.read_table(f).num_rows for f in files)  # every file reads whole
    assert 50 <= rows <= 50 + answered[0]
    assert answered[0] > 0


def test_the_log_routes_need_the_api_key(mlp_path: pathlib.Path, tmp_path: pathlib.Path) -> None:
    key = tmp_path / "key.txt"
    key.write_text("s3cret\n")
    spec = _spec(mlp_path, tmp_path / "logs")
    data = spec.model_dump(mode="json")
    data["auth"]["api_key_file"] = str(key)
    with start_server(DeploymentSpec.from_dict(data)) as server:
        assert httpx.get(f"{server.url}/v2/logs").status_code == 401
        assert httpx.get(f"{server.url}/v2/observe/live").status_code == 401
        ok = httpx.get(f"{server.url}/v2/logs", headers={"Authorization": "Bearer s3cret"})
        assert ok.status_code == 200 and ok.json() == {"records": [], "count": 0}
        assert httpx.get(f"{server.url}/dashboard").status_code == 200  # no data on the page
        assert httpx.post(f"{server.url}/dashboard").status_code == 405
