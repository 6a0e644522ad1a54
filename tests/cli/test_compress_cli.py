from __future__ import annotations

import json
import pathlib

import numpy as np
import pytest

import modelscale.cli.compress  # noqa: F401  (registers the command)
from modelscale.store import open_store
from tests.cli.helpers import invoke, invoke_json

FAST = ("--max-time", "0.05", "--threads", "1")


def _eval_file(
    tmp_path: pathlib.Path, name: str = "eval.npz", rows: int = 64, **arrays
) -> pathlib.Path:
    rng = np.random.default_rng(0)
    base = {
        "x": rng.standard_normal((rows, 16)).astype(np.float32),
        "labels": rng.integers(0, 4, rows),
    }
    path = tmp_path / name
    np.savez(path, **{**base, **arrays})
    return path


def test_table_summary_and_stored_lineage(mlp_path: pathlib.Path, tmp_path: pathlib.Path) -> None:
    out = tmp_path / "out"
    result = invoke(
        "compress",
        str(mlp_path),
        "--eval",
        str(_eval_file(tmp_path)),
        "--metric",
        "agreement",
        "--max-drop",
        "0.2",
        "--candidates",
        "int8-dynamic,fp16",
        "--out",
        str(out),
        *FAST,
    )
    assert result.exit_code == 0, result.output
    assert "compress mlp" in result.stdout and "Pareto front:" in result.stdout
    assert "int8-dynamic" in result.stdout and "fp16" in result.stdout
    assert "MiB" in result.stdout and " MB" not in result.stdout  # one size unit
    assert "Stored as run 1 with 3 trial runs" in result.stderr
    summary = json.loads((out / "compress_summary.json").read_text())
    assert (out / f"mlp.{summary['chosen']}.onnx").is_file()
    runs = open_store().runs(kind="compress")
    assert len(runs) == 4 and sorted(r.parent_run_id or 0 for r in runs) == [0, 1, 1, 1]
    listed = invoke("runs")
    assert listed.exit_code == 0 and "compress" in listed.stdout


def test_json_output(mlp_path: pathlib.Path, tmp_path: pathlib.Path) -> None:
    data = invoke_json(
        "compress",
        str(mlp_path),
        "--eval",
        str(_eval_file(tmp_path)),
        "--candidates",
        "int8-dynamic",
        "--out",
        str(tmp_path / "o"),
        "--max-drop",
        "0",
        *FAST,
    )
    assert data["search_run_id"] == 1 and set(data["trial_run_ids"]) >= {"original", "int8-dynamic"}
    assert data["metric"] == "accuracy" and data["tolerance"]["max_drop"] == 0.0
    assert [t["name"] for t in data["trials"]][:2] == ["original", "int8-dynamic"]
    chosen = next(t for t in data["trials"] if t["name"] == data["chosen"])
    assert chosen["passed"] and chosen["drop"] <= 0.0


def _bad_cases(tmp_path: pathlib.Path, mlp: pathlib.Path) -> dict[str, tuple[list[str], str]]:
    good = _eval_file(tmp_path)
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    wrong_input = tmp_path / "wrong.npz"
    np.savez(wrong_input, pixels=np.ones((64, 16), np.float32))
    return {
        "eval lacks an input": (["--eval", str(wrong_input)], "has no array for input 'x'"),
        "label count": (
            ["--eval", str(_eval_file(tmp_path, "n.npz", labels=np.zeros(10, np.int64)))],
            "'labels' has 10 rows but the inputs have 64",
        ),
        "label ids beyond classes": (
            ["--eval", str(_eval_file(tmp_path, "c.npz", labels=np.full(64, 9)))],
            "holds class ids from 9 to 9, but the output has 4 classes",
        ),
        "regression label shape": (
            ["--eval", str(good), "--metric", "rmse"],
            # Half the rows: the other half calibrates the static candidates.
            "'labels' has shape [32] but the evaluated output has shape [32, 4]",
        ),
        "calibration too small": (
            [
                "--eval",
                str(good),
                "--calibration",
                str(_eval_file(tmp_path, "s.npz", rows=8, x=np.full((8, 16), 7, np.float32))),
            ],
            "has 8 rows; static quantization needs at least 16",
        ),
        "calibration overlaps eval": (
            ["--eval", str(good), "--calibration", str(good)],
            "shares 64 example(s) with the eval set",
        ),
        "max drop above 1": (
            ["--eval", str(good), "--max-drop", "2"],
            "--max-drop parameter of compress must be a number in [0, 1]. Got 2.0",
        ),
        "negative rel drop": (
            ["--eval", str(good), "--max-rel-drop", "-0.5"],
            "must be a number in [0, 1]. Got -0.5",
        ),
        "unknown metric": (
            ["--eval", str(good), "--metric", "auc"],
            "must be one of accuracy, top5, f1",
        ),
        "unwritable out": (
            ["--eval", str(good), "--out", str(blocker / "sub")],
            "Cannot write to --out",
        ),
        "missing eval file": (["--eval", str(tmp_path / "absent.npz")], "does not exist"),
    }


@pytest.mark.parametrize(
    "case",
    [
        "eval lacks an input",
        "label count",
        "label ids beyond classes",
        "regression label shape",
        "calibration too small",
        "calibration overlaps eval",
        "max drop above 1",
        "negative rel drop",
        "unknown metric",
        "unwritable out",
        "missing eval file",
    ],
)
def test_bad_input_one_line_exit_2_and_runs_kept(
    case: str, mlp_path: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    earlier = invoke(
        "compress",
        str(mlp_path),
        "--eval",
        str(_eval_file(tmp_path, "ok.npz")),
        "--candidates",
        "int8-dynamic",
        "--out",
        str(tmp_path / "ok"),
        *FAST,
    )
    assert earlier.exit_code == 0, earlier.output
    before = [r.id for r in open_store().runs()]
    args, message = _bad_cases(tmp_path, mlp_path)[case]
    result = invoke("compress", str(mlp_path), "--out", str(tmp_path / "out"), *FAST, *args)
    assert result.exit_code == 2, result.output
    assert message in result.stderr
    assert result.stderr.startswith("Error: ")
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.output
    assert [r.id for r in open_store().runs()] == before
