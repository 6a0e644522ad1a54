from __future__ import annotations

import pathlib

import onnx
import pytest
from onnx import TensorProto, helper
from typer.testing import Result

from modelscale.store import open_store
from tests.cli.helpers import invoke, invoke_json
from tests.exported_models import save_minus_one_batch, save_stateful
from tests.onnx_models import save_unloadable

FAST = ("--max-time", "0.3", "--threads", "1")


def test_profile_table_and_stored_run(mlp_path: pathlib.Path, tmp_path: pathlib.Path) -> None:
    result = invoke(
        "profile", str(mlp_path), "--batch", "1,2", *FAST, "--plot", str(tmp_path / "p.png")
    )
    assert result.exit_code == 0, result.output
    assert "latency and throughput" in result.stdout
    assert "676" in result.stdout
    assert "Stored as run 1" in result.stderr
    assert (tmp_path / "p.png").exists()
    runs = open_store().runs(kind="profile")
    assert len(runs) == 1 and runs[0].model_name == "mlp"


def test_profile_json(seq_path: pathlib.Path) -> None:
    data = invoke_json(
        "profile",
        str(seq_path),
        "--batch",
        "1",
        "--dim",
        "seq=4,8",
        "--int-range",
        "ids=0,49",
        *FAST,
    )
    assert data["run_id"] == 1
    assert sorted(p["dims"]["seq"] for p in data["points"]) == [4, 8]
    assert data["params"]["int_ranges"] == {"ids": [0, 49]}
    shown = invoke_json("runs", "show", "1")
    assert shown["results"]["points"] == data["points"]
    listed = invoke_json("runs", "--model", "seq", "--kind", "profile")
    assert [r["id"] for r in listed] == [1]


def test_no_spinning_is_recorded(mlp_path: pathlib.Path) -> None:
    data = invoke_json("profile", str(mlp_path), "--batch", "1", *FAST, "--no-spinning")
    assert data["params"]["allow_spinning"] is False
    assert data["engine"]["allow_spinning"] is False
    assert "thread spinning off" in data["summary"]
    spun = invoke_json("profile", str(mlp_path), "--batch", "1", *FAST)
    assert spun["engine"]["allow_spinning"] is True and spun["params"]["allow_spinning"] is True
    bad = invoke("profile", str(mlp_path), "--batch", "1", *FAST, "--no-spinning=yes")
    assert bad.exit_code == 2
    assert "does not take a value" in bad.output and "Traceback" not in bad.output
    assert sorted(r.id for r in open_store().runs()) == [1, 2]  # the two runs above are kept


def test_no_store(mlp_path: pathlib.Path) -> None:
    assert invoke("profile", str(mlp_path), "--batch", "1", *FAST, "--no-store").exit_code == 0
    assert open_store().runs() == []


def _bad_cases(
    tmp_path: pathlib.Path, mlp: pathlib.Path, seq: pathlib.Path
) -> dict[str, tuple[list[str], str, dict]]:
    text = tmp_path / "notes.onnx"
    text.write_text("this is not a model")
    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes(mlp.read_bytes()[:200])
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    return {
        "missing file": (
            [str(tmp_path / "absent.onnx")],
            "does not exist. Expected a path to an .onnx file",
            {},
        ),
        "not onnx": ([str(text)], "is not a valid ONNX model", {}),
        "truncated": ([str(truncated)], "is not a valid ONNX model", {}),
        "ort cannot load": (
            [str(save_unloadable(tmp_path / "unloadable.onnx"))],
            "ONNX Runtime cannot load",
            {},
        ),
        "unknown dim": (
            [str(seq), "--dim", "sq=8"],
            "Unknown dim 'sq' in --dim: the model's symbolic dims are seq",
            {},
        ),
        "missing dim": ([str(seq)], "Input 'ids' axis 1 is symbolic dim 'seq' with no value", {}),
        "batch < 1": (
            [str(mlp), "--batch", "0"],
            "--batch values must be integers >= 1. Got 0",
            {},
        ),
        "batch not a number": (
            [str(mlp), "--batch", "one"],
            "--batch must be a comma-separated list of integers",
            {},
        ),
        "bad dim syntax": ([str(seq), "--dim", "seq"], "--dim expects NAME=V[,V...]", {}),
        "bad shape": (
            [str(mlp), "--shape", "x=1,15"],
            "--shape of x: axis 1 is 15 but the model fixes it at 16",
            {},
        ),
        "bad max time": (
            [str(mlp), "--max-time", "0"],
            "--max-time parameter of profile must be a number of seconds > 0",
            {},
        ),
        "bad inputs file": ([str(mlp), "--inputs", str(text)], "is not a readable .npz file", {}),
        "unwritable db": (
            [str(mlp)],
            "Cannot create the knowledge base directory",
            {"MODELSCALE_DB": f"sqlite:///{blocker / 'sub' / 'kb.db'}"},
        ),
        "unreachable postgres": (
            [str(mlp)],
            "Cannot open the knowledge base at postgresql+psycopg://u:***@127.0.0.1:1/db",
            {
                "MODELSCALE_DB": "postgresql://u:pw@127.0.0.1:1/db",
                "MODELSCALE_DB_CONNECT_TIMEOUT_S": "2",
            },
        ),
    }


