"""Signatures of exported models: dynamic dims however they are written, and batch axes."""

from __future__ import annotations

import pathlib

import pytest

from modelscale.errors import InvalidInput
from modelscale.model import ModelArtifact
from tests.exported_models import save_minus_one_batch, save_stateful


def test_negative_and_placeholder_dims_are_dynamic_and_unnamed(tmp_path: pathlib.Path) -> None:
    sig = ModelArtifact.load(save_minus_one_batch(tmp_path / "m.onnx")).signature
    x = sig.input("x")
    assert x.shape == (None, 3, None, None)
    assert x.shape_str() == "[?, 3, ?, ?]"
    assert sig.outputs[0].shape == (None, 4)
    assert sig.symbolic_dims() == ()  # '?' is no name: two '?' axes are two dims


def test_batch_axis_defaults_to_0_and_to_none_for_a_scalar(tmp_path: pathlib.Path) -> None:
    sig = ModelArtifact.load(save_stateful(tmp_path / "s.onnx")).signature
    assert sig.batch_axes == {"x": 0, "state": 0, "sr": None}
    assert sig.to_dict()["inputs"][2] == {
        "name": "sr",
        "type": "tensor(int64)",
        "dtype": "int64",
        "shape": [],
        "batch_axis": None,
    }


def test_with_batch_axes(tmp_path: pathlib.Path) -> None:
    art = ModelArtifact.load(save_stateful(tmp_path / "s.onnx"))
    moved = art.with_batch_axes({"state": 1})
    assert moved.signature.batch_axes == {"x": 0, "state": 1, "sr": None}
    assert moved.sha256 == art.sha256 and art.signature.batch_axes["state"] == 0
    assert art.with_batch_axes({"x": None}).signature.input("x").batch_axis is None
    assert art.with_batch_axes({}) is art


@pytest.mark.parametrize(
    ("axes", "message"),
    [
        ({"nope": 1}, r"Unknown input 'nope' in 'batch_axes'; the model's inputs are x, state, sr"),
        ({"state": 3}, r"'batch_axes' of state must be an axis in \[0, 2\] of \[2, batch, 8\]"),
        ({"state": -1}, r"must be an axis in \[0, 2\]"),
        ({"sr": 0}, r"input 'sr' axis 0, but it is a 0-d tensor \(a scalar\)"),
        ({"x": "1"}, r"'batch_axes' of x must be an axis number or None"),
    ],
)
def test_bad_batch_axes_name_the_field(tmp_path: pathlib.Path, axes: dict, message: str) -> None:
    sig = ModelArtifact.load(save_stateful(tmp_path / "s.onnx")).signature
    with pytest.raises(InvalidInput, match=message) as err:
        sig.with_batch_axes(axes)
    assert err.value.field == "batch_axes"
