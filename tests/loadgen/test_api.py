"""run_load end to end against a trivial local endpoint and a real server; options and payloads."""

from __future__ import annotations

import json
import pathlib
from collections.abc import Iterator

import numpy as np
import pytest

from modelscale.config import DeploymentSpec
from modelscale.errors import InvalidInput, ServerError
from modelscale.loadgen import LoadOptions, run_load
from modelscale.loadgen.payload import Target, build_bodies, parse_url
from modelscale.loadgen.trivial import METADATA, TrivialServer
from modelscale.model import ModelArtifact
from modelscale.serve import ServerProcess
from modelscale.serve.codec import decode_request
from modelscale.serve.contract import ModelContract


@pytest.fixture(scope="module")
def trivial() -> Iterator[TrivialServer]:
    with TrivialServer() as server:
        yield server


def test_constant_open_loop(trivial: TrivialServer) -> None:
    r = run_load(
        trivial.url, model="trivial", options=LoadOptions(rate=400, duration_s=1, warmup_s=0.2)
    )
    s = r.overall
    assert r.mode == "open" and r.kind == "load"
    assert s.sent == 400 and s.ok == 400 and s.errors == {}
    assert s.p50_ms <= s.p90_ms <= s.p99_ms <= s.p999_ms <= s.max_ms
    assert r.version == "1" and r.model_sha256 is None  # the trivial endpoint has no sha256
    assert "req/s achieved" in r.summary
    assert r.params["rate"] == 400 and "api_key" not in r.params
    assert r.to_dict()["overall"]["ok"] == 400
    assert r.server == {} and "Server:" not in r.summary  # no modelscale /metrics to read


def test_steps_report_one_window_per_step(trivial: TrivialServer) -> None:
    r = run_load(
        trivial.url,
        model="trivial",
        options=LoadOptions(pattern="steps:100,300", duration_s=2, warmup_s=0),
    )
    assert [w["rate_rps"] for w in r.windows] == [100, 300]
    counts = [w["stats"].sent for w in r.windows]
    assert counts[1] > 2 * counts[0]
    assert sum(counts) == r.overall.sent


def test_closed_loop(trivial: TrivialServer) -> None:
    r = run_load(trivial.url, model="trivial", options=LoadOptions(concurrency=4, duration_s=0.5))
    assert r.mode == "closed" and r.overall.ok > 100 and r.overall.errors == {}


def test_find_max_against_a_capacity_limited_endpoint() -> None:
    # 4 connections x 10 ms per answer: at most ~400 req/s, fewer within a 50 ms p99.
    with TrivialServer(delay_ms=10) as server:
        r = run_load(
            server.url,
            model="trivial",
            options=LoadOptions(
                find_max=True,
                rate=100,
                duration_s=1,
                p99_ms=50,
                max_connections=4,
                warmup_s=0,
                tolerance=0.2,
            ),
        )
    assert r.mode == "find-max" and r.max_rate_rps is not None
    assert 100 <= r.max_rate_rps <= 420
    assert any(not w["passed"] for w in r.windows) and any(w["passed"] for w in r.windows)
    passed = [w["rate_rps"] for w in r.windows if w["passed"]]
    assert r.max_rate_rps == max(passed)
    assert "Highest sustained rate" in r.summary


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({}, "rate"),
        ({"rate": -1}, "rate"),
        ({"rate": float("inf")}, "rate"),
        ({"rate": 10, "concurrency": 2}, "concurrency"),
        ({"concurrency": 0}, "concurrency"),
        ({"rate": 10, "duration_s": 0}, "duration_s"),
        ({"rate": 10, "batch": 0}, "batch"),
        ({"rate": 10, "repeats": 0}, "repeats"),
        ({"rate": 10, "max_connections": 0}, "max_connections"),
        ({"rate": 10, "pattern": "sine"}, "pattern"),
        ({"rate": 10, "pattern": "steps:1,2"}, "rate"),
        ({"find_max": True, "concurrency": 3}, "concurrency"),
        ({"rate": 10, "max_error_rate": 1.5}, "max_error_rate"),
        ({"rate": 10, "warmup_s": -1}, "warmup_s"),
        ({"rate": 10, "p99_ms": 0}, "p99_ms"),
    ],
)
def test_bad_options_name_the_field(kwargs: dict, field: str) -> None:
    with pytest.raises(InvalidInput) as info:
        LoadOptions(**kwargs)
    assert info.value.field == field


