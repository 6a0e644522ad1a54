"""End to end over real sockets with real replica processes: faults, overload, drain, V2 clients."""

from __future__ import annotations

import concurrent.futures
import http.client
import json
import os
import random
import signal
import threading
import time

import numpy as np
import psutil
import pytest
from prometheus_client.parser import text_string_to_metric_families

from modelscale.config import DeploymentSpec
from modelscale.loadgen import LoadOptions, run_load
from modelscale.model import ModelArtifact
from modelscale.serve import ServerProcess

pytestmark = pytest.mark.e2e


def _metrics(server: ServerProcess) -> dict[str, list]:
    conn = http.client.HTTPConnection(server.host, server.port, timeout=10)
    conn.request("GET", "/metrics")
    text = conn.getresponse().read().decode()
    conn.close()
    return {f.name: f.samples for f in text_string_to_metric_families(text)}


def _gauge(server: ServerProcess, name: str) -> float:
    return _metrics(server)[name][0].value


def _replica_pids(server: ServerProcess) -> list[int]:
    children = psutil.Process(server.pid).children()
    return [c.pid for c in children if "modelscale.serve.replica" in " ".join(c.cmdline())]


def _post(server: ServerProcess, body: dict, timeout: float = 30) -> tuple[int, dict, dict]:
    conn = http.client.HTTPConnection(server.host, server.port, timeout=timeout)
    try:
        conn.request(
            "POST", "/v2/models/slow/infer", json.dumps(body), {"Content-Type": "application/json"}
        )
        resp = conn.getresponse()
        return resp.status, dict(resp.getheaders()), json.loads(resp.read() or b"{}")
    finally:
        conn.close()


def _slow_body(rows: int = 1) -> dict:
    return {
        "inputs": [
            {"name": "x", "shape": [rows, 256], "datatype": "FP32", "data": [0.01] * (256 * rows)}
        ]
    }


def test_killed_replica_is_restarted_and_every_request_is_answered(
    server_factory, slow_path
) -> None:
    spec = DeploymentSpec.single(slow_path, name="slow", replicas=2, max_batch=4, max_wait_ms=2)
    server = server_factory(spec)
    pids = _replica_pids(server)
    assert len(pids) == 2

    def kill_one() -> None:
        time.sleep(1.0)
        os.kill(pids[0], signal.SIGKILL)

    killer = threading.Thread(target=kill_one)
    killer.start()
    result = run_load(
        server.url,
        model="slow",
        options=LoadOptions(rate=120, duration_s=3, pattern="poisson", warmup_s=0, timeout_s=20),
    )
    killer.join()
    s = result.overall
    assert s.ok + sum(s.errors.values()) == s.sent  # every request got an answer
    assert set(s.errors) <= {"503"}, (
        s.errors
    )  # only the batch the dead replica held: 503, never a hang
    assert s.ok > 0.8 * s.sent
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and _gauge(server, "modelscale_replicas_ready") < 2:
        time.sleep(0.2)
    assert _gauge(server, "modelscale_replicas_ready") == 2
    assert _gauge(server, "modelscale_replica_restarts") == 1
    new_pids = _replica_pids(server)
    assert pids[0] not in new_pids and pids[1] in new_pids
    status, _, body = _post(server, _slow_body())
    assert status == 200 and body["outputs"][0]["shape"] == [1, 256]


