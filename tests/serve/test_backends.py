"""One corpus of server tests, over real sockets, against every backend.

    local         modelscale serve: replica processes on this machine
    ray           modelscale serve --backend ray: the front here, replicas as Ray deployments
    ray-ingress   serve run on the Ray config plan --emit ray writes: the front is the ingress

The same routes, codec, auth, errors, shedding, timeouts and metrics must hold on each: they are
one front over two backends. Each Ray variant starts a local Ray cluster of its own.
"""

from __future__ import annotations

import concurrent.futures
import json
import pathlib
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
from prometheus_client.parser import text_string_to_metric_families

from modelscale.config import DeploymentSpec
from tests.serve.servers import Served, served_by
from tests.serve.test_validation_corpus import (
    CORPUS,
    _encode,
    save_broadcast_model,
    seq_inputs,
    x_input,
)

tritonclient_http = pytest.importorskip("tritonclient.http")

pytestmark = pytest.mark.e2e
_RAY = [pytest.mark.ray, pytest.mark.slow]
KEY = "corpus-key-0123456789"
# A model version that is shed from: one replica, batches of up to 8 rows (~0.1 s), 4 queued.
SLOW = {"max_batch": 8, "max_wait_ms": 0.0, "max_queue": 4}


@pytest.fixture(
    scope="module",
    params=[
        "local",
        pytest.param("ray", marks=_RAY),
        pytest.param("ray-ingress", marks=_RAY),
    ],
)
def served(
    request: pytest.FixtureRequest,
    mlp_path: pathlib.Path,
    seq_path: pathlib.Path,
    slow_path: pathlib.Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Served]:
    if request.param != "local":
        pytest.importorskip("ray.serve", reason="needs the ray extra")
    tmp = tmp_path_factory.mktemp(request.param)
    key_file = tmp / "key.txt"
    key_file.write_text(KEY + "\n", encoding="utf-8")
    bcast = save_broadcast_model(tmp / "bcast.onnx")
    spec = DeploymentSpec.from_dict(
        {
            "models": {
                "mlp": {"versions": {"1": {"path": str(mlp_path)}}, "batching": {"max_batch": 4}},
                "seq": {"versions": {"1": {"path": str(seq_path)}}, "batching": {"max_batch": 4}},
                "slow": {"versions": {"1": {"path": str(slow_path)}}, "batching": SLOW},
                "bcast": {"versions": {"1": {"path": str(bcast)}}, "batching": {"max_batch": 4}},
            },
            "auth": {"api_key_file": str(key_file)},
            # Four single-threaded replicas on a 2-core machine: Ray is told it has 5 CPUs.
            "ray": {"num_cpus": 5},
        }
    )
    with served_by(request.param, spec, tmp, key=KEY) as server:
        yield server


def _request(
    served: Served,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    *,
    auth: bool = True,
    timeout: float = 30,
) -> tuple[int, dict[str, str], bytes]:
    hdrs = {**(served.headers() if auth else {}), **(headers or {})}
    req = urllib.request.Request(served.url + path, data=body, headers=hdrs, method=method)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, {k.lower(): v for k, v in r.headers.items()}, r.read()
    except urllib.error.HTTPError as err:
        return err.code, {k.lower(): v for k, v in err.headers.items()}, err.read()


def _post(served: Served, model: str, body: Any, **kw: Any) -> tuple[int, dict[str, str], Any]:
    status, headers, raw = _request(
        served, "POST", f"/v2/models/{model}/infer", json.dumps(body).encode(), **kw
    )
    return status, headers, json.loads(raw or b"{}")


def _client(served: Served) -> Any:
    return tritonclient_http.InferenceServerClient(
        f"{served.host}:{served.port}",
        connection_timeout=30,
        network_timeout=60,
    )


def _slow(rows: int) -> dict[str, Any]:
    return {
        "inputs": [
            {"name": "x", "shape": [rows, 256], "datatype": "FP32", "data": [0.01] * (256 * rows)}
        ]
    }


