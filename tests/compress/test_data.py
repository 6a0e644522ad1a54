from __future__ import annotations

import pathlib

import numpy as np
import pytest

from modelscale.compress.data import (
    EvalSet,
    check_disjoint,
    check_labels,
    load_eval_set,
    split_for_calibration,
)
from modelscale.compress.metrics import METRICS
from modelscale.errors import InvalidInput
from modelscale.model import ModelArtifact
from tests.exported_models import save_stateful


def test_loads_inputs_and_labels(mlp_path: pathlib.Path, tmp_path: pathlib.Path) -> None:
    path = tmp_path / "e.npz"
    np.savez(path, x=np.ones((5, 16), np.float64), labels=np.arange(5))
    ev = load_eval_set(path, ModelArtifact.load(mlp_path).signature)
    assert ev.rows == 5 and ev.inputs["x"].dtype == np.float32
    assert list(ev.labels) == [0, 1, 2, 3, 4]


def test_missing_input_and_label_count_are_named(
    mlp_path: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    sig = ModelArtifact.load(mlp_path).signature
    np.savez(tmp_path / "a.npz", pixels=np.ones((5, 16), np.float32))
    with pytest.raises(InvalidInput, match="no array for input 'x'"):
        load_eval_set(tmp_path / "a.npz", sig)
    np.savez(tmp_path / "b.npz", x=np.ones((5, 16), np.float32), labels=np.arange(4))
    with pytest.raises(InvalidInput, match="'labels' has 4 rows but the inputs have 5"):
        load_eval_set(tmp_path / "b.npz", sig)


def test_label_checks_per_metric() -> None:
    out = np.zeros((4, 3), np.float32)
    with pytest.raises(InvalidInput, match=r"class ids from 0 to 7.*Expected ids in \[0, 3\)"):
        check_labels(METRICS["accuracy"], np.array([0, 1, 2, 7]), out, key="labels")
    with pytest.raises(InvalidInput, match="expects integer class ids"):
        check_labels(METRICS["accuracy"], np.zeros(4), out, key="labels")
    with pytest.raises(
        InvalidInput, match=r"shape \[4, 2\] but the evaluated output has shape \[4, 3\]"
    ):
        check_labels(METRICS["mae"], np.zeros((4, 2)), out, key="labels")
    check_labels(METRICS["mae"], np.zeros((4, 3)), out, key="labels")


def test_split_is_disjoint_and_keeps_duplicates_together() -> None:
    x = np.repeat(np.arange(50, dtype=np.float32)[:, None], 2, axis=1)
    x = np.concatenate([x, x[:10]])  # rows 0..9 appear twice
    ev, cal = split_for_calibration(EvalSet(inputs={"x": x}), seed=0)
    assert ev.rows + cal.rows == 60
    assert set(map(tuple, ev.inputs["x"])).isdisjoint(map(tuple, cal.inputs["x"]))
    check_disjoint(ev, cal)
    with pytest.raises(InvalidInput, match="shares 1 example"):
        check_disjoint(ev, EvalSet(inputs={"x": ev.inputs["x"][:1]}, source="c.npz"))


def _stateful_eval(tmp_path: pathlib.Path, rows: int = 6) -> tuple[pathlib.Path, ModelArtifact]:
    art = ModelArtifact.load(save_stateful(tmp_path / "s.onnx")).with_batch_axes({"state": 1})
    path = tmp_path / "eval.npz"
    rng = np.random.default_rng(0)
    np.savez(
        path,
        x=rng.standard_normal((rows, 16)).astype(np.float32),
        state=rng.standard_normal((2, rows, 8)).astype(np.float32),
        sr=np.array(1),
    )
    return path, art


def test_a_scalar_input_and_a_batch_axis_1_in_an_eval_set(tmp_path: pathlib.Path) -> None:
    path, art = _stateful_eval(tmp_path)
    ev = load_eval_set(path, art.signature)
    assert ev.rows == 6 and ev.inputs["sr"].shape == ()
    assert ev.batch_axes == {"x": 0, "state": 1, "sr": None}
    part = ev.take(np.array([5, 0]))
    assert part.inputs["state"].shape == (2, 2, 8) and part.inputs["sr"].shape == ()
    np.testing.assert_array_equal(part.inputs["state"][:, 0], ev.inputs["state"][:, 5])
    held, calib = split_for_calibration(ev, seed=0)
    assert held.rows + calib.rows == 6 and held.rows and calib.rows
    check_disjoint(held, calib)
    mapped = load_eval_set(
        {"x": ev.inputs["x"], "state": ev.inputs["state"], "sr": 1}, art.signature
    )
    assert mapped.rows == 6
    uneven = {"x": ev.inputs["x"], "state": ev.inputs["state"][:, :5], "sr": 1}
    with pytest.raises(InvalidInput, match=r"different numbers of rows \(x: 6, state: 5\)"):
        load_eval_set(uneven, art.signature)