def test_overload_sheds_with_503_and_keeps_accepted_latency(server_factory, slow_path) -> None:
    slo_ms = 200.0
    spec = DeploymentSpec.single(
        slow_path,
        name="slow",
        replicas=1,
        max_batch=4,
        max_wait_ms=2,
        max_queue=10_000,
        p99_ms=slo_ms,
    )
    server = server_factory(spec)
    capacity = run_load(
        server.url, model="slow", options=LoadOptions(concurrency=8, duration_s=2)
    ).overall.achieved_rps
    rss_before = psutil.Process(server.pid).memory_info().rss
    seen_503: list[dict] = []
    load_done = threading.Event()

    def probe() -> None:  # a plain client sees the 503 and its Retry-After during the overload
        # Probes go out at random moments for as long as the overload lasts. A client that sends
        # again the instant its answer arrives always lands just after a batch has left the
        # queue, when admission is most lenient, so it could be accepted every time.
        rng = random.Random(7)
        time.sleep(1.0)
        while not load_done.is_set():
            time.sleep(rng.uniform(0.0, 0.05))
            status, headers, body = _post(server, _slow_body(), timeout=10)
            if status == 503:
                seen_503.append({**{k.lower(): v for k, v in headers.items()}, **body})
                return

    t = threading.Thread(target=probe)
    t.start()
    try:
        result = run_load(
            server.url,
            model="slow",
            options=LoadOptions(
                rate=3 * capacity, duration_s=4, pattern="poisson", warmup_s=0, timeout_s=20
            ),
        )
    finally:
        load_done.set()
        t.join()
    s = result.overall
    assert s.errors.get("503", 0) > 0.3 * s.sent, s.errors  # the excess is refused...
    assert set(s.errors) == {"503"}
    assert s.ok + s.errors["503"] == s.sent  # ...at once, and nothing hangs
    assert s.p99_ms <= 2 * slo_ms, s  # accepted requests keep their latency
    assert seen_503 and seen_503[0]["retry-after"] == "1" and "capacity" in seen_503[0]["error"]
    assert _gauge(server, "modelscale_queue_depth") == 0
    growth = psutil.Process(server.pid).memory_info().rss - rss_before
    assert growth < 200 * 2**20  # bounded memory: the queue is bounded, nothing accumulates


def test_sigterm_drains_in_flight_requests_and_exits_0(server_factory, slow_path) -> None:
    spec = DeploymentSpec.single(slow_path, name="slow", replicas=1, max_batch=4, max_wait_ms=0)
    server = server_factory(spec)
    replicas = _replica_pids(server)
    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        futures = [
            pool.submit(_post, server, _slow_body(4)) for _ in range(6)
        ]  # ~15 ms each, serial
        time.sleep(0.03)
        server.proc.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
        statuses = [f.result()[0] for f in futures]
    assert statuses == [200] * 6
    assert server.proc.wait(30) == 0  # type: ignore[union-attr]
    with pytest.raises(OSError):
        _post(server, _slow_body(), timeout=2)  # no longer accepting
    assert not any(
        psutil.pid_exists(p) and psutil.Process(p).status() != "zombie" for p in replicas
    )


def test_tritonclient_metadata_and_inference(server_factory, mlp_path) -> None:
    tritonclient = pytest.importorskip("tritonclient.http")
    server = server_factory(DeploymentSpec.single(mlp_path, name="mlp", replicas=1))
    client = tritonclient.InferenceServerClient(url=f"{server.host}:{server.port}")
    try:
        assert client.is_server_live() and client.is_server_ready() and client.is_model_ready("mlp")
        meta = client.get_model_metadata("mlp")
        assert (
            meta["inputs"][0]["name"] == "x"
            and meta["parameters"]["sha256"] == ModelArtifact.load(mlp_path).sha256
        )
        assert client.get_server_metadata()["name"] == "modelscale"
        x = np.random.default_rng(0).standard_normal((3, 16)).astype(np.float32)
        import onnxruntime as ort

        expected = ort.InferenceSession(str(mlp_path)).run(None, {"x": x})[0]
        for binary in (False, True):
            inp = tritonclient.InferInput("x", list(x.shape), "FP32")
            inp.set_data_from_numpy(x, binary_data=binary)
            out = tritonclient.InferRequestedOutput("y", binary_data=binary)
            result = client.infer("mlp", [inp], outputs=[out], request_id=f"r{binary}")
            np.testing.assert_allclose(result.as_numpy("y"), expected, rtol=1e-5)
            assert result.get_response()["id"] == f"r{binary}"
        inp = tritonclient.InferInput("x", list(x.shape), "FP32")
        inp.set_data_from_numpy(x)
        result = client.infer("mlp", [inp], model_version="1")  # no outputs named: all, in binary
        np.testing.assert_allclose(result.as_numpy("y"), expected, rtol=1e-5)
        from tritonclient.utils import InferenceServerException

        bad = tritonclient.InferInput("x", [3, 15], "FP32")
        bad.set_data_from_numpy(x[:, :15].copy())
        with pytest.raises(InferenceServerException, match="expects 16"):
            client.infer("mlp", [bad])
    finally:
        client.close()