@pytest.mark.parametrize(
    "url", ["https://127.0.0.1:1", "127.0.0.1:8000", "ftp://x", "http://:80", "http://h:99999"]
)
def test_bad_urls(url: str) -> None:
    with pytest.raises(InvalidInput, match="URL"):
        parse_url(url, model="m")


def test_unreachable_server_is_one_clear_error() -> None:
    from modelscale.serve.runner import bind_socket

    sock = bind_socket("127.0.0.1", 0)
    try:
        with pytest.raises(ServerError, match="Cannot reach"):
            run_load(
                f"http://127.0.0.1:{sock.getsockname()[1]}", model="m", options=LoadOptions(rate=1)
            )
    finally:
        sock.close()


def test_bodies_decode_on_the_server_side(mlp_path, tmp_path: pathlib.Path) -> None:
    import json

    contract = ModelContract.from_artifact(
        ModelArtifact.load(mlp_path), name="mlp", version="1", max_batch=8
    )
    meta = contract.metadata(versions=("1",))
    x = np.random.default_rng(0).standard_normal((10, 16)).astype(np.float32)
    np.savez(tmp_path / "x.npz", x=x)
    target = Target("127.0.0.1", 1, "mlp")
    for binary in (False, True):
        reqs = build_bodies(
            target,
            meta,
            inputs=tmp_path / "x.npz",
            batch=2,
            outputs=("y",),
            binary=binary,
            api_key="k",
        )
        assert len(reqs) == 5
        head, body = reqs[1].split(b"\r\n\r\n", 1)
        headers = dict(line.split(": ", 1) for line in head.decode().split("\r\n")[1:])
        assert headers["Authorization"] == "Bearer k" and int(headers["Content-Length"]) == len(
            body
        )
        d = decode_request(body, headers.get("Inference-Header-Content-Length"), contract)
        np.testing.assert_array_equal(d.inputs["x"], x[2:4])
        assert d.outputs == ("y",) and d.binary_outputs == (
            frozenset({"y"}) if binary else frozenset()
        )
    synthetic = build_bodies(target, json.loads(METADATA), batch=3)
    assert len(synthetic) == 1 and b'"shape":[3,1]' in synthetic[0]


def test_bad_inputs_files(mlp_path, tmp_path: pathlib.Path) -> None:
    contract = ModelContract.from_artifact(
        ModelArtifact.load(mlp_path), name="mlp", version="1", max_batch=8
    )
    meta = contract.metadata(versions=("1",))
    target = Target("127.0.0.1", 1, "mlp")
    np.savez(tmp_path / "wrong.npz", z=np.zeros((2, 16)))
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    for name, match in (
        ("wrong.npz", "lacks input"),
        ("junk.npz", "not a readable"),
        ("none.npz", "does not exist"),
    ):
        with pytest.raises(InvalidInput, match=match):
            build_bodies(target, meta, inputs=tmp_path / name)
    with pytest.raises(InvalidInput, match="Unknown output"):
        build_bodies(target, meta, outputs=("nope",))


@pytest.mark.e2e
def test_load_against_the_real_server(mlp_path) -> None:
    spec = DeploymentSpec.single(mlp_path, name="mlp", replicas=1)
    with ServerProcess(spec) as server:
        server.wait_ready()
        for binary in (False, True):
            r = run_load(
                server.url,
                model="mlp",
                options=LoadOptions(
                    rate=200, duration_s=1, binary=binary, outputs=("y",), warmup_s=0
                ),
            )
            assert r.overall.ok == r.overall.sent == 200
            # Its own batches, read from /metrics before and after: no objective, no predictions.
            assert r.server["batches"] > 0 and 1.0 <= r.server["mean_batch"] <= 8.0
            assert "within_10pct" not in r.server and "mean_wait_ms" not in r.server
            assert f"Server: mean batch {r.server['mean_batch']:.1f}." in r.summary
        assert r.model_sha256 == ModelArtifact.load(mlp_path).sha256
        with pytest.raises(InvalidInput, match="404"):
            run_load(server.url, model="nope", options=LoadOptions(rate=10))