def test_tritonclient_json_and_binary_match_onnxruntime(
    served: Served, mlp_path: pathlib.Path
) -> None:
    headers = served.headers()
    local = threading.local()  # a tritonclient client must not be shared between threads
    clients: list[Any] = []

    def client() -> Any:
        if not hasattr(local, "client"):
            local.client = _client(served)
            clients.append(local.client)
        return local.client

    try:
        c = client()
        assert c.is_server_live() and c.is_model_ready("mlp", headers=headers)
        meta = c.get_model_metadata("mlp", headers=headers)
        assert meta["inputs"][0]["name"] == "x" and meta["parameters"]["max_batch_size"] == 4
        assert meta["parameters"]["replicas"] == 1
        assert c.get_server_metadata(headers=headers)["name"] == "modelscale"
        session = ort.InferenceSession(str(mlp_path))

        def infer(rows: int, binary: bool) -> None:
            x = np.random.default_rng(rows).standard_normal((rows, 16)).astype(np.float32)
            inp = tritonclient_http.InferInput("x", list(x.shape), "FP32")
            inp.set_data_from_numpy(x, binary_data=binary)
            out = tritonclient_http.InferRequestedOutput("y", binary_data=binary)
            result = client().infer(
                "mlp", [inp], outputs=[out], request_id=f"r{rows}", headers=dict(headers)
            )
            np.testing.assert_allclose(
                result.as_numpy("y"), session.run(None, {"x": x})[0], rtol=1e-5, atol=1e-5
            )
            assert result.get_response()["id"] == f"r{rows}"

        infer(1, binary=False)
        infer(3, binary=True)
        # Concurrent requests of mixed sizes are batched in the front and split back correctly.
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            list(pool.map(lambda i: infer(1 + i % 3, binary=i % 2 == 0), range(24)))
    finally:
        for each in clients:
            each.close()


@pytest.mark.parametrize(
    ("case", "model", "body", "headers", "status", "field"), CORPUS, ids=[c[0] for c in CORPUS]
)
def test_malformed_request_gets_4xx_naming_the_field(
    served: Served,
    case: str,
    model: str,
    body: Any,
    headers: dict[str, str],
    status: int,
    field: str,
) -> None:
    content, hdrs = _encode(body, {"Content-Type": "application/json", **headers})
    code, _, raw = _request(served, "POST", f"/v2/models/{model}/infer", content, hdrs)
    if served.kind == "ray-ingress" and case in RAY_PROXY_FAILS:
        # Ray's HTTP proxy fails on this request itself, before the front sees it: this pins
        # down Ray's behaviour (docs/serving.md says so), so a Ray that fixes it shows up here.
        assert code == 500 and raw == b"Internal Server Error", (code, raw)
        return
    assert code == status, raw
    err = json.loads(raw)
    assert err["field"] == field and err["error"], err


RAY_PROXY_FAILS = frozenset({"X-Request-Id not ASCII"})
"""Corpus cases Ray Serve's HTTP proxy answers 500 itself (a header byte outside ASCII)."""


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v2"),
        ("GET", "/v2/models/mlp"),
        ("GET", "/v2/models/mlp/ready"),
        ("GET", "/v2/models/mlp/versions/1"),
        ("GET", "/metrics"),
        ("POST", "/v2/models/mlp/infer"),
        ("GET", "/v2/no/such/route"),
    ],
)
@pytest.mark.parametrize("authorization", [None, "Bearer wrong-key", f"Token {KEY}"])
def test_every_route_but_health_is_401_without_the_key(
    served: Served, method: str, path: str, authorization: str | None
) -> None:
    headers = {"Authorization": authorization} if authorization else {}
    body = json.dumps({"inputs": [x_input()]}).encode() if method == "POST" else None
    code, hdrs, raw = _request(served, method, path, body, headers, auth=False)
    assert code == 401 and json.loads(raw)["field"] == "Authorization"
    assert hdrs["www-authenticate"].startswith("Bearer")


