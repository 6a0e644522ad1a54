from __future__ import annotations

import pathlib

import numpy as np
import pytest

from modelscale.errors import InvalidInput
from modelscale.model import (
    InputChoice,
    ModelArtifact,
    check_choice,
    default_batches,
    load_npz,
    make_inputs,
)
from modelscale.model.inputs import DEFAULT_INT_HIGH, resolve_shapes
from tests.onnx_models import save_conv, save_seq_model


def test_batch_follows_the_sweep(mlp_path: pathlib.Path) -> None:
    sig = ModelArtifact.load(mlp_path).signature
    feeds = make_inputs(sig, batch=5, choice=InputChoice())
    assert feeds["x"].shape == (5, 16)
    assert feeds["x"].dtype == np.float32


def test_symbolic_dim_needs_a_value_and_error_names_input_and_axis(seq_path: pathlib.Path) -> None:
    sig = ModelArtifact.load(seq_path).signature
    with pytest.raises(
        InvalidInput,
        match=r"Input 'ids' axis 1 is symbolic dim 'seq' with no value; give 'dims' \(seq=N\)",
    ):
        resolve_shapes(sig, batch=2, choice=InputChoice())
    shapes = resolve_shapes(sig, batch=2, choice=InputChoice(dims={"seq": 7}))
    assert shapes == {"ids": (2, 7), "mask": (2, 7)}


def test_unnamed_dim_needs_shape(tmp_path: pathlib.Path) -> None:
    sig = ModelArtifact.load(save_seq_model(tmp_path / "m.onnx", seq=None)).signature
    with pytest.raises(
        InvalidInput, match=r"Input 'ids' axis 1 is an unnamed dynamic dim.*'shapes' \(ids="
    ):
        resolve_shapes(sig, batch=1, choice=InputChoice())
    shapes = resolve_shapes(
        sig, batch=3, choice=InputChoice(shapes={"ids": (1, 9), "mask": (1, 9)})
    )
    assert shapes == {"ids": (3, 9), "mask": (3, 9)}  # the batch sweep still sets axis 0


def test_shape_must_match_rank_and_fixed_dims(mlp_path: pathlib.Path) -> None:
    sig = ModelArtifact.load(mlp_path).signature
    with pytest.raises(InvalidInput, match="has 3 dims but the model expects 2"):
        resolve_shapes(sig, batch=1, choice=InputChoice(shapes={"x": (1, 16, 1)}))
    with pytest.raises(InvalidInput, match="axis 1 is 15 but the model fixes it at 16"):
        resolve_shapes(sig, batch=1, choice=InputChoice(shapes={"x": (1, 15)}))


def test_unknown_names_are_rejected_with_the_known_ones(seq_path: pathlib.Path) -> None:
    sig = ModelArtifact.load(seq_path).signature
    with pytest.raises(
        InvalidInput, match=r"Unknown dim 'sq' in 'dims': the model's symbolic dims are seq"
    ):
        check_choice(sig, InputChoice(dims={"sq": 4}))
    with pytest.raises(InvalidInput, match="names the batch axis"):
        check_choice(sig, InputChoice(dims={"batch": 4}))
    with pytest.raises(
        InvalidInput, match=r"Unknown input 'x' in 'shapes'; the model's inputs are ids, mask"
    ):
        check_choice(sig, InputChoice(shapes={"x": (1, 2)}))
    with pytest.raises(InvalidInput, match="low end must not exceed"):
        check_choice(sig, InputChoice(int_ranges={"ids": (5, 1)}))


def test_int_range_must_target_an_integer_input(mlp_path: pathlib.Path) -> None:
    sig = ModelArtifact.load(mlp_path).signature
    with pytest.raises(InvalidInput, match="not an integer tensor"):
        check_choice(sig, InputChoice(int_ranges={"x": (0, 1)}))


def test_integer_inputs_ranges_and_heuristics(seq_path: pathlib.Path) -> None:
    sig = ModelArtifact.load(seq_path).signature
    feeds = make_inputs(sig, batch=4, choice=InputChoice(dims={"seq": 64}))
    assert feeds["ids"].dtype == np.int64
    assert feeds["ids"].min() >= 0 and feeds["ids"].max() <= DEFAULT_INT_HIGH
    assert (feeds["mask"] == 1).all()  # attention masks default to "attend everywhere"
    feeds = make_inputs(
        sig, batch=4, choice=InputChoice(dims={"seq": 64}, int_ranges={"ids": (10, 12)})
    )
    assert set(np.unique(feeds["ids"])) <= {10, 11, 12}
    assert set(np.unique(feeds["ids"])) == {10, 11, 12}  # inclusive at both ends


def test_fixed_batch_model(tmp_path: pathlib.Path) -> None:
    sig = ModelArtifact.load(save_conv(tmp_path / "c.onnx", batch=1)).signature
    assert default_batches(sig) == (1,)
    with pytest.raises(
        InvalidInput, match=r"fixed batch size of 1 \(axis 0\); expected 'batch' 1. Got 4"
    ):
        resolve_shapes(sig, batch=4, choice=InputChoice())


def test_npz_inputs(seq_path: pathlib.Path, tmp_path: pathlib.Path) -> None:
    sig = ModelArtifact.load(seq_path).signature
    good = tmp_path / "good.npz"
    np.savez(
        good,
        ids=np.arange(12, dtype=np.int32).reshape(3, 4),
        mask=np.ones((3, 4), np.int64),
        labels=np.zeros(3),
    )
    data = load_npz(good, sig)
    assert data["ids"].dtype == np.int64  # cast to what the model wants
    feeds = make_inputs(sig, batch=5, choice=InputChoice(data=data))
    assert feeds["ids"].shape == (5, 4)  # rows repeat to fill the batch
    np.testing.assert_array_equal(feeds["ids"][3], data["ids"][0])

    missing = tmp_path / "missing.npz"
    np.savez(missing, ids=np.zeros((2, 4), np.int64))
    with pytest.raises(InvalidInput, match=r"has no array for input 'mask' \(it has: ids\)"):
        load_npz(missing, sig)
    wrong_rank = tmp_path / "rank.npz"
    np.savez(wrong_rank, ids=np.zeros(4, np.int64), mask=np.zeros((2, 4), np.int64))
    with pytest.raises(InvalidInput, match="array 'ids' has 1 dims"):
        load_npz(wrong_rank, sig)
    floats = tmp_path / "floats.npz"
    np.savez(floats, ids=np.zeros((2, 4)), mask=np.zeros((2, 4), np.int64))
    with pytest.raises(InvalidInput, match="array 'ids' is float64; the model expects int64"):
        load_npz(floats, sig)
    not_npz = tmp_path / "x.npz"
    not_npz.write_text("nope")
    with pytest.raises(InvalidInput, match=r"is not a readable \.npz file"):
        load_npz(not_npz, sig)
    with pytest.raises(InvalidInput, match="does not exist"):
        load_npz(tmp_path / "absent.npz", sig)
