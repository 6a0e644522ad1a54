"""`modelscale monitor baseline | run | status` and what they say to bad input."""

from __future__ import annotations

import pathlib
import shutil

import numpy as np
import pytest

from modelscale.monitor import Profile
from modelscale.store import open_store
from tests.cli.helpers import invoke, invoke_json
from tests.cli.test_monitor_cli import assert_bad_input
from tests.monitor.test_server import D_IN, predict, save_classifier


@pytest.fixture()
def model(tmp_path: pathlib.Path) -> pathlib.Path:
    return save_classifier(tmp_path / "clf.onnx")


def _data(tmp_path: pathlib.Path, rows: int = 500, **extra: np.ndarray) -> pathlib.Path:
    x = np.random.default_rng(0).standard_normal((rows, D_IN)).astype(np.float32)
    path = tmp_path / f"ref{rows}.npz"
    np.savez(path, x=x, labels=predict(x), **extra)
    return path


def test_baseline_profiles_the_model_and_is_stored_under_its_version(
    model: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    result = invoke("monitor", "baseline", str(model), "--data", str(_data(tmp_path)))
    assert result.exit_code == 0, result.output
    assert "500 rows, 8 features (7 numeric, 1 categorical), task classification" in result.stdout
    assert "Reference accuracy: 1.0000" in result.stdout
    out = invoke_json(
        "monitor", "baseline", str(model), "--data", str(_data(tmp_path)), "--name", "v1ref"
    )
    assert out["name"] == "v1ref" and out["rows"] == 500
    assert set(out["features"]) == {f"x[{i}]" for i in range(D_IN)} | {
        "probs.class",
        "probs.confidence",
    }
    store = open_store()
    try:
        run = store.run(out["run_id"])
    finally:
        store.close()
    assert run.kind == "baseline" and run.model_version == out["model"]["sha256"]
    assert Profile.from_dict(run.results["profile"]).rows == 500


@pytest.mark.parametrize(
    ("make", "args", "message"),
    [
        (
            lambda p: np.savez(p, other=np.zeros((200, D_IN), np.float32)),
            (),
            "no array for input 'x'",
        ),
        (
            lambda p: np.savez(p, x=np.zeros((200, 4), np.float32)),
            (),
            "axis 1 is 4; the model expects 6",
        ),
        (lambda p: np.savez(p, x=np.zeros((20, D_IN), np.float32)), (), "needs at least 100"),
        (
            lambda p: np.savez(p, x=np.zeros((200, D_IN), np.float32), labels=np.zeros(50)),
            (),
            "expected one label per reference row ([200])",
        ),
        (
            lambda p: np.savez(p, x=np.zeros((200, D_IN), np.float32), labels=np.full(200, np.nan)),
            (),
            "labels hold NaN",
        ),
        (
            lambda p: np.savez(p, x=np.zeros((200, D_IN), np.float32), labels=np.full(200, 0.5)),
            ("--task", "classification"),
            "expected whole numbers",
        ),
        (
            lambda p: np.savez(p, x=np.zeros((200, D_IN), np.float32)),
            ("--labels", "y"),
            "no array 'y'",
        ),
        (
            lambda p: np.savez(p, x=np.zeros((200, D_IN), np.float32)),
            ("--task", "ranking"),
            "--task of a baseline must be one of",
        ),
        (lambda p: p.write_bytes(b"not a zip"), (), "not a readable .npz"),
    ],
)
def test_baseline_bad_input_is_named_and_nothing_is_stored(
    model: pathlib.Path,
    tmp_path: pathlib.Path,
    make,
    args,
    message,  # type: ignore[no-untyped-def]
) -> None:
    data = tmp_path / "bad.npz"
    make(data)
    result = invoke("monitor", "baseline", str(model), "--data", str(data), *args)
    assert_bad_input(result, message)
    store = open_store()
    try:
        assert store.runs(kind="baseline") == []
    finally:
        store.close()


def test_baseline_without_data_uses_the_eval_set_of_the_models_compress_run(
    model: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    import dataclasses
    from typing import Any, ClassVar

    from modelscale.model import ModelArtifact
    from modelscale.result import Result

    assert_bad_input(
        invoke("monitor", "baseline", str(model)), "no --data, and no compress run of clf"
    )

    @dataclasses.dataclass(frozen=True)
    class _Compressed(Result):  # what a compress run stores about its eval set
        kind: ClassVar[str] = "compress"
        eval_source: str = ""
        chosen_sha256: str = ""
        params: dict[str, Any] = dataclasses.field(default_factory=dict)

    data = _data(tmp_path, 300)
    sha = ModelArtifact.load(model).sha256
    store = open_store()
    try:
        store.register_model(sha, name="clf")
        run = store.record(
            _Compressed(
                eval_source=str(data), chosen_sha256="f" * 64, params={"labels_key": "labels"}
            ),
            model_version=sha,
        )
    finally:
        store.close()
    result = invoke("monitor", "baseline", str(model))
    assert result.exit_code == 0, result.output
    assert f"the eval set of compress run {run}" in result.stderr
    assert "300 rows" in result.stdout and "Reference accuracy: 1.0000" in result.stdout


def test_run_merges_the_windows_several_servers_wrote(
    model: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    from modelscale.monitor.baseline import Baseline

    out = invoke_json("monitor", "baseline", str(model), "--data", str(_data(tmp_path, 1_000)))
    store = open_store()
    try:
        base = Baseline.from_run(store.run(out["run_id"]))
    finally:
        store.close()
    plan = base.feature_plan()
    logs = tmp_path / "logs"
    folder = logs / "monitor" / "model=clf" / "version=1"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(5)
    for server in ("a", "b"):
        x = rng.standard_normal((150, D_IN)).astype(np.float32)
        x[:, 0] += 3.0
        window = Profile.empty(plan.kinds(), sampled=plan.input_features())
        numeric, categorical, rows = plan.extract(
            {"x": x}, {"probs": np.eye(3, dtype=np.float32)[predict(x)]}
        )
        window.update(numeric, categorical, rows=rows, requests=rows, times=(7200.0, 7210.0))
        import orjson

        (folder / f"19700101T020000-{server}.json").write_bytes(
            orjson.dumps(
                {
                    "model": "clf",
                    "version": "1",
                    "start": 7200.0,
                    "end": 7210.0,
                    "baseline_run": out["run_id"],
                    "task": "classification",
                    "profile": window.to_dict(),
                    "predictions": [],
                    "labels": [],
                }
            )
        )
    got = invoke_json("monitor", "run", "--logs", str(logs), "--window", "300")
    assert got["files"] == 2 and len(got["windows"]) == 1
    w = got["windows"][0]
    assert w["drift"]["rows"] == 300 and w["drift"]["servers"] == 2
    assert w["verdict"] == "drift" and "x[0]" in w["drift"]["drifted"]
    text = invoke("monitor", "run", "--logs", str(logs), "--no-store")
    assert text.exit_code == 0, text.output
    assert "1 window(s) from 2 file(s): 1 not ok." in text.stdout


def test_run_and_status_bad_input(model: pathlib.Path, tmp_path: pathlib.Path) -> None:
    empty = invoke("monitor", "run", "--logs", str(tmp_path / "nothing"))
    assert empty.exit_code == 0 and "No monitor windows under" in empty.stdout
    assert_bad_input(
        invoke("monitor", "run", "--logs", str(tmp_path), "--window", "0"), "--window must be > 0"
    )
    assert_bad_input(
        invoke("monitor", "run", "--logs", str(tmp_path), "--alpha", "2"),
        "--alpha of drift must be in (0, 1)",
    )
    assert_bad_input(invoke("monitor", "status", "clf"), "no monitor windows of 'clf'")
    assert_bad_input(
        invoke("monitor", "status", "http://127.0.0.1:9"), "cannot reach http://127.0.0.1:9"
    )
    key = tmp_path / "key"
    key.write_text("k")
    assert_bad_input(
        invoke("monitor", "status", "clf", "--api-key-file", str(key)),
        "--api-key-file is for a server's URL",
    )
    bad = tmp_path / "logs" / "monitor" / "model=clf" / "version=1"
    bad.mkdir(parents=True)
    (bad / "w.json").write_text("{")
    assert_bad_input(
        invoke("monitor", "run", "--logs", str(tmp_path / "logs")), "is not a monitor window file"
    )
    shutil.rmtree(tmp_path / "logs")
