"""Plan validation's own measurements: the speed check, the CPU meter, the /metrics deltas."""

from __future__ import annotations

import os
import pathlib

import psutil
import pytest

from modelscale.model import ModelArtifact
from modelscale.plan import ServerConfig, measure_profile
from modelscale.workflow import CpuMeter, batch_deltas, inputs_file, is_local_url, speed_ratio


def test_speed_ratio_compares_the_model_now_with_its_profile(mlp_path: pathlib.Path) -> None:
    art = ModelArtifact.load(mlp_path)
    svc = measure_profile(art, batches=(1, 4), threads=(1,), max_time_s=0.3).service
    cfg = ServerConfig(1, 1, 4, 1.0)
    now = speed_ratio(art, svc, cfg, max_time_s=0.3)
    assert 0.2 < now < 5.0  # the same machine minutes apart (a tiny model: noisy)
    # Against a profile of a machine twice as fast, this one runs about twice as slow.
    twice = speed_ratio(art, svc.with_core_factor(2.0), cfg, max_time_s=0.3)
    assert 1.0 < twice / now < 4.0


def test_batch_deltas_give_the_handover_per_batch() -> None:
    before = {"batches": 10.0, "rows": 40.0, "infer_s": 0.010, "roundtrip_s": 0.020}
    after = {"batches": 20.0, "rows": 120.0, "infer_s": 0.030, "roundtrip_s": 0.050}
    d = batch_deltas(before, after)
    assert d["mean_batch"] == pytest.approx(8.0)
    assert d["infer_ms"] == pytest.approx(2.0)
    assert d["handover_ms"] == pytest.approx(1.0)  # (30 ms roundtrip - 20 ms inference) / 10
    assert batch_deltas(None, after) == {} and batch_deltas(after, after) == {}


def test_local_urls_and_the_cpu_meter(mlp_path: pathlib.Path) -> None:
    assert is_local_url("http://127.0.0.1:8000") and is_local_url("http://localhost:1")
    assert not is_local_url("http://192.0.2.1:8000")
    meter = CpuMeter(os.getpid())  # this process stands in for a server with no replicas
    me = psutil.Process()
    spent = sum(me.cpu_times()[:2])
    # CPU times tick in 10 ms steps: work until the count has surely moved.
    while sum(me.cpu_times()[:2]) - spent < 0.03:
        sum(i * i for i in range(20_000))
    cpu = meter.per_request_ms(10)
    assert set(cpu) == {"client", "front", "replicas"} and cpu["client"] > 0
    with inputs_file(ModelArtifact.load(mlp_path), {}, rows=5) as npz:
        assert pathlib.Path(npz).is_file()
    assert not pathlib.Path(npz).exists()
