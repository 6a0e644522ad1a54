"""`modelscale assess`: a table and exit 0 when nothing regressed, exit 1 on a regression, one
line and exit 2 on bad input; --emit writes a schedule that runs it against the baseline."""

from __future__ import annotations

import json
import pathlib

import pytest
import yaml

from modelscale.store import open_store
from tests.cli.helpers import invoke
from tests.workflow.assess_models import LoadRun, save_files

QUICK = ("--no-load", "--batch", "1", "--blocks", "3", "--block-seconds", "0.05")


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, pathlib.Path]:
    return save_files(tmp_path_factory.mktemp("assess-cli"))


def _baseline(files: dict[str, pathlib.Path]) -> int:
    result = invoke("assess", str(files["model"]), "--eval", str(files["eval"]), *QUICK, "--json")
    assert result.exit_code == 0, result.output
    return int(json.loads(result.stdout)["run_id"])


def _one_line_error(result: object, *needles: str) -> None:
    assert result.exit_code == 2, result.output  # type: ignore[attr-defined]
    out = result.output  # type: ignore[attr-defined]
    assert "Traceback" not in out
    lines = [line for line in out.splitlines() if line.strip()]
    assert lines[0].startswith("Error:"), out
    text = " ".join(out.split())
    for needle in needles:
        assert needle in text, out


def test_the_first_assessment_prints_the_baseline_table_and_exits_0(
    files: dict[str, pathlib.Path],
) -> None:
    result = invoke("assess", str(files["model"]), "--eval", str(files["eval"]), *QUICK)
    assert result.exit_code == 0, result.output
    for word in ("check", "verdict", "latency b1 x 1 thr", "accuracy", "baseline", "Stored as"):
        assert word in result.output
    (run,) = open_store().runs(kind="assess")
    assert run.results["baseline_run_id"] is None


def test_a_slower_model_exits_1_with_a_latency_regression(files: dict[str, pathlib.Path]) -> None:
    base = _baseline(files)
    result = invoke("assess", str(files["slow"]), "--baseline", str(base), *QUICK)
    assert result.exit_code == 1, result.output
    assert "regression" in result.output and "side by side" in result.output


def test_flipped_outputs_exit_1_with_an_accuracy_regression_in_json(
    files: dict[str, pathlib.Path],
) -> None:
    base = _baseline(files)
    result = invoke(
        "assess", str(files["flipped"]), "--baseline", str(base), "--no-latency", "--no-load",
        "--json",
    )  # fmt: skip
    assert result.exit_code == 1, result.output
    doc = json.loads(result.stdout)
    assert doc["regressed"] is True and doc["baseline_run_id"] == base
    (acc,) = [c for c in doc["checks"] if c["name"] == "accuracy"]
    assert acc["verdict"] == "regression" and acc["now"] < 0.5


def test_the_unchanged_model_exits_0(files: dict[str, pathlib.Path]) -> None:
    base = _baseline(files)
    result = invoke("assess", str(files["model"]), "--baseline", str(base), *QUICK, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["regressed"] is False


def test_an_unknown_model_is_one_line_exit_2() -> None:
    result = invoke("assess", "no-such-model.onnx", *QUICK)
    _one_line_error(result, "no-such-model.onnx", "ONNX file")


def test_a_baseline_of_the_wrong_kind_is_one_line_exit_2(
    files: dict[str, pathlib.Path],
) -> None:
    load_id = open_store().record(LoadRun())
    result = invoke("assess", str(files["model"]), "--baseline", str(load_id), *QUICK)
    _one_line_error(result, "--baseline", f"Got {load_id} instead, a run of kind load")


def test_a_baseline_that_does_not_exist_is_one_line_exit_2(
    files: dict[str, pathlib.Path],
) -> None:
    result = invoke("assess", str(files["model"]), "--baseline", "4242", *QUICK)
    _one_line_error(result, "--baseline", "no run has that id")


def test_an_unwritable_emit_path_is_one_line_exit_2_before_any_work(
    files: dict[str, pathlib.Path], tmp_path: pathlib.Path
) -> None:
    out = tmp_path / "no" / "such" / "dir" / "assess.cron"
    result = invoke("assess", str(files["model"]), "--emit", "cron", "--out", str(out), *QUICK)
    _one_line_error(result, "--out", "does not exist")
    assert open_store().runs(kind="assess") == []  # refused before measuring anything


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (("--blocks", "1"), ("--blocks", "an integer >= 2")),
        (("--max-slowdown", "0.8"), ("--max-slowdown", "a ratio >= 1")),
        (("--max-accuracy-drop", "5"), ("--max-accuracy-drop", "a share in [0, 1)")),
        (("--window-seconds", "0"), ("--window-seconds", "(0, 600]")),
        (("--batch", "0"), ("--batch",)),
        (("--emit", "systemd"), ("--emit", "'cron' or 'k8s'")),
        (("--emit", "cron", "--schedule", "every night"), ("--schedule", "five fields")),
    ],
)
def test_bad_option_values_are_one_line_exit_2(
    files: dict[str, pathlib.Path], args: tuple[str, ...], needles: tuple[str, ...]
) -> None:
    result = invoke("assess", str(files["model"]), *args)
    _one_line_error(result, *needles)


def test_emit_cron_writes_a_line_that_runs_assess_against_the_baseline(
    files: dict[str, pathlib.Path], tmp_path: pathlib.Path
) -> None:
    base = _baseline(files)
    out = tmp_path / "assess.cron"
    result = invoke(
        "assess", str(files["model"]), *QUICK, "--emit", "cron", "--schedule", "15 4 * * *",
        "--out", str(out),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert str(out) in " ".join(result.output.split())
    line = out.read_text().strip().splitlines()[-1]
    assert line.startswith("15 4 * * * cd ")
    assert f"assess {files['model']} --baseline {base}" in line
    assert f"--eval {files['eval']}" in line


def test_emit_k8s_on_a_first_assessment_uses_it_as_the_baseline(
    files: dict[str, pathlib.Path], tmp_path: pathlib.Path
) -> None:
    out = tmp_path / "job.yaml"
    result = invoke(
        "assess", str(files["model"]), "--eval", str(files["eval"]), *QUICK, "--emit", "k8s",
        "--out", str(out), "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    job = yaml.safe_load(out.read_text())
    (container,) = job["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    assert container["command"][:5] == [
        "modelscale", "assess", "/models/clf.onnx", "--baseline", str(doc["run_id"]),
    ]  # fmt: skip
    assert doc["emitted"] == str(out.resolve())
