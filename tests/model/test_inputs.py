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
from tests.exported_models import save_minus_one_batch, save_stateful
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


def test_minus_one_batch_follows_the_batch_and_shape(tmp_path: pathlib.Path) -> None:
    """A batch axis written as -1 is dynamic: --shape x=1,3,48,192 is accepted, batch sets axis 0."""
    sig = ModelArtifact.load(save_minus_one_batch(tmp_path / "m.onnx")).signature
    assert default_batches(sig) == (1, 2, 4, 8)
    choice = InputChoice(shapes={"x": (1, 3, 48, 192)})
    check_choice(sig, choice)
    assert resolve_shapes(sig, batch=3, choice=choice) == {"x": (3, 3, 48, 192)}


def test_a_dim_called_question_mark_is_refused_with_advice(tmp_path: pathlib.Path) -> None:
    """Two unnamed dims are two dims: '?=48' must not set height and width at once."""
    sig = ModelArtifact.load(save_minus_one_batch(tmp_path / "m.onnx")).signature
    with pytest.raises(
        InvalidInput,
        match=r"'dims' cannot set '\?': unnamed dims are separate dims, each set per input and "
        r"axis\. Give whole input shapes in 'shapes' .*unnamed dims are at x axes 2, 3\.",
    ) as err:
        check_choice(sig, InputChoice(dims={"?": 48}))
    assert err.value.field == "dims"


def test_state_with_batch_on_axis_1(tmp_path: pathlib.Path) -> None:
    art = ModelArtifact.load(save_stateful(tmp_path / "s.onnx"))
    with pytest.raises(
        InvalidInput,
        match=r"Input 'state' has a fixed batch size of 2 \(axis 0\); expected 'batch' 2\. Got 3 "
        r"instead\. If its batch axis is axis 1 \(batch\), say so with 'batch_axes' state=1\.",
    ):
        resolve_shapes(art.signature, batch=3, choice=InputChoice())
    sig = art.with_batch_axes({"state": 1}).signature
    assert default_batches(sig) == (1, 2, 4, 8)  # the 2 of state is not a fixed batch
    feeds = make_inputs(sig, batch=3, choice=InputChoice(int_ranges={"sr": (0, 1)}))
    assert feeds["x"].shape == (3, 16) and feeds["state"].shape == (2, 3, 8)
    assert feeds["sr"].shape == () and feeds["sr"] in (0, 1)  # a scalar is never batched


def test_a_batch_name_on_another_axis_takes_the_batch(tmp_path: pathlib.Path) -> None:
    """With state's batch axis left at 0 but fixed, its 'batch' axis still takes the batch."""
    sig = ModelArtifact.load(save_stateful(tmp_path / "s.onnx")).signature
    assert resolve_shapes(sig, batch=2, choice=InputChoice())["state"] == (2, 2, 8)


def test_npz_with_a_scalar_and_a_batch_axis_1(tmp_path: pathlib.Path) -> None:
    sig = (
        ModelArtifact.load(save_stateful(tmp_path / "s.onnx"))
        .with_batch_axes({"state": 1})
        .signature
    )
    path = tmp_path / "in.npz"
    np.savez(
        path,
        x=np.ones((3, 16), np.float32),
        state=np.arange(2 * 3 * 8, dtype=np.float32).reshape(2, 3, 8),
        sr=np.array(1),
    )
    data = load_npz(path, sig)
    assert data["sr"].shape == () and data["sr"].dtype == np.int64
    feeds = make_inputs(sig, batch=4, choice=InputChoice(data=data))
    assert feeds["state"].shape == (2, 4, 8) and feeds["sr"].shape == ()
    np.testing.assert_array_equal(feeds["state"][:, 3], data["state"][:, 0])  # rows repeat
    assert resolve_shapes(sig, batch=4, choice=InputChoice(data=data))["state"] == (2, 4, 8)
    wrong = tmp_path / "wrong.npz"
    np.savez(wrong, x=np.ones((3, 16), np.float32), state=data["state"], sr=np.array([1]))
    with pytest.raises(InvalidInput, match=r"array 'sr' has 1 dims.*expects 0 \(a 0-d array"):
        load_npz(wrong, sig)
    empty = tmp_path / "empty.npz"
    np.savez(empty, x=np.ones((0, 16), np.float32), state=np.ones((2, 0, 8), np.float32), sr=1)
    with pytest.raises(InvalidInput, match=r"array 'x' has no rows"):
        load_npz(empty, sig)
