from __future__ import annotations

import json
import pathlib
import shutil

import numpy as np
import pytest

from modelscale.compress import CompressOptions, compress, graphfix
from modelscale.compress import candidates as cands
from modelscale.errors import InvalidInput
from modelscale.examples import ExampleBuild
from tests.compress.conftest import fast, run_plain
from tests.exported_models import save_conv_only, save_minus_one_batch, save_stateful


def _digits_eval(digits: ExampleBuild) -> tuple[dict[str, np.ndarray], np.ndarray]:
    data = np.load(digits.eval_path)
    return {"pixels": data["pixels"]}, data["labels"]


def test_digits_search_writes_a_chosen_model_within_tolerance(
    digits: ExampleBuild, tmp_path: pathlib.Path
) -> None:
    out = tmp_path / "out"
    result = compress(
        digits.model_path,
        digits.eval_path,
        options=CompressOptions(calibration=digits.calib_path, max_drop=0.01, out=out, **fast()),
    )
    names = [t.name for t in result.trials]
    assert names == ["original", *(s.name for s in cands.default_specs(reduce_range=False))]
    assert all(t.ok for t in result.trials), [t.error for t in result.trials if not t.ok]
    assert result.metric == "accuracy" and result.calibration_rows == 128
    assert set(result.pareto) <= set(names) and result.pareto
    assert "change" not in result.original.summary and "pass" not in result.original.summary
    for t in result.trials:
        assert set(t.latency) == {1, 8}
        assert t.ci_low <= t.change <= t.ci_high
    files = sorted(p.name for p in out.iterdir())
    assert files == sorted([f"digits.{result.chosen}.onnx", "compress_summary.json"])
    summary = json.loads((out / "compress_summary.json").read_text())
    assert summary["chosen"] == result.chosen and len(summary["trials"]) == len(names)
    # Independently of the evaluator: a plain session and numpy accuracy on the eval set.
    feeds, labels = _digits_eval(digits)
    base_acc = (run_plain(digits.model_path, feeds, "logits").argmax(1) == labels).mean()
    acc = (run_plain(result.chosen_path, feeds, "logits").argmax(1) == labels).mean()
    assert base_acc - acc <= 0.01 + 1e-12
    assert acc == pytest.approx(result.chosen_trial.metric)


def test_guard_never_chooses_outside_a_zero_tolerance(
    digits: ExampleBuild, tmp_path: pathlib.Path
) -> None:
    # Cosine to the fp32 logits: any INT8 or FP16 rounding is a drop above 0.
    out = tmp_path / "out"
    result = compress(
        digits.model_path,
        digits.eval_path,
        options=CompressOptions(
            calibration=digits.calib_path,
            metric="cosine",
            max_drop=0.0,
            out=out,
            max_fallback_steps=2,
            **fast(),
        ),
    )
    assert result.chosen_trial.passed
    assert any(not t.passed for t in result.trials if t.method in ("dynamic", "static"))
    feeds, _ = _digits_eval(digits)
    ref = run_plain(digits.model_path, feeds, "logits").astype(np.float64)
    got = run_plain(result.chosen_path, feeds, "logits").astype(np.float64)
    cos = (ref * got).sum(1) / (np.linalg.norm(ref, axis=1) * np.linalg.norm(got, axis=1))
    if result.chosen_is_original:
        assert np.array_equal(ref, got)
        assert "Kept the original" in result.reason
    else:
        assert 1 - cos.mean() <= 0.0 + 1e-12


