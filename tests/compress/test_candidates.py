from __future__ import annotations

import pathlib

import numpy as np
import onnx
import pytest

from modelscale.compress.candidates import (
    _to_bf16_bits,
    build_candidate,
    default_specs,
    prepare_base,
    quantized_nodes,
)
from modelscale.examples import ExampleBuild
from tests.compress.conftest import run_plain


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
