"""`modelscale load`: tables and JSON, stored runs linked to the model version, bad input exits 2."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import modelscale.cli.load  # noqa: F401  (registers the command)
from modelscale.config import DeploymentSpec
from modelscale.loadgen.trivial import TrivialServer
from modelscale.model import ModelArtifact
from modelscale.serve import ServerProcess
from modelscale.serve.runner import bind_socket
from modelscale.store import open_store
from tests.cli.helpers import invoke, invoke_json


@pytest.fixture(scope="module")
def trivial() -> Iterator[TrivialServer]:
    with TrivialServer() as server:
        yield server


def test_table_output_and_stored_run(trivial: TrivialServer) -> None:
    result = invoke(
        "load",
        trivial.url,
        "--model",
        "trivial",
        "--rate",
        "200",
        "--duration",
        "1",
        "--warmup",
        "0",
    )
    assert result.exit_code == 0, result.output
    assert "p99.9" in result.stdout and "req/s achieved" in result.stdout
    assert "Stored as run 1" in result.stderr
    (run,) = open_store().runs(kind="load")
    assert run.results["overall"]["ok"] == 200 and run.params["rate"] == 200


def test_json_steps(trivial: TrivialServer) -> None:
    data = invoke_json(
        "load",
        trivial.url,
        "-m",
        "trivial",
        "--pattern",
        "steps:50,100",
        "--duration",
        "1",
        "--no-store",
    )
    assert data["run_id"] is None and [w["rate_rps"] for w in data["windows"]] == [50, 100]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "--rate parameter"),
        (("--rate", "10", "--concurrency", "2"), "--concurrency parameter"),
        (("--rate", "10", "--pattern", "sine"), "--pattern option"),
        (("--rate", "0"), "--rate parameter"),
        (("--rate", "10", "--duration", "0"), "--duration parameter"),
        (("--rate", "10", "--inputs", "none.npz"), "does not exist"),
        (("--rate", "10", "--api-key-file", "nokey.txt"), "Cannot read the API key file"),
        (("--rate", "10", "--output", "nope"), "Unknown output"),
        (("--find-max", "--concurrency", "2"), "--concurrency parameter"),
        (("--rate", "10", "--batch", "0"), "--batch parameter"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(trivial: TrivialServer, args, message) -> None:
    result = invoke("load", trivial.url, "--model", "trivial", *args, "--no-store")
    assert result.exit_code == 2, result.output
    assert message in result.stderr and "Traceback" not in result.output


def test_bad_url_and_unreachable_server() -> None:
    result = invoke("load", "localhost:8000", "--model", "m", "--rate", "1", "--no-store")
    assert result.exit_code == 2 and "http://" in result.stderr
    sock = bind_socket("127.0.0.1", 0)
    try:
        result = invoke(
            "load",
            f"http://127.0.0.1:{sock.getsockname()[1]}",
            "--model",
            "m",
            "--rate",
            "1",
            "--no-store",
        )
    finally:
        sock.close()
    assert result.exit_code == 2 and "Cannot reach" in result.stderr
    assert invoke("load", "http://127.0.0.1:1").exit_code == 2  # --model is required


@pytest.mark.e2e
def test_run_is_linked_to_the_served_model_version(mlp_path) -> None:
    with ServerProcess(DeploymentSpec.single(mlp_path, name="mlp")) as server:
        server.wait_ready()
        data = invoke_json(
            "load", server.url, "--model", "mlp", "--concurrency", "2", "--duration", "0.5"
        )
        missing = invoke("load", server.url, "--model", "nope", "--rate", "5", "--no-store")
    sha = ModelArtifact.load(mlp_path).sha256
    assert data["model_sha256"] == sha and data["mode"] == "closed"
    (run,) = open_store().runs(kind="load")
    assert run.model_version == sha and run.id == data["run_id"]
    assert (
        missing.exit_code == 2
        and "404" in missing.stderr
        and "unknown model 'nope'" in missing.stderr
    )
