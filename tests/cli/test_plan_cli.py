"""`modelscale plan` end to end through the CLI, with a stored profile so nothing is timed."""

from __future__ import annotations

import json
import pathlib

import pytest
import yaml

import modelscale.cli.plan  # noqa: F401  (registers the command until cli/__init__ imports it)
from modelscale.model import ModelArtifact
from modelscale.store import open_store
from tests.cli.helpers import invoke
from tests.exported_models import save_stateful
from tests.plan.conftest import CATALOG_HEADER, linear_points, profile_result

FAST = ["--p99-ms", "40"]


@pytest.fixture
def model(mlp_path: pathlib.Path) -> pathlib.Path:
    """The tiny MLP with a stored profile of this machine: S(n, T) = (1 + 2n)(0.5 + 0.5 / T) ms."""
    kb = open_store()
    art = ModelArtifact.load(mlp_path)
    kb.register_model(art.sha256, name="mlp", path=str(mlp_path))
    kb.record(profile_result(linear_points()), model_version=art.sha256)
    return mlp_path


@pytest.fixture
def catalog(tmp_path: pathlib.Path) -> pathlib.Path:
    path = tmp_path / "catalog.csv"
    path.write_text(
        f"{CATALOG_HEADER}\n"
        "p1,small.2,r1,2,8,,,,0.10,0.04,test,\n"
        "p2,mid.4,r1,4,16,,,,0.25,0.08,test,\n"
        "p2,gpu.4,r1,4,16,T4,1,16,0.50,0.20,test,\n",
        encoding="utf-8",
    )
    return path


def test_plan_json_and_emitted_files(
    model: pathlib.Path, catalog: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    out = tmp_path / "out"
    result = invoke(
        "plan", str(model), "--rps", "300", *FAST, "--phases", "100,900", "--catalog", str(catalog),
        "--emit", "deploy", "--emit", "k8s", "--emit", "ray", "--out", str(out), "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["run_id"] is not None
    assert [p["rate_rps"] for p in data["phases"]] == [100.0, 300.0, 900.0]
    rec = data["phases"][1]["recommended"]
    assert rec["provider"] in ("p1", "p2") and rec["usd_per_month"] > 0
    assert {n["instance_type"] for n in data["not_planned"]} == {"gpu.4"}
    assert data["model"]["profiled_now"] is False
    assert sorted(pathlib.Path(f).name for f in data["files"]) == [
        "deploy.yaml", "k8s.yaml", "ray_serve.yaml",
    ]  # fmt: skip
    deploy = yaml.safe_load((out / "deploy.yaml").read_text(encoding="utf-8"))
    assert deploy["models"]["mlp"]["replicas"] == rec["replicas"]
    assert len(list(yaml.safe_load_all((out / "k8s.yaml").read_text(encoding="utf-8")))) == 4
    run = open_store().run(data["run_id"])
    assert run.kind == "plan" and run.params["rps"] == 300.0
    assert run.results["phases"][1]["recommended"]["instance_type"] == rec["instance_type"]


def test_plan_tables(model: pathlib.Path, catalog: pathlib.Path) -> None:
    result = invoke("plan", str(model), "--rps", "200", *FAST, "--catalog", str(catalog))
    assert result.exit_code == 0, result.output
    assert "200 req/s at p99 <= 40 ms" in result.stdout
    assert "Recommended:" in result.stdout and "cheapest" in result.stdout
    assert "Listed, not planned: 1 GPU machine(s)" in result.stdout
    assert "assumption:" in result.stdout
    assert "Stored as run" in result.stderr


def test_local_plan_without_store(model: pathlib.Path) -> None:
    result = invoke(
        "plan", str(model), "--rps", "100", *FAST, "--machine", "local", "--no-store", "--json"
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["run_id"] is None
    assert data["phases"][0]["recommended"]["provider"] == "local"
    assert [r.kind for r in open_store().runs()] == ["profile"]  # nothing new recorded


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["nothing.onnx", "--rps", "10", *FAST], "Unknown model 'nothing.onnx'"),
        (["MODEL", "--rps", "0", *FAST], "The --rps parameter of plan must be a rate > 0"),
        (["MODEL", "--rps", "-5", *FAST], "The --rps parameter of plan must be a rate > 0"),
        (["MODEL", "--rps", "10", "--p99-ms", "1"], "A p99 of 1 ms is impossible: one request"),
        (["MODEL", "--rps", "10", "--p99-ms", "0"], "The --p99-ms parameter of plan"),
        (["MODEL", "--rps", "10", *FAST, "--headroom", "0"], "The --headroom parameter of plan must be a number in (0, 1]"),
        (["MODEL", "--rps", "10", *FAST, "--headroom", "1.5"], "The --headroom parameter"),
        (["MODEL", "--rps", "10", *FAST, "--headroom", "-0.2"], "The --headroom parameter"),
        (["MODEL", "--rps", "10", *FAST, "--phases", "50,x"], "--phases must be a comma-separated list"),
        (["MODEL", "--rps", "10", *FAST, "--catalog", "MISSING_COLS"], "lacks the column(s) price_per_hour_usd"),
        (["MODEL", "--rps", "10", *FAST, "--catalog", "BAD_PRICE"], "row 3 (b.large): column 'price_per_hour_usd' must be a number >= 0. Got 'n/a'"),
        (["MODEL", "--rps", "10", *FAST, "--catalog", "nope.csv"], "Catalog nope.csv does not exist"),
        (["MODEL", "--rps", "10", *FAST, "--machine", "z9.huge"], "Unknown machine type 'z9.huge'"),
        (["MODEL", "--rps", "10", *FAST, "--emit", "deploy"], "--emit needs --out DIR"),
        (["MODEL", "--rps", "10", *FAST, "--emit", "helm", "--out", "o"], "--emit must be one of deploy, k8s, ray"),
        (["MODEL", "--rps", "10", *FAST, "--dim", "seq"], "--dim expects NAME=V"),
        (["MODEL", "--rps", "10", *FAST, "--core-factor", "0"], "The --core-factor parameter"),
    ],
)  # fmt: skip
def test_bad_input_is_one_line_and_exit_2(
    model: pathlib.Path, tmp_path: pathlib.Path, args: list[str], message: str
) -> None:
    (tmp_path / "missing.csv").write_text("provider,instance_type,vcpus,memory_gib\naws,a,2,8\n")
    (tmp_path / "bad.csv").write_text(
        f"{CATALOG_HEADER}\naws,a.large,r1,2,8,,,,0.1,,s,\naws,b.large,r1,2,8,,,,n/a,,s,\n"
    )
    swap = {"MODEL": str(model), "MISSING_COLS": str(tmp_path / "missing.csv"),
            "BAD_PRICE": str(tmp_path / "bad.csv")}  # fmt: skip
    kb = open_store()
    before = [(r.id, r.kind, r.results) for r in kb.runs()]
    result = invoke("plan", *[swap.get(a, a) for a in args])
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("Error: ")
    assert message in result.stderr
    assert result.stderr.strip().count("\n") == 0  # one line
    assert "Traceback" not in result.output
    assert [(r.id, r.kind, r.results) for r in open_store().runs()] == before  # earlier runs intact


