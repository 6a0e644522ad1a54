from __future__ import annotations

import pathlib

import numpy as np
import onnx
import pytest

from modelscale.compress.candidates import (
    NOTHING_TO_QUANTIZE,
    _Reader,
    _to_bf16_bits,
    build_candidate,
    default_specs,
    prepare_base,
    quantized_nodes,
)
from modelscale.compress.graphfix import MIN_OPSET, onnx_opset, upgrade_opset
from modelscale.errors import RuntimeFailure
from modelscale.examples import ExampleBuild
from tests.compress.conftest import run_plain
from tests.exported_models import (
    save_conv_only,
    save_data_dependent,
    save_minus_one_batch,
    save_subgraph_weights,
)


def test_bf16_rounding_known_answers() -> None:
    values = np.array([1.0, -2.5, 1.0 + 2**-8, 1.0 + 3 * 2**-9, np.nan], np.float32)
    bits = _to_bf16_bits(values)
    # 1.0 + 2^-8 is halfway between two bf16 values and rounds to the even one (1.0);
    # 1.0 + 3 * 2^-9 rounds up to 1.0 + 2^-7.
    assert list(bits[:4]) == [0x3F80, 0xC020, 0x3F80, 0x3F81]
    assert bits[4] & 0x7F80 == 0x7F80 and bits[4] & 0x7F


@pytest.mark.parametrize("spec", default_specs(reduce_range=False)[1:], ids=lambda s: s.name)
def test_every_candidate_builds_and_runs_on_digits(
    spec, digits: ExampleBuild, tmp_path: pathlib.Path
) -> None:
    base = tmp_path / "base.onnx"
    prepare_base(digits.model_path, base)
    calib = {"pixels": np.load(digits.calib_path)["pixels"][:32]}
    dest = tmp_path / f"{spec.name}.onnx"
    build_candidate(spec, base=base, dest=dest, calibration=calib, cache_dir=tmp_path)
    feeds = {"pixels": np.load(digits.eval_path)["pixels"][:64]}
    ref = run_plain(digits.model_path, feeds, "logits")
    got = run_plain(dest, feeds, "logits")
    assert got.shape == ref.shape
    assert (got.argmax(1) == ref.argmax(1)).mean() > 0.9
    assert dest.stat().st_size < digits.model_path.stat().st_size
    changed = quantized_nodes(onnx.load(str(base)), onnx.load(str(dest)))
    if spec.method == "dynamic":
        assert set(changed) == {"node_linear", "node_linear_1"}  # Conv stays float in dynamic mode
    elif spec.method == "static":
        assert {"node_conv2d", "node_conv2d_1", "node_linear", "node_linear_1"} <= set(changed)


def test_excluded_nodes_stay_float(outlier_mlp: pathlib.Path, tmp_path: pathlib.Path) -> None:
    base = tmp_path / "base.onnx"
    prepare_base(outlier_mlp, base)
    spec = default_specs(reduce_range=False)[1]
    dest = tmp_path / "q.onnx"
    build_candidate(
        spec, base=base, dest=dest, calibration=None, cache_dir=tmp_path, exclude=["first"]
    )
    assert quantized_nodes(onnx.load(str(base)), onnx.load(str(dest))) == ["second"]


def test_calibration_batches_are_all_full_and_follow_batch_axes() -> None:
    """Histogram calibration stacks batches: a short last batch broke it."""
    inputs = {
        "x": np.arange(20, dtype=np.float32).reshape(10, 2),
        "state": np.zeros((2, 10, 3), np.float32),
        "sr": np.array(1),
    }
    batches = list(_Reader(inputs, 4, {"x": 0, "state": 1, "sr": None}))
    assert [b["x"].shape for b in batches] == [(4, 2)] * 3
    assert [b["state"].shape for b in batches] == [(2, 4, 3)] * 3
    assert all(b["sr"].shape == () for b in batches)
    assert batches[-1]["x"][:, 0].tolist() == [16, 18, 0, 2]  # topped up from the start


def test_dynamic_int8_of_a_conv_only_model_is_a_no_op(tmp_path: pathlib.Path) -> None:
    base = tmp_path / "base.onnx"
    prepare_base(save_conv_only(tmp_path / "c.onnx"), base)
    spec = default_specs(reduce_range=False)[1]
    dest = tmp_path / "q.onnx"
    got = build_candidate(spec, base=base, dest=dest, calibration=None, cache_dir=tmp_path)
    assert got == NOTHING_TO_QUANTIZE == "no-op: nothing to quantize"


@pytest.mark.parametrize("opset", [11, 12])
def test_opset_11_and_12_models_are_upgraded_for_static_int8_and_bf16(
    opset: int, tmp_path: pathlib.Path
) -> None:
    source = save_minus_one_batch(tmp_path / "old.onnx", opset=opset)
    base = tmp_path / "base.onnx"
    prepare_base(source, base)
    assert onnx_opset(base) == opset
    upgraded = tmp_path / "base13.onnx"
    upgrade_opset(base, upgraded, MIN_OPSET["static"])
    assert onnx_opset(upgraded) == 13
    x = np.random.default_rng(0).standard_normal((20, 3, 6, 6)).astype(np.float32)
    for spec in default_specs(reduce_range=False):
        if spec.method not in MIN_OPSET:
            continue
        dest = tmp_path / f"{spec.name}.onnx"
        assert (
            build_candidate(
                spec, base=upgraded, dest=dest, calibration={"x": x[:16]}, cache_dir=tmp_path
            )
            is None
        )
        got = run_plain(dest, {"x": x}, "y")
        assert got.shape == (20, 4)


def test_fp16_of_a_model_whose_if_branches_share_weight_names(tmp_path: pathlib.Path) -> None:
    """ORT's FP16 converter keys weights by name across subgraphs and failed (AssertionError)."""
    source = save_subgraph_weights(tmp_path / "sub.onnx")
    base = tmp_path / "base.onnx"
    prepare_base(source, base)
    spec = next(s for s in default_specs(reduce_range=False) if s.method == "fp16")
    dest = tmp_path / "fp16.onnx"
    assert build_candidate(spec, base=base, dest=dest, calibration=None, cache_dir=tmp_path) is None
    x = {"x": np.random.default_rng(0).standard_normal((3, 4)).astype(np.float32)}
    np.testing.assert_allclose(
        run_plain(dest, x, "y"), run_plain(source, x, "y"), rtol=2e-2, atol=2e-2
    )


@pytest.mark.parametrize("fixed_batch", [None, 8])
def test_percentile_calibration_of_data_dependent_shapes(
    fixed_batch: int | None, tmp_path: pathlib.Path
) -> None:
    """Percentile calibration pooled activations whose row count differs per batch and failed
    with numpy's "setting an array element with a sequence"."""
    base = tmp_path / "base.onnx"
    prepare_base(save_data_dependent(tmp_path / "dd.onnx"), base)
    spec = next(s for s in default_specs(reduce_range=False) if s.name == "int8-static-pct")
    x = np.random.default_rng(0).standard_normal((32, 4)).astype(np.float32)
    build = dict(base=base, dest=tmp_path / "q.onnx", calibration={"x": x}, cache_dir=tmp_path)
    if fixed_batch is None:
        assert build_candidate(spec, **build) is None  # one batch of every row
        return
    with pytest.raises(RuntimeFailure, match=r"^static calibration failed: the model's activations "
                       r"change shape from one calibration batch of 8 rows to the next"):  # fmt: skip
        build_candidate(spec, **build, fixed_batch=fixed_batch)
