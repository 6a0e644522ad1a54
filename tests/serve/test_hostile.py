"""A hostile or careless client, and a hostile host, against a real server over real sockets.

Oversized and slow heads and bodies, huge JSON, a signal to the whole process group, replicas that
stop answering: each is answered or survived, and what the server counts is what clients got.
"""

from __future__ import annotations

import concurrent.futures
import http.client
import json
import os
import pathlib
import signal
import socket
import threading
import time

import numpy as np
import onnx
import psutil
import pytest
from onnx import TensorProto, helper
from prometheus_client.parser import text_string_to_metric_families

from modelscale.config import DeploymentSpec
from modelscale.serve import ServerProcess

pytestmark = pytest.mark.e2e


def _spec(path: pathlib.Path, name: str, **over: object) -> DeploymentSpec:
    data = DeploymentSpec.single(path, name=name, replicas=1).model_dump(mode="json")
    for key, value in over.items():
        section, _, field = key.partition("__")
        if section == "model":
            data["models"][name][field] = value
        else:
            data[section][field] = value
    return DeploymentSpec.from_dict(data)


def _get(server: ServerProcess, path: str, timeout: float = 10) -> int:
    return server._get(path, timeout)


def _post(server: ServerProcess, model: str, body: bytes, timeout: float = 60) -> int:
    conn = http.client.HTTPConnection(server.host, server.port, timeout=timeout)
    try:
        conn.request(
            "POST", f"/v2/models/{model}/infer", body, {"Content-Type": "application/json"}
        )
        resp = conn.getresponse()
        resp.read()
        return resp.status
    finally:
        conn.close()


def _refused(server: ServerProcess, reason: str) -> float:
    conn = http.client.HTTPConnection(server.host, server.port, timeout=10)
    conn.request("GET", "/metrics")
    text = conn.getresponse().read().decode()
    conn.close()
    for family in text_string_to_metric_families(text):
        if family.name == "modelscale_http_refused":
            return sum(s.value for s in family.samples if s.labels.get("reason") == reason)
    return 0.0


def _raw(server: ServerProcess, timeout: float = 15) -> socket.socket:
    sock = socket.create_connection((server.host, server.port), timeout=timeout)
    return sock


def _read_all(sock: socket.socket) -> bytes:
    out = b""
    try:
        while chunk := sock.recv(65536):
            out += chunk
    except (ConnectionResetError, TimeoutError):
        pass
    return out


def _mlp_body() -> bytes:
    x = {"name": "x", "shape": [1, 16], "datatype": "FP32", "data": [0.5] * 16}
    return json.dumps({"inputs": [x]}).encode()