def test_a_dim_without_value_names_plans_own_option(seq_path: pathlib.Path) -> None:
    result = invoke("plan", str(seq_path), "--rps", "10", *FAST, "--no-store")
    assert result.exit_code == 2, result.output
    assert "with no value" in result.stderr and "plan takes --dim only" in result.stderr
    assert result.stderr.strip().count("\n") == 0


def test_a_stateful_model_is_planned_as_the_advice_says(tmp_path: pathlib.Path) -> None:
    """state[2, batch, 8] and a 0-d sr: each error's advice, followed, leads to a plan."""
    path = str(save_stateful(tmp_path / "s.onnx"))
    local = ["--rps", "10", *FAST, "--machine", "local", "--max-time", "0.05"]
    result = invoke("plan", path, *local)
    assert result.exit_code == 2 and "say so with --batch-axis state=1." in result.stderr
    result = invoke("plan", path, *local, "--batch-axis", "state=1")
    assert result.exit_code == 2 and result.stderr.strip().count("\n") == 0
    assert "Plan takes integer ranges from a stored profile" in result.stderr
    assert "`modelscale profile MODEL --int-range NAME=LO,HI`" in result.stderr
    profiled = invoke(
        "profile", path, "--batch", "1", "--threads", "1", "--max-time", "0.05",
        "--batch-axis", "state=1", "--int-range", "sr=0,1",
    )  # fmt: skip
    assert profiled.exit_code == 0, profiled.output
    result = invoke("plan", path, *local, "--batch-axis", "state=1", "--json")
    assert result.exit_code == 0, result.output
    plan = json.loads(result.stdout)
    assert plan["model"]["inputs_from_run"] == 1
    assert plan["model"]["batch_axes"] == {"x": 0, "state": 1, "sr": None}


def test_emit_k8s_writes_the_dockerfile_and_says_how_to_build_the_image(
    model: pathlib.Path, catalog: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    out = tmp_path / "deploy"
    result = invoke(
        "plan", str(model), "--rps", "300", *FAST, "--phases", "100,900", "--catalog", str(catalog),
        "--emit", "k8s", "--out", str(out), "--image", "registry.example/mlp:2",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == ["Dockerfile", "k8s.yaml", model.name]
    assert (
        f"Build the image registry.example/mlp:2 with: pip wheel --no-deps --wheel-dir {out}"
        in (result.stdout)
    )
    assert f"docker build -t registry.example/mlp:2 {out}" in result.stdout