CASES = [
    "missing file",
    "not onnx",
    "truncated",
    "ort cannot load",
    "unknown dim",
    "missing dim",
    "batch < 1",
    "batch not a number",
    "bad dim syntax",
    "bad shape",
    "bad max time",
    "bad inputs file",
    "unwritable db",
    "unreachable postgres",
]


@pytest.mark.parametrize("case", CASES)
def test_bad_input_one_line_exit_2_and_runs_kept(
    case: str,
    mlp_path: pathlib.Path,
    seq_path: pathlib.Path,
    tmp_path: pathlib.Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from modelscale.config import get_settings

    # an earlier run that must survive the failure
    assert invoke("profile", str(mlp_path), "--batch", "1", *FAST).exit_code == 0
    before = [r.id for r in open_store().runs()]
    args, message, env = _bad_cases(tmp_path, mlp_path, seq_path)[case]
    with monkeypatch.context() as m:
        for key, value in env.items():
            m.setenv(key, value)
        get_settings.cache_clear()
        result = invoke("profile", *FAST, *args)  # the case's own options win
    get_settings.cache_clear()
    assert result.exit_code == 2, result.output
    assert message in result.stderr
    assert result.stderr.startswith("Error: ")
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.output
    assert [r.id for r in open_store().runs()] == before


def test_debug_shows_the_traceback(tmp_path: pathlib.Path) -> None:
    result = invoke("--debug", "profile", str(tmp_path / "absent.onnx"))
    assert result.exit_code != 0
    assert result.exception is not None
    assert "does not exist" in str(result.exception)


def _one_line_error(result: Result) -> str:
    assert result.exit_code == 2, result.output
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.output
    return str(result.stderr)


def test_exported_model_dims(tmp_path: pathlib.Path) -> None:
    """-1 batch with --shape is accepted; --dim ?= is refused with advice to use --shape."""
    path = str(save_minus_one_batch(tmp_path / "m.onnx"))
    data = invoke_json("profile", path, "--batch", "1,2", "--shape", "x=1,3,48,192", *FAST)
    assert {tuple(p["input_shapes"]["x"]) for p in data["points"]} == {
        (1, 3, 48, 192),
        (2, 3, 48, 192),
    }
    err = _one_line_error(invoke("profile", path, "--dim", "?=48", *FAST))
    assert "--dim cannot set '?': unnamed dims are separate dims" in err
    assert "Give whole input shapes in --shape (INPUT=D0,D1,...)" in err
    assert "x axes 2, 3" in err


def test_batch_axis_and_scalar_inputs(tmp_path: pathlib.Path) -> None:
    path = str(save_stateful(tmp_path / "s.onnx"))
    err = _one_line_error(invoke("profile", path, "--batch", "1,2", *FAST))
    assert "If its batch axis is axis 1 (batch), say so with --batch-axis state=1." in err
    err = _one_line_error(invoke("profile", path, "--batch-axis", "state=1", *FAST))
    assert err.rstrip().endswith("give their range with --int-range sr=LO,HI.)")
    result = invoke(
        "profile", path, "--batch", "1,2", "--batch-axis", "state=1", "--int-range", "sr=0,1",
        *FAST,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "sr=scalar" in result.stdout and "sr=\n" not in result.stdout
    for bad, message in [
        ("state=x", "--batch-axis expects INPUT=AXIS"),
        ("state=5", "--batch-axis of state must be an axis in [0, 2]"),
        ("sr=0", "it is a 0-d tensor (a scalar): it has no batch axis"),
    ]:
        assert message in _one_line_error(invoke("profile", path, "--batch-axis", bad, *FAST))


def test_flop_units_and_long_dim_names(tmp_path: pathlib.Path) -> None:
    """'4 FLOP (0 MAC)', spaced; a long dim name becomes a short header explained below."""
    long = "unk__2934_sequence_length"
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])],
        "relu",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", long])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", long])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = tmp_path / "relu.onnx"
    onnx.save(model, str(path))
    result = invoke("profile", str(path), "--batch", "1", "--dim", f"{long}=4,8", *FAST)
    assert result.exit_code == 0, result.output
    assert "4 FLOP (0 MAC)" in result.stdout
    assert f"d1 = {long}" in result.stdout
