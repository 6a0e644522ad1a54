from __future__ import annotations

import json
import pathlib
import shutil

import numpy as np
import pytest

from modelscale.compress import CompressOptions, compress
from modelscale.compress import candidates as cands
from modelscale.errors import InvalidInput
from modelscale.examples import ExampleBuild
from tests.compress.conftest import fast, run_plain


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
