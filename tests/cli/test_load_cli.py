"""`modelscale load`: tables and JSON, stored runs linked to the model version, bad input exits 2;
a knowledge base that cannot store costs no result; dynamic axes are sized, never guessed."""

from __future__ import annotations

import json
import pathlib
from collections.abc import Iterator

import pytest

import modelscale.cli.load  # noqa: F401  (registers the command)
from modelscale.config import DeploymentSpec, get_settings
from modelscale.loadgen.trivial import TrivialServer
from modelscale.model import ModelArtifact
from modelscale.serve import ServerProcess
from modelscale.serve.runner import bind_socket
from modelscale.store import open_store
from tests.cli.helpers import invoke, invoke_json
from tests.read_only import read_only_url


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


def _use_kb(monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    monkeypatch.setenv("MODELSCALE_DB", url)
    get_settings.cache_clear()


_QUICK = ("--model", "trivial", "--rate", "100", "--duration", "0.5", "--warmup", "0")


def test_a_read_only_knowledge_base_prints_the_results_first_then_saves_them(
    trivial: TrivialServer, db_url: str, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _use_kb(monkeypatch, read_only_url(db_url, tmp_path))
    monkeypatch.chdir(tmp_path)
    result = invoke("load", trivial.url, *_QUICK)
    assert result.exit_code == 2, result.output
    assert "p99.9" in result.stdout and "Traceback" not in result.output
    assert result.output.index("p99.9") < result.output.index("not stored")
    (saved,) = tmp_path.glob("modelscale-load-*.json")
    assert f"The results are saved in {saved}." in result.stderr
    assert "readonly" in result.stderr or "read-only" in result.stderr
    doc = json.loads(saved.read_text())
    assert doc["kind"] == "load" and doc["results"]["overall"]["ok"] == 50
    assert doc["params"]["rate"] == 100


def test_an_unreachable_knowledge_base_is_said_first_and_the_json_still_printed(
    trivial: TrivialServer, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _use_kb(monkeypatch, "postgresql://modelscale@127.0.0.1:1/nowhere")  # nothing on port 1
    monkeypatch.chdir(tmp_path)
    result = invoke("load", trivial.url, *_QUICK, "--json")
    assert result.exit_code == 2, result.output
    data = json.loads(result.stdout)
    assert data["run_id"] is None and data["overall"]["ok"] == 50
    warning, *_, error = result.stderr.strip().splitlines()
    assert (
        warning.startswith("warning: Cannot open the knowledge base") and "127.0.0.1:1" in warning
    )
    assert error.startswith("Error: The results were not stored") and "modelscale-load-" in error
    assert len(list(tmp_path.glob("modelscale-load-*.json"))) == 1


def test_no_store_with_an_unreachable_knowledge_base_is_quiet(
    trivial: TrivialServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    _use_kb(monkeypatch, "postgresql://modelscale@127.0.0.1:1/nowhere")
    result = invoke("load", trivial.url, *_QUICK, "--no-store")
    assert result.exit_code == 0, result.output
    assert "warning" not in result.stderr and "not stored" not in result.stderr


def test_dims_take_one_value_each(trivial: TrivialServer) -> None:
    result = invoke("load", trivial.url, *_QUICK, "--dim", "seq=8,16", "--no-store")
    assert result.exit_code == 2
    assert "--dim takes one value per dim" in result.stderr and "Traceback" not in result.output


@pytest.mark.e2e
def test_symbolic_dims_are_required_or_taken_from_the_latest_profile(
    seq_path: pathlib.Path,
) -> None:
    args = ("--model", "seq", "--rate", "20", "--duration", "0.5", "--warmup", "0")
    with ServerProcess(DeploymentSpec.single(seq_path, name="seq")) as server:
        server.wait_ready()
        refused = invoke("load", server.url, *args)
        assert refused.exit_code == 2 and "Traceback" not in refused.output
        assert "'ids' axis 1" in refused.stderr and "will not guess" in refused.stderr
        assert "give --shape (e.g. ids=D0,D1,...), real inputs in --inputs" in refused.stderr
        profiled = invoke(
            "profile", str(seq_path), "--dim", "seq=8,16", "--batch", "1", "--threads", "1",
            "--max-time", "0.2", "--int-range", "ids=0,49",
        )  # fmt: skip
        assert profiled.exit_code == 0, profiled.output
        from_profile = invoke("load", server.url, *args)
        given = invoke("load", server.url, *args, "--dim", "seq=4", "--batch", "2")
    assert from_profile.exit_code == 0, from_profile.output
    assert "Requests: ids 1x8, mask 1x8 (seq=8, from profile run 1)" in from_profile.stderr
    assert given.exit_code == 0, given.output
    assert "Requests: ids 2x4, mask 2x4 (seq=4, from --dim)" in given.stderr
    assert "Requests: ids 2x4, mask 2x4 (seq=4, from --dim)" in given.stdout  # under the table
    first, second = sorted(open_store().runs(kind="load"), key=lambda r: r.id)
    assert first.results["inputs"] == {
        "shapes": {"ids": [1, 8], "mask": [1, 8]},
        "dims": {"seq": 8},
        "source": "profile run 1",
    }
    assert first.results["overall"]["errors"] == {}
    assert second.results["inputs"]["dims"] == {"seq": 4} and second.params["dims"] == {"seq": 4}
