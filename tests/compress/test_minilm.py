"""MiniLM end to end: heavy, so one test on a slice of the real sentences."""

from __future__ import annotations

import numpy as np
import pytest

from modelscale.compress import CompressOptions, compress
from modelscale.examples import build_example
from tests.compress.conftest import fast, run_plain


@pytest.mark.torch
@pytest.mark.slow
def test_minilm_dynamic_int8_is_4x_smaller_and_faithful(tmp_path, monkeypatch) -> None:
    example = build_example("minilm")
    # ORT's symbolic shape inference fails on this export and dumps files into the current folder.
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    data = dict(np.load(example.sample_path))
    subset = {k: v[:96] for k, v in data.items()}
    result = compress(
        example.model_path,
        subset,
        options=CompressOptions(
            output="sentence_embedding", candidates=["int8-dynamic-pc"], out=tmp_path, **fast()
        ),
    )
    assert result.metric == "cosine" and result.metric_task == "fidelity"
    trial = result.trial("int8-dynamic-pc")
    assert trial.ok and trial.passed
    assert result.original.size_bytes / trial.size_bytes >= 3.5
    assert trial.metric >= 0.99
    ref = run_plain(example.model_path, subset, "sentence_embedding")
    got = run_plain(result.chosen_path, subset, "sentence_embedding")
    cos = (ref * got).sum(1) / (np.linalg.norm(ref, axis=1) * np.linalg.norm(got, axis=1))
    assert 1 - cos.mean() <= 0.01
    assert any("symbolic shape inference failed" in n for n in result.notes)
    assert list(cwd.iterdir()) == []