def test_health_probes_need_no_key_and_the_key_opens_the_rest(served: Served) -> None:
    for path in ("/v2/health/live", "/v2/health/ready"):
        assert _request(served, "GET", path, auth=False)[0] == 200
    status, _, out = _post(served, "mlp", {"inputs": [x_input()]})
    assert status == 200 and out["outputs"][0]["shape"] == [1, 4]


def test_a_bad_value_in_a_batch_fails_only_its_request(served: Served) -> None:
    good = {"inputs": seq_inputs()}
    bad = {
        "inputs": seq_inputs(
            ids={"name": "ids", "shape": [1, 5], "datatype": "INT64", "data": [999] * 5}
        )
    }
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        codes = list(pool.map(lambda b: _post(served, "seq", b)[0], [good, bad] * 6))
    assert codes == [200, 400] * 6


def test_a_full_queue_sheds_503_with_retry_after(served: Served) -> None:
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(lambda _: _post(served, "slow", _slow(8)), range(16)))
    statuses = sorted(a[0] for a in answers)
    assert set(statuses) == {200, 503}, statuses  # the excess is refused at once, none fails
    shed = [a for a in answers if a[0] == 503]
    assert all(h["retry-after"] == "1" and "full" in b["error"] for _, h, b in shed)


def test_a_request_that_times_out_in_the_queue_is_504(served: Served) -> None:
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        busy = [pool.submit(_post, served, "slow", _slow(8)) for _ in range(3)]
        time.sleep(0.05)  # the busy requests hold the replica(s) and the queue's head
        late = {**_slow(1), "parameters": {"timeout": 1000}}  # microseconds, as tritonclient sends
        status, _, body = _post(served, "slow", late)
        assert [f.result()[0] for f in busy] == [200, 200, 200]
    assert status == 504 and body["field"] == "parameters.timeout"


def _samples(served: Served) -> dict[str, list[Any]]:
    code, _, raw = _request(served, "GET", "/metrics")
    assert code == 200
    return {f.name: f.samples for f in text_string_to_metric_families(raw.decode())}


def test_metrics_count_what_clients_got(served: Served) -> None:
    def count(samples: dict[str, list[Any]], status: str) -> float:
        return sum(
            s.value
            for s in samples["modelscale_requests"]
            if s.name.endswith("_total")
            and s.labels["model"] == "mlp"
            and s.labels["status"] == status
        )

    before = _samples(served)
    for _ in range(3):
        assert _post(served, "mlp", {"inputs": [x_input()]})[0] == 200
    assert _post(served, "mlp", {"inputs": [x_input(name="z")]})[0] == 400
    after = _samples(served)
    assert count(after, "200") == count(before, "200") + 3
    assert count(after, "400") == count(before, "400") + 1
    ready = {s.labels["model"]: s.value for s in after["modelscale_replicas_ready"]}
    assert ready == {"mlp": 1, "seq": 1, "slow": 1, "bcast": 1}
    assert any(s.value > 0 for s in after["modelscale_batch_size"] if s.name.endswith("_count"))
    dropped = {s.labels["recorder"]: s.value for s in after["modelscale_records_dropped"]}
    assert dropped == {
        "metrics": 0,
        "log": 0,
        "observe": 0,
        "monitor": 0,
        "monitor_predictions": 0,
        "privacy-purge": 0,
    }


def test_healthy_after_everything(served: Served) -> None:
    assert _request(served, "GET", "/v2/health/ready", auth=False)[0] == 200
    assert _post(served, "mlp", {"inputs": [x_input()]})[0] == 200
    statuses = {
        s.labels["status"]
        for s in _samples(served)["modelscale_requests"]
        if s.name.endswith("_total") and s.value > 0  # 5xx series exist from the start, at 0
    }
    # 503 and 504 are the shedding and timeout tests; nothing failed on the server's side.
    assert not {s for s in statuses if s.startswith("5")} - {"503", "504"}, statuses
