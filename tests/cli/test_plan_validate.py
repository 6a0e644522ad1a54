"""`plan --validate URL` and `plan --validate-local`: a real server, a real find-max load test.

The MLP's stored profile is synthetic (S(n, T) = (1 + 2n)(0.5 + 0.5 / T) ms) while the real model
runs in microseconds, so these tests check the mechanics (what is measured, compared, recorded and
refused), not the accuracy; bench/plan_accuracy.py measures that.
"""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys
from collections.abc import Iterator

import pytest

import modelscale.cli.plan  # noqa: F401  (registers the command until cli/__init__ imports it)
from modelscale.config import DeploymentSpec
from modelscale.loadgen.trivial import TrivialServer
from modelscale.model import ModelArtifact
from modelscale.plan import Overheads, measured_overheads
from modelscale.serve import ServerProcess, start_server
from modelscale.store import open_store
from tests.cli.helpers import invoke
from tests.plan.conftest import linear_points, profile_result

FAST = ["--p99-ms", "40", "--machine", "local"]
FAST += ["--validate-seconds", "1", "--validate-repeats", "1"]  # FAST[:4] plans only


@pytest.fixture
def model(mlp_path: pathlib.Path) -> pathlib.Path:
    kb = open_store()
    art = ModelArtifact.load(mlp_path)
    kb.register_model(art.sha256, name="mlp", path=str(mlp_path))
    kb.record(profile_result(linear_points()), model_version=art.sha256)
    return mlp_path


@pytest.fixture(scope="module")
def mlp_server(mlp_path: pathlib.Path) -> Iterator[ServerProcess]:
    spec = DeploymentSpec.single(mlp_path, name="mlp", replicas=2, max_batch=4, max_wait_ms=1)
    with start_server(spec) as server:
        yield server


def test_validate_local_records_prediction_beside_measurement(model: pathlib.Path) -> None:
    result = invoke("plan", str(model), "--rps", "100", *FAST, "--validate-local", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    v = data["validation"]
    local = data["local"]
    assert v["config"] == {
        "replicas": local["replicas"],
        "threads": local["threads"],
        "max_batch": local["max_batch"],
        "max_wait_ms": local["max_wait_ms"],
        "objective_ms": local["objective_ms"],
    }
    # The plan chose batches from the objective here, and the server ran them: only the objective
    # set, its batches capped where the planner capped them (half the bound).
    assert local["objective_ms"] == 40.0 and local["max_wait_ms"] == 0.0
    assert v["measured_rps"] > 0 and v["predicted_rps"] > 0
    assert v["error"] == pytest.approx(v["predicted_rps"] / v["measured_rps"] - 1)
    assert v["within_tolerance"] == (abs(v["error"]) <= 0.15 and not v["inconclusive"])
    # The server ran here: the CPU of its front, its replicas and the load generator was measured.
    assert set(v["measured_cpu_ms"]) == {"client", "front", "replicas"}
    assert all(x > 0 for x in v["measured_cpu_ms"].values())
    # The model was re-timed just before the test and the prediction scaled by it.
    assert v["speed_ratio"] > 0 and "its profiled time just before the test" in v["summary"]
    kb = open_store()
    stored = kb.run(v["validation_run_id"])
    load = kb.run(v["load_run_id"])
    assert stored.kind == "plan" and stored.results["measured_rps"] == v["measured_rps"]
    assert (
        stored.results["load_run_id"] == load.id and stored.results["plan_run_id"] == data["run_id"]
    )
    assert load.kind == "load" and load.results["max_rate_rps"] == v["measured_rps"]
    assert load.params["find_max"] is True
    # Other processes' CPU was metered in every probe window.
    assert len(v["other_cpu_cores"]) == len(load.results["windows"])
    assert all(c >= 0 for c in v["other_cpu_cores"])


def test_validate_url_reads_the_configuration_the_server_runs(
    model: pathlib.Path, mlp_server: ServerProcess
) -> None:
    result = invoke("plan", str(model), "--rps", "100", *FAST, "--validate", mlp_server.url)
    assert result.exit_code == 0, result.output
    assert "validation: 2 x 1 thr, batch 4 / 1 ms on" in result.stdout
    # The load generator ran here (a loopback URL); the server's pid is unknown, so its CPU is not.
    cpu_line = next(ln for ln in result.stdout.splitlines() if "CPU per request measured" in ln)
    assert "client" in cpu_line and "front" not in cpu_line
    assert "Validation stored as run" in result.stderr


@pytest.fixture(scope="module")
def trivial() -> Iterator[TrivialServer]:
    with TrivialServer() as server:
        yield server


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--validate", "ftp://x", "--validate-local"], "--validate URL and --validate-local exclude"),
        (["--validate", "ftp://host:1"], "must be a plain http:// base URL"),
        (["--validate", "http://127.0.0.1:9"], "Cannot reach 127.0.0.1:9"),
        (["--validate", "TRIVIAL"], "lacks parameters replicas, threads, max_batch_size, max_wait_ms"),
        (["--validate", "OTHER"], "not the planned model"),
        (["--validate-local", "--validate-seconds", "0"], "The --validate-seconds parameter of plan validation"),
        (["--validate-local", "--validate-repeats", "0"], "The --validate-repeats parameter of plan validation"),
        (["--validate-local", "--api-key-file", "no-such.key"], "Cannot read the API key file no-such.key"),
    ],
)  # fmt: skip
def test_bad_validation_input_is_one_line_and_exit_2(
    model: pathlib.Path,
    conv_path: pathlib.Path,
    trivial: TrivialServer,
    args: list[str],
    message: str,
) -> None:
    swap = {"TRIVIAL": trivial.url}
    if "OTHER" in args:  # a server running another model under the planned model's name
        spec = DeploymentSpec.single(conv_path, name="mlp", replicas=1)
        other = start_server(spec)
        swap["OTHER"] = other.url
    try:
        kb = open_store()
        before = [(r.id, r.kind) for r in kb.runs()]
        result = invoke("plan", str(model), "--rps", "100", *FAST, *[swap.get(a, a) for a in args])
    finally:
        if "OTHER" in swap:
            other.close()
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("Error: ") and message in result.stderr
    assert result.stderr.strip().count("\n") == 0
    assert [(r.id, r.kind) for r in open_store().runs()] == before  # nothing added, nothing lost