def test_a_failing_candidate_is_reported_and_the_search_goes_on(
    digits: ExampleBuild, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = cands.build_candidate

    def broken_fp16(spec, **kwargs):
        if spec.method == "fp16":
            raise RuntimeError("no kernel for this op\nsecond line")
        return real(spec, **kwargs)

    monkeypatch.setattr(cands, "build_candidate", broken_fp16)
    result = compress(
        digits.model_path,
        digits.eval_path,
        options=CompressOptions(
            calibration=digits.calib_path, candidates=["fp16", "int8-dynamic"], **fast()
        ),
    )
    fp16 = result.trial("fp16")
    assert fp16.status == "failed" and fp16.error == "RuntimeError: no kernel for this op"
    assert not fp16.passed and "failed" in fp16.summary
    assert result.trial("int8-dynamic").ok
    assert result.chosen != "fp16"


def test_no_partial_model_in_out_when_writing_fails(
    digits: ExampleBuild, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("earlier work")

    def fail_midway(src, dst, length=0):
        dst.write(src.read(100))
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(shutil, "copyfileobj", fail_midway)
    with pytest.raises(InvalidInput, match="No space left on device"):
        compress(
            digits.model_path,
            digits.eval_path,
            options=CompressOptions(
                calibration=digits.calib_path, candidates=["int8-dynamic"], out=out, **fast()
            ),
        )
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]


def test_interrupt_while_writing_leaves_no_temporary_file(
    digits: ExampleBuild, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "out"

    def interrupt(src, dst, length=0):
        dst.write(src.read(100))
        raise KeyboardInterrupt

    monkeypatch.setattr(shutil, "copyfileobj", interrupt)
    with pytest.raises(KeyboardInterrupt):
        compress(
            digits.model_path,
            digits.eval_path,
            options=CompressOptions(
                calibration=digits.calib_path, candidates=["int8-dynamic"], out=out, **fast()
            ),
        )
    assert list(out.iterdir()) == []


def test_without_calibration_the_eval_rows_are_split_and_said_so(digits: ExampleBuild) -> None:
    result = compress(
        digits.model_path,
        digits.eval_path,
        options=CompressOptions(candidates=["int8-static-minmax"], **fast()),
    )
    assert result.eval_rows == 225 and result.calibration_rows == 128  # capped at the default
    assert any("split the 450 eval rows at random into 225" in n for n in result.notes)
    assert result.calibration_source.endswith("(calibration half)")


def test_relative_tolerance_and_a_callable_metric(digits: ExampleBuild) -> None:
    def error_rate(outputs: np.ndarray, labels: np.ndarray) -> np.ndarray:
        return (outputs.argmax(1) != labels).astype(float)

    result = compress(
        digits.model_path,
        digits.eval_path,
        options=CompressOptions(
            metric=error_rate,
            higher_is_better=False,
            max_rel_drop=0.5,
            candidates=["int8-dynamic"],
            **fast(),
        ),
    )
    assert result.metric == "error_rate"
    assert result.original.metric == pytest.approx(0.02, abs=0.01)
    assert result.tolerance["bound"] == pytest.approx(0.5 * result.original.metric)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"max_drop": 1.5},
            r"'max_drop' parameter of compress must be a number in \[0, 1\]. Got 1.5",
        ),
        (
            {"max_rel_drop": -0.1},
            r"'max_rel_drop' parameter of compress must be a number in \[0, 1\]",
        ),
        ({"max_drop": 0.1, "max_rel_drop": 0.1}, "either 'max_drop' or 'max_rel_drop'"),
        ({"batch": 0}, "'batch' parameter of compress must be an integer >= 1"),
        ({"output": "nope"}, "Unknown output 'nope'; the model's outputs are logits"),
        ({"candidates": ["int9"]}, "'candidates' parameter of compress must be a list of names"),
        (
            {"metric": "mae"},
            r"'labels' has shape \[225\] but the evaluated output has shape \[225, 10\]",
        ),
    ],
)
def test_bad_options_fail_before_any_work(digits: ExampleBuild, kwargs, message) -> None:
    with pytest.raises(InvalidInput, match=message):
        compress(
            digits.model_path, digits.eval_path, options=CompressOptions(**{**fast(), **kwargs})
        )


def _images(tmp_path: pathlib.Path, rows: int = 40) -> pathlib.Path:
    path = tmp_path / "images.npz"
    x = np.random.default_rng(0).standard_normal((rows, 3, 10, 12)).astype(np.float32)
    np.savez(path, x=x)
    return path


