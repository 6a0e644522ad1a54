"""Summaries: latency from the planned time, errors by status, lateness, achieved rate."""

from __future__ import annotations

import numpy as np
import pytest

from modelscale.loadgen.client import CONNECTION_ERROR, TIMEOUT, Outcome
from modelscale.loadgen.stats import LoadStats, summarize


def outcome(n: int = 100) -> Outcome:
    intended = np.arange(n) * 0.01  # 100 req/s for 1 s
    sent = intended + 0.0005
    done = intended + 0.010  # 10 ms each
    done[-1] = intended[-1] + 0.5  # one slow answer
    sent[10] = intended[10] + 0.2  # one sent 200 ms late: its latency counts from the plan
    done[10] = sent[10] + 0.010
    status = np.full(n, 200, dtype=np.int32)
    status[[3, 4]] = 503
    status[5] = CONNECTION_ERROR
    status[6] = TIMEOUT
    return Outcome(intended, sent, done, status, 0.0, 1.5)


def test_percentiles_errors_and_lateness() -> None:
    s = summarize(outcome(), planned_s=1.0)
    assert s.sent == 100 and s.ok == 96
    assert s.errors == {"503": 2, "connection": 1, "timeout": 1}
    assert s.error_rate == pytest.approx(0.04)
    assert s.p50_ms == pytest.approx(10.0, abs=1e-6)
    assert s.max_ms == pytest.approx(500.0)
    assert s.late == 1 and s.max_lag_ms == pytest.approx(200.0)
    assert s.offered_rps == pytest.approx(100.0)
    assert s.achieved_rps == pytest.approx(96 / (0.99 + 0.5))


def test_mask_selects_a_window() -> None:
    o = outcome()
    s = summarize(o, planned_s=0.5, mask=o.intended < 0.5)
    assert s.sent == 50 and s.offered_rps == pytest.approx(100.0)


def test_passes_needs_the_bound_and_few_errors() -> None:
    s = summarize(outcome(), planned_s=1.0)
    assert not s.passes(p99_ms=1000)  # 4% errors
    assert s.passes(p99_ms=1000, max_error_rate=0.05)
    assert not s.passes(p99_ms=5, max_error_rate=0.05)


def test_nothing_answered_is_nan_not_a_crash() -> None:
    o = outcome()
    o.status[:] = CONNECTION_ERROR
    s = summarize(o, planned_s=1.0)
    assert s.ok == 0 and np.isnan(s.p99_ms) and not s.passes(p99_ms=1e9)
    assert isinstance(s, LoadStats)
