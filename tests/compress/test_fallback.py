from __future__ import annotations

import pathlib

import numpy as np

from modelscale.compress import CompressOptions, compress
from modelscale.compress.candidates import build_candidate, default_specs, prepare_base
from modelscale.compress.fallback import rank_nodes
from modelscale.runtime import EngineOptions
from tests.compress.conftest import fast, outlier_inputs, run_plain


def test_the_outlier_matmul_ranks_first(outlier_mlp: pathlib.Path, tmp_path: pathlib.Path) -> None:
    base = tmp_path / "base.onnx"
    prepare_base(outlier_mlp, base)
    quant = tmp_path / "q.onnx"
    spec = default_specs(reduce_range=False)[1]  # dynamic, per-tensor
    build_candidate(spec, base=base, dest=quant, calibration=None, cache_dir=tmp_path)
    x = {"x": outlier_inputs(16, seed=0)}
    ranked = rank_nodes(base, quant, ["first", "second"], x, options=EngineOptions())
    assert [r.node for r in ranked] == ["first", "second"]
    assert ranked[0].added_error > 10 * ranked[1].added_error


def test_fallback_reverts_the_worst_node_and_stops_when_within_tolerance(
    outlier_mlp: pathlib.Path, outlier_eval: pathlib.Path
) -> None:
    result = compress(
        outlier_mlp,
        outlier_eval,
        options=CompressOptions(
            metric="cosine", max_drop=0.02, candidates=["int8-dynamic"], **fast()
        ),
    )
    names = [t.name for t in result.trials]
    assert names[:2] == ["original", "int8-dynamic"]
    assert not result.trial("int8-dynamic").passed
    step = result.trial("int8-dynamic+fp32x1")
    assert step.excluded == ("first",)
    assert step.params["fallback_step"] == 1
    assert step.passed
    # It stopped at the first step within tolerance: no second step.
    assert "int8-dynamic+fp32x2" not in names
    # Independently: the step's file keeps 'first' float, and its cosine to the original holds.
    assert result.trial("int8-dynamic").drop > 0.02


def test_fallback_step_cap_and_no_speed_check_past_the_cap(
    outlier_mlp: pathlib.Path, outlier_eval: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    # A tolerance nothing quantized can meet: the loop runs at most the cap (here 1 step).
    result = compress(
        outlier_mlp,
        outlier_eval,
        options=CompressOptions(
            metric="cosine",
            max_drop=0.0,
            candidates=["int8-dynamic"],
            max_fallback_steps=1,
            keep_candidates=tmp_path / "kept",
            **fast(),
        ),
    )
    fallback = [t for t in result.trials if "+fp32x" in t.name]
    assert [t.name for t in fallback] == ["int8-dynamic+fp32x1"]
    assert not fallback[0].passed
    assert result.chosen == "original"
    kept = tmp_path / "kept" / "int8-dynamic+fp32x1.onnx"
    x = dict(np.load(outlier_eval))
    # The kept file is the one that was judged: 'first' in float brings it close to the original.
    cos = _cos(run_plain(kept, x, "y"), run_plain(outlier_mlp, x, "y"))
    assert cos.mean() > 0.95


def _cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