def test_a_minus_one_batch_model_compresses(tmp_path: pathlib.Path) -> None:
    """It crashed with "need at least one array to concatenate"; static calibration with a short
    last batch failed with "setting an array element with a sequence"."""
    result = compress(
        save_minus_one_batch(tmp_path / "m.onnx"),
        _images(tmp_path, rows=42),  # 21 calibration rows: batches of 16 and 5 before
        options=CompressOptions(
            candidates=["int8-dynamic", "int8-static-minmax", "int8-static-pct"], **fast()
        ),
    )
    assert all(t.ok for t in result.trials), [(t.name, t.error) for t in result.trials]


@pytest.mark.parametrize("opset", [11, 12])
def test_old_opsets_are_upgraded_for_the_candidates_that_need_it(
    opset: int, tmp_path: pathlib.Path
) -> None:
    result = compress(
        save_minus_one_batch(tmp_path / "old.onnx", opset=opset),
        _images(tmp_path),
        options=CompressOptions(
            candidates=["int8-dynamic", "int8-static-minmax", "bf16-weights"], **fast()
        ),
    )
    assert all(t.ok for t in result.trials), [(t.name, t.error) for t in result.trials]
    assert (
        f"Upgraded the model from opset {opset} to 13 (onnx's version converter) for "
        "int8-static-minmax, bf16-weights, which need it." in result.notes
    )


def test_a_failed_opset_upgrade_skips_the_candidate_with_a_reason(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def cannot(source: pathlib.Path, dest: pathlib.Path, version: int) -> None:
        raise RuntimeError("no adapter for Upsample\nmore")

    monkeypatch.setattr(graphfix, "upgrade_opset", cannot)
    result = compress(
        save_minus_one_batch(tmp_path / "old.onnx", opset=11),
        _images(tmp_path),
        options=CompressOptions(candidates=["int8-dynamic", "bf16-weights"], **fast()),
    )
    bf16 = result.trial("bf16-weights")
    assert bf16.status == "skipped" and not bf16.passed
    assert bf16.error == (
        "needs opset 13, the model has opset 11, and onnx's version converter could not upgrade "
        "it (RuntimeError: no adapter for Upsample)"
    )
    assert result.trial("int8-dynamic").ok
    assert bf16.summary.startswith("bf16-weights: skipped (needs opset 13")


def test_dynamic_int8_with_nothing_to_quantize_is_a_no_op_never_registered(
    tmp_path: pathlib.Path,
) -> None:
    path = tmp_path / "conv.npz"
    np.savez(path, x=np.random.default_rng(0).standard_normal((24, 3, 8, 8)).astype(np.float32))
    result = compress(
        save_conv_only(tmp_path / "c.onnx"),
        path,
        options=CompressOptions(candidates=["int8-dynamic"], max_drop=1.0, **fast()),
    )
    t = result.trial("int8-dynamic")
    assert t.status == "skipped" and t.error == "no-op: nothing to quantize"
    assert t.sha256 is None and result.chosen == "original"
    assert "int8-dynamic: skipped (no-op: nothing to quantize)" in t.summary
    links = result.links()
    assert links.derived == ()
    assert [c.status for c in links.children] == ["ok", "skipped"]


def test_a_state_with_batch_axis_1_and_a_scalar_input(tmp_path: pathlib.Path) -> None:
    rows = 40
    rng = np.random.default_rng(0)
    path = tmp_path / "stream.npz"
    np.savez(
        path,
        x=rng.standard_normal((rows, 16)).astype(np.float32),
        state=rng.standard_normal((2, rows, 8)).astype(np.float32),
        sr=np.array(1),
    )
    result = compress(
        save_stateful(tmp_path / "s.onnx"),
        path,
        options=CompressOptions(
            batch_axes={"state": 1},
            output="state_out",
            candidates=["int8-dynamic", "int8-static-pct"],
            **fast(),
        ),
    )
    assert all(t.ok for t in result.trials), [(t.name, t.error) for t in result.trials]
    assert result.params["batch_axes"] == {"x": 0, "state": 1, "sr": None}
    with pytest.raises(InvalidInput, match="'batch_axes' of state must be an axis in"):
        compress(
            save_stateful(tmp_path / "s.onnx"),
            path,
            options=CompressOptions(batch_axes={"state": 7}, **fast()),
        )