def test_later_plans_use_the_front_cost_a_validation_measured(model: pathlib.Path) -> None:
    # Whatever else runs on this machine: this test is about learning, not about disturbance.
    anyway = ["--validate-max-other-cores", "1000"]
    first = json.loads(
        invoke(
            "plan", str(model), "--rps", "100", *FAST, "--validate-local", *anyway, "--json"
        ).stdout
    )
    front = first["validation"]["measured_cpu_ms"]["front"]
    assert first["params"]["overheads"]["front_ms"] == Overheads.front_ms  # nothing measured yet
    again = json.loads(invoke("plan", str(model), "--rps", "100", *FAST[:4], "--json").stdout)
    assert again["params"]["overheads"]["front_ms"] == pytest.approx(front)
    handover = first["validation"]["measured_handover_ms"]
    assert handover > 0 and first["validation"]["mean_batch"] >= 1
    assert again["params"]["overheads"]["batch_ms"] == pytest.approx(handover)
    run_id = first["validation"]["validation_run_id"]
    assert any(f"measured by validation run {run_id}" in a for a in again["assumptions"])
    given = json.loads(
        invoke("plan", str(model), "--rps", "100", *FAST[:4], "--front-ms", "0.3", "--json").stdout
    )
    assert given["params"]["overheads"]["front_ms"] == 0.3
    assert any("given with --front-ms" in a for a in given["assumptions"])


def test_a_busy_machine_makes_the_validation_inconclusive_and_teaches_nothing(
    model: pathlib.Path,
) -> None:
    # One spinning neighbour takes a whole core, twice the threshold.
    neighbours = [subprocess.Popen([sys.executable, "-c", "while True: pass"])]
    try:
        result = invoke("plan", str(model), "--rps", "100", *FAST, "--validate-local")
    finally:
        for p in neighbours:
            p.kill()
            p.wait()
    assert result.exit_code == 0, result.output
    assert "inconclusive" in result.stdout
    assert "Other processes kept up to" in result.stdout
    (stored,) = [r for r in open_store().runs(kind="plan") if "measured_rps" in r.results]
    assert stored.results["inconclusive"] is True
    assert "run it again on a quiet machine" in stored.results["summary"]
    sha = ModelArtifact.load(model).sha256
    assert measured_overheads(open_store(), sha, Overheads()) is None
