"""SLO compliance over a window of a real request log: good and bad counted as the server's
burn-rate counters count them, requests outside the window or of other models left out."""

from __future__ import annotations

import pathlib
import time

import numpy as np
import pytest

from modelscale.config import SloSpec
from modelscale.errors import InvalidInput
from modelscale.observe import LogLocation, LogWriter, slo_compliance
from modelscale.serve import RequestRecord
from modelscale.serve.codec import DecodedRequest

X = {"x": np.ones((1, 2), dtype=np.float32)}


def _rec(model: str, status: int, latency_ms: float, t: float) -> RequestRecord:
    req = DecodedRequest(
        id=None, inputs=X, rows=1, outputs=(), binary_outputs=frozenset(), timeout_s=None, key=()
    )
    return RequestRecord(
        time=t,
        request_id=None,
        model=model,
        version="1",
        status=status,
        latency_s=latency_ms / 1000,
        request=req,
        outputs={},
    )


@pytest.fixture
def log(tmp_path: pathlib.Path) -> LogLocation:
    location = LogLocation.of(tmp_path / "logs")
    writer = LogWriter(location)
    now = time.time()
    records = (
        [_rec("m", 200, 10.0, now - 60) for _ in range(150)]
        + [_rec("m", 200, 250.0, now - 60) for _ in range(20)]  # slow
        + [_rec("m", 503, 10.0, now - 60) for _ in range(5)]  # errors, fast
        + [_rec("m", 404, 300.0, now - 60) for _ in range(25)]  # client errors: no latency SLI
        + [_rec("m", 500, 900.0, now - 10 * 86400) for _ in range(50)]  # before the window
        + [_rec("other", 500, 900.0, now - 60) for _ in range(50)]
    )
    writer.record(records)
    assert writer.flush() == len(records)
    return location


def test_objectives_are_measured_over_the_window(log: LogLocation) -> None:
    slo = SloSpec.model_validate(
        {
            "availability": 0.99,
            "latency": {"threshold_ms": 100, "objective": 0.85},
            "window_days": 7,
        }
    )
    got = slo_compliance(log, "m", slo, model_sha256="ab" * 32)
    by = {o["sli"]: o for o in got.objectives}
    assert (by["availability"]["events"], by["availability"]["bad"]) == (200, 5)
    assert by["availability"]["good_ratio"] == pytest.approx(0.975)
    assert by["availability"]["budget_spent"] == pytest.approx(5 / 2)
    assert not by["availability"]["met"]
    assert (by["latency"]["events"], by["latency"]["bad"]) == (175, 20)
    assert by["latency"]["met"] and by["latency"]["good_ratio"] == pytest.approx(155 / 175)
    assert not got.met and "NOT met" in got.summary
    assert got.links().model_version == "ab" * 32
    # a longer window takes in the older errors
    wide = slo_compliance(log, "m", slo, window_days=30)
    assert {o["sli"]: o for o in wide.objectives}["availability"]["bad"] == 55


def test_too_few_requests_and_no_objective(log: LogLocation) -> None:
    slo = SloSpec.model_validate({"availability": 0.9, "min_events": 1000, "window_days": 7})
    got = slo_compliance(log, "m", slo)
    assert got.objectives[0]["met"] and not got.objectives[0]["enough"]
    assert not got.met and "too few requests" in got.summary
    empty = slo_compliance(log, "nobody", SloSpec.model_validate({"availability": 0.9}))
    assert empty.objectives[0]["events"] == 0 and empty.objectives[0]["good_ratio"] is None
    with pytest.raises(InvalidInput, match="no availability or latency objective"):
        slo_compliance(log, "m", SloSpec())
