from __future__ import annotations

import pathlib
import time

import numpy as np
import pytest

from modelscale.errors import RuntimeFailure
from modelscale.model import InputChoice, ModelArtifact
from modelscale.profile.sweep import MeasureOptions, SweepJob, measure_latency, run_sweep
from modelscale.runtime import EngineOptions

FAST = MeasureOptions(warmup_runs=2, warmup_s=0.0, min_runs=10, min_time_s=0.05, max_time_s=0.5)


def test_stops_when_the_median_is_pinned_down() -> None:
    lat, capped, spent = measure_latency(lambda: time.sleep(0.002), FAST)
    assert not capped
    assert spent < FAST.max_time_s
    assert np.median(lat) == pytest.approx(0.002, rel=0.5)


def test_time_cap_is_honoured_and_reported() -> None:
    rng = np.random.default_rng(0)
    opts = MeasureOptions(
        warmup_runs=1, warmup_s=0.0, min_runs=5, min_time_s=0.0, max_time_s=0.15, ci_target=1e-6
    )
    lat, capped, spent = measure_latency(lambda: time.sleep(rng.uniform(0, 0.004)), opts)
    assert capped
    assert 0.15 <= spent < 0.3
    assert len(lat) >= 5


def test_isolated_sweep_reports_memory(mlp_path: pathlib.Path) -> None:
    art = ModelArtifact.load(mlp_path)
    jobs = [SweepJob(batch=b, threads=1) for b in (8, 1)]
    seen = []
    points = run_sweep(
        art,
        jobs,
        choice=InputChoice(),
        engine_options=EngineOptions(),
        measure=FAST,
        on_point=seen.append,
    )
    assert [p.batch for p in points] == [
        1,
        8,
    ]  # ascending, so the RSS high-water mark means something
    assert seen == points
    for p in points:
        assert p.peak_rss_bytes is not None and p.baseline_rss_bytes is not None
        assert p.peak_rss_bytes >= p.baseline_rss_bytes > 0
        assert p.input_shapes == {"x": [p.batch, 16]}
        assert p.min_ms <= p.p50_ms <= p.p90_ms <= p.p99_ms <= p.max_ms
        assert p.ci_low_ms <= p.p50_ms <= p.ci_high_ms


def test_worker_failure_is_reported_not_hung(seq_path: pathlib.Path) -> None:
    art = ModelArtifact.load(seq_path)
    # no value for 'seq': the worker cannot build inputs and must say so
    with pytest.raises(RuntimeFailure, match="Profiling failed: InvalidInput: Input 'ids' axis 1"):
        run_sweep(
            art,
            [SweepJob(batch=1, threads=1)],
            choice=InputChoice(),
            engine_options=EngineOptions(),
            measure=FAST,
        )
