"""The performance model: fit exactness, robustness, thread handling, profile points."""

from __future__ import annotations

import pytest

from modelscale.errors import InvalidInput
from modelscale.plan import ServicePoint, fit_service_model
from modelscale.plan.service import points_from_profile
from tests.plan.conftest import linear_points


def test_fit_is_exact_on_linear_service_times() -> None:
    m = fit_service_model(linear_points(fixed=1.5, per_item=3.0, parallel=0.6))
    assert m.max_rel_residual < 1e-6
    assert m.a_serial_ms == pytest.approx(1.5 * 0.4, rel=1e-6)
    assert m.a_parallel_ms == pytest.approx(1.5 * 0.6, rel=1e-6)
    assert m.b_serial_ms == pytest.approx(3.0 * 0.4, rel=1e-6)
    assert m.b_parallel_ms == pytest.approx(3.0 * 0.6, rel=1e-6)
    # Extrapolation follows the same law: 4 threads, batch 64.
    assert float(m.time_ms(64, 4)) == pytest.approx((1.5 + 64 * 3.0) * (0.4 + 0.6 / 4), rel=1e-6)


def test_fit_resists_a_disturbed_point() -> None:
    pts = linear_points(fixed=1.0, per_item=2.0, parallel=0.5)
    disturbed = [
        ServicePoint(p.batch, p.threads, p.mean_ms * (2.5 if (p.batch, p.threads) == (4, 2) else 1))
        for p in pts
    ]
    m = fit_service_model(disturbed)
    clean = fit_service_model(pts)
    for b in (1, 8, 16):
        for t in (1, 2):
            assert float(m.time_ms(b, t)) == pytest.approx(float(clean.time_ms(b, t)), rel=0.05)
    assert m.max_rel_residual > 0.5  # the disturbed point is reported, not hidden


def test_fit_handles_noisy_points() -> None:
    import numpy as np

    rng = np.random.default_rng(3)
    pts = [
        ServicePoint(p.batch, p.threads, p.mean_ms * float(rng.normal(1.0, 0.03)))
        for p in linear_points()
    ]
    m = fit_service_model(pts)
    assert m.max_rel_residual < 0.12
    assert float(m.time_ms(8, 1)) == pytest.approx(1.0 + 8 * 2.0, rel=0.06)


def test_one_thread_count_keeps_to_it() -> None:
    m = fit_service_model(linear_points(threads=(2,)))
    assert m.supports_threads(2)
    assert not m.supports_threads(4)
    assert m.max_rel_residual < 1e-6


def test_one_batch_size_is_refused() -> None:
    with pytest.raises(InvalidInput, match="two or more batch sizes"):
        fit_service_model([ServicePoint(1, 1, 2.0), ServicePoint(1, 2, 1.5)])


def test_extrapolation_and_core_factor() -> None:
    m = fit_service_model(linear_points())
    assert not m.extrapolated(batch=16, threads=2)
    assert m.extrapolated(batch=32, threads=2)
    assert m.extrapolated(batch=8, threads=4)
    fast = m.with_core_factor(2.0)
    assert fast.extrapolated(batch=1, threads=1)
    assert float(fast.time_ms(4, 1)) == pytest.approx(float(m.time_ms(4, 1)) / 2)
    with pytest.raises(InvalidInput, match="core_factor"):
        m.with_core_factor(0)


def test_points_from_profile_keeps_one_dims_setting() -> None:
    stored = [
        {
            "batch": 1,
            "threads": 1,
            "dims": {"seq": 32},
            "mean_ms": 2.0,
            "p50_ms": 2.0,
            "p99_ms": 2.2,
        },
        {
            "batch": 2,
            "threads": 1,
            "dims": {"seq": 32},
            "mean_ms": 3.0,
            "p50_ms": 3.0,
            "p99_ms": 3.1,
        },
        {"batch": 1, "threads": 1, "dims": {"seq": 128}, "mean_ms": 9.0},
    ]
    pts = points_from_profile(stored, dims={"seq": 32})
    assert [(p.batch, p.mean_ms) for p in pts] == [(1, 2.0), (2, 3.0)]
    assert points_from_profile(stored) == []
    assert pts[0].scv == pytest.approx(((2.2 - 2.0) / 2.326 / 2.0) ** 2)