TEXT_META = {
    "name": "enc",
    "inputs": [{"name": "text", "datatype": "BYTES", "shape": [-1]}],
    "outputs": [{"name": "n_tokens", "datatype": "FP32", "shape": [-1]}],
}


def _body_of(request: bytes) -> bytes:
    return request.split(b"\r\n\r\n", 1)[1]


def test_text_inputs_from_a_text_file_json_and_binary(tmp_path: pathlib.Path) -> None:
    texts = tmp_path / "texts.txt"
    texts.write_text("first line\n\nsecond: über\n", encoding="utf-8")
    target = Target("127.0.0.1", 1, "enc")
    [first, second] = build_bodies(target, TEXT_META, inputs=texts)
    assert json.loads(_body_of(first))["inputs"][0]["data"] == ["first line"]
    assert json.loads(_body_of(second))["inputs"][0]["data"] == ["second: über"]
    [one] = build_bodies(target, TEXT_META, inputs=texts, batch=2, binary=True)
    body = _body_of(one)
    head_len = int(one.split(b"Inference-Header-Content-Length: ", 1)[1].split(b"\r\n", 1)[0])
    raw = body[head_len:]
    assert raw == b"\x0a\x00\x00\x00first line" + b"\x0d\x00\x00\x00second: \xc3\xbcber"


def test_bad_text_inputs(mlp_path, tmp_path: pathlib.Path) -> None:
    target = Target("127.0.0.1", 1, "enc")
    with pytest.raises(InvalidInput, match=r"cannot synthesise.*a \.txt file"):
        build_bodies(target, TEXT_META)
    (tmp_path / "empty.txt").write_text("\n\n")
    with pytest.raises(InvalidInput, match="has no text"):
        build_bodies(target, TEXT_META, inputs=tmp_path / "empty.txt")
    (tmp_path / "latin1.txt").write_bytes(b"caf\xe9\n")
    with pytest.raises(InvalidInput, match="as UTF-8 text"):
        build_bodies(target, TEXT_META, inputs=tmp_path / "latin1.txt")
    contract = ModelContract.from_artifact(
        ModelArtifact.load(mlp_path), name="mlp", version="1", max_batch=8
    )
    (tmp_path / "t.txt").write_text("a\n")
    with pytest.raises(InvalidInput, match="a text file, which gives one BYTES input"):
        build_bodies(target, contract.metadata(versions=("1",)), inputs=tmp_path / "t.txt")


def test_batching_deltas_from_two_scrapes() -> None:
    from modelscale.loadgen.server_side import batching_delta, describe

    before = {"batches": 10.0, "rows": 20.0, "dispatches": 10.0, "wait_s": 0.01, "predicted": 20.0}
    before |= {"ratio_le_0.9": 2.0, "ratio_le_1.1": 18.0, "ratio_le_1.25": 19.0}
    after = {"batches": 110.0, "rows": 420.0, "dispatches": 110.0, "wait_s": 0.11}
    after |= {"predicted": 420.0, "ratio_le_0.9": 42.0, "ratio_le_1.1": 378.0}
    after |= {"ratio_le_1.25": 399.0}
    d = batching_delta(before, after)
    assert d["batches"] == 100 and d["mean_batch"] == pytest.approx(4.0)
    assert d["mean_wait_ms"] == pytest.approx(1.0)
    assert d["within_10pct"] == pytest.approx(320 / 400)
    assert d["over_25pct"] == pytest.approx(20 / 400)
    assert "80% of requests within 10%" in describe(d)
    assert batching_delta(None, after) == {} and batching_delta(after, after) == {}
    assert describe({}) == ""