def test_oversized_head_gets_431_and_other_requests_go_on(server_factory, mlp_path) -> None:
    server = server_factory(_spec(mlp_path, "mlp"))
    answers: list[bytes] = []

    def flood() -> None:
        sock = _raw(server)
        try:
            sock.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\nX-Big: ")
            chunk = b"a" * 65536
            for _ in range(100 * 16):  # 100 MB, unless the server hangs up first
                sock.sendall(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass
        answers.append(_read_all(sock))
        sock.close()

    threads = [threading.Thread(target=flood) for _ in range(4)]
    for t in threads:
        t.start()
    statuses = [_post(server, "mlp", _mlp_body()) for _ in range(20)]
    for t in threads:
        t.join(60)
    assert statuses == [200] * 20
    assert len(answers) == 4
    for answer in answers:
        # The server may reset the connection before the client reads; when an answer came,
        # it is the 431 naming the setting.
        if answer:
            assert answer.startswith(b"HTTP/1.1 431"), answer[:200]
            assert b"server.max_header_kb" in answer
    assert _refused(server, "head_too_large") == 4
    assert psutil.Process(server.pid).memory_info().rss < 400 * 2**20
    assert _get(server, "/v2/health/ready") == 200


def test_a_head_up_to_the_limit_is_served(server_factory, mlp_path) -> None:
    server = server_factory(_spec(mlp_path, "mlp", server__max_header_kb=16))
    conn = http.client.HTTPConnection(server.host, server.port, timeout=10)
    conn.request("GET", "/v2/health/live", headers={"X-Pad": "p" * 15_000})
    assert conn.getresponse().status == 200
    conn.close()
    sock = _raw(server)
    sock.sendall(
        b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"p" * 17_000 + b"\r\n\r\n"
    )
    assert _read_all(sock).startswith(b"HTTP/1.1 431")


def test_slow_or_silent_clients_are_timed_out(server_factory, mlp_path) -> None:
    server = server_factory(
        _spec(
            mlp_path,
            "mlp",
            server__header_timeout_s=1,
            server__body_timeout_s=1,
            server__idle_timeout_s=1,
        )
    )
    silent, slow_head, slow_body = _raw(server), _raw(server), _raw(server)
    slow_head.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n")
    slow_body.sendall(
        b"POST /v2/models/mlp/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 1000\r\n\r\n" + b'{"inputs": ['
    )
    t0 = time.monotonic()
    assert _read_all(silent) == b""  # closed, nothing to answer
    head = _read_all(slow_head)
    body = _read_all(slow_body)
    assert time.monotonic() - t0 < 14  # each socket times out at 15 s: the server closed them
    assert head.startswith(b"HTTP/1.1 408") and b"server.header_timeout_s" in head, head
    assert body.startswith(b"HTTP/1.1 408") and b"server.body_timeout_s" in body, body
    assert _refused(server, "head_timeout") == 1
    assert _refused(server, "body_timeout") == 1
    assert _refused(server, "idle") >= 1
    assert _post(server, "mlp", _mlp_body()) == 200


def _save_sum_model(path: pathlib.Path) -> pathlib.Path:
    """x[batch, n] -> ReduceSum over n -> y[batch]: takes any n, answers one number per row."""
    axes = onnx.numpy_helper.from_array(np.array([1], dtype=np.int64), "axes")
    graph = helper.make_graph(
        [helper.make_node("ReduceSum", ["x", "axes"], ["y"], keepdims=0)],
        "sum",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "n"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch"])],
        [axes],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def _sum_body(n: int, *, value: float = 0.123456789) -> bytes:
    x = {"name": "x", "shape": [1, n], "datatype": "FP32", "data": [value] * n}
    return json.dumps({"inputs": [x]}).encode()


def test_large_json_is_decoded_away_from_the_event_loop(server_factory, tmp_path) -> None:
    server = server_factory(_spec(_save_sum_model(tmp_path / "sum.onnx"), "sum"))
    big = _sum_body(3_000_000)  # ~40 MB of JSON
    assert _post(server, "sum", _sum_body(10)) == 200
    done = threading.Event()
    took: list[float] = []

    def send_big() -> None:
        t0 = time.monotonic()
        took.append(0.0)
        status = _post(server, "sum", big)
        took[0] = time.monotonic() - t0
        assert status == 200
        done.set()

    thread = threading.Thread(target=send_big)
    thread.start()
    health: list[float] = []
    while not done.is_set():
        t0 = time.monotonic()
        assert _get(server, "/v2/health/live") == 200
        health.append(time.monotonic() - t0)
        time.sleep(0.02)
    thread.join()
    # While one request's body was parsed, health checks kept being answered: none of them
    # waited for a large share of the parse (on the event loop, one would have waited for all).
    assert len(health) >= 3, (health, took)
    assert max(health) < 0.3 * took[0], (health, took)


def test_large_bodies_beyond_the_memory_budget_get_503(server_factory, tmp_path) -> None:
    path = _save_sum_model(tmp_path / "sum.onnx")
    server = server_factory(_spec(path, "sum", server__body_memory_mb=38))
    first, second = _sum_body(3_000_000), _sum_body(200_000)  # ~37 MiB and ~2.5 MiB
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        a = pool.submit(_post, server, "sum", first)
        time.sleep(0.5)  # the first is being read or decoded (~2 s; its process starts now)
        b = pool.submit(_post, server, "sum", second)
        statuses = (a.result(), b.result())
    assert statuses == (200, 503), statuses
    assert _post(server, "sum", second) == 200  # the budget is given back


def _replica_pids(server: ServerProcess) -> list[int]:
    children = psutil.Process(server.pid).children()
    return [c.pid for c in children if "modelscale.serve.replica" in " ".join(c.cmdline())]


def test_group_sigterm_under_load_drains_every_accepted_request(server_factory, slow_path) -> None:
    spec = _spec(slow_path, "slow", model__replicas=2)
    server = server_factory(spec, own_process_group=True)
    body = json.dumps(
        {"inputs": [{"name": "x", "shape": [1, 256], "datatype": "FP32", "data": [0.01] * 256}]}
    ).encode()
    stop = threading.Event()
    statuses: list[int] = []

    def client() -> None:
        while not stop.is_set():
            try:
                statuses.append(_post(server, "slow", body, timeout=30))
            except (ConnectionError, OSError, http.client.HTTPException):
                return  # the server stopped accepting: not an accepted request

    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        for _ in range(6):
            pool.submit(client)
        time.sleep(1.0)
        before = len(statuses)
        os.killpg(os.getpgid(server.pid), signal.SIGTERM)  # as systemd and Ctrl-C do
        assert server.proc.wait(60) == 0  # type: ignore[union-attr]
        stop.set()
    assert before > 0 and statuses, statuses
    assert set(statuses) == {200}, statuses
    log = server.log_path.read_text(errors="replace")
    assert "restarting" not in log and "died" not in log, log[-2000:]


def test_hung_replicas_are_replaced_and_the_server_is_not_ready_meanwhile(
    server_factory, mlp_path
) -> None:
    server = server_factory(_spec(mlp_path, "mlp", model__replicas=2, model__watchdog_s=1))
    pids = _replica_pids(server)
    assert len(pids) == 2
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    try:
        deadline = time.monotonic() + 30
        seen_not_ready = False
        while time.monotonic() < deadline:
            status = _get(server, "/v2/health/ready")
            if status == 400:
                seen_not_ready = True
                break
            time.sleep(0.1)
        assert seen_not_ready, "ready stayed 200 with every replica stopped"
        assert _get(server, "/v2/models/mlp/ready") in (200, 400)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and _get(server, "/v2/health/ready") != 200:
            time.sleep(0.2)
        assert _get(server, "/v2/health/ready") == 200
        assert not set(_replica_pids(server)) & set(pids)  # replaced, not resumed
        assert _post(server, "mlp", _mlp_body(), timeout=10) == 200
    finally:
        for pid in pids:
            if psutil.pid_exists(pid):
                os.kill(pid, signal.SIGCONT)
