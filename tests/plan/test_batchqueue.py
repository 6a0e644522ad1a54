"""The batch-service queue: M/D/1 when B = 1, and agreement with the batcher simulation."""

from __future__ import annotations

import math

import numpy as np
import pytest

from modelscale.errors import InvalidInput
from modelscale.plan import BatchServiceQueue, MGcQueue, simulate_batcher


@pytest.mark.parametrize("rho", [0.3, 0.8, 0.95])
def test_batch_of_one_is_md1(rho: float) -> None:
    q = BatchServiceQueue(rate=rho, service=[1.0])
    md1 = MGcQueue(rate=rho, servers=1, mean=1.0, scv=0.0)
    assert q.quantile(0.99) == pytest.approx(md1.quantile(0.99), rel=0.01)
    assert q.mean_latency() == pytest.approx(1.0 + rho / (2 * (1 - rho)), rel=1e-6)
    assert q.utilisation == pytest.approx(rho, rel=1e-6)
    assert q.sf(0.0) == pytest.approx(1.0, abs=1e-9)


@pytest.mark.parametrize("rate", [0.05, 0.1, 0.12])
def test_agrees_with_the_simulator(rate: float) -> None:
    service = 1.7 + 7.0 * np.arange(1, 9)  # ms; rates per ms
    q = BatchServiceQueue(rate=rate, service=service)
    sim = simulate_batcher(rate=rate, service=service, requests=60_000, seed=4)
    assert q.quantile(0.99) == pytest.approx(sim.p99, rel=0.10)
    assert q.mean_latency() == pytest.approx(sim.mean, rel=0.05)
    assert q.mean_batch() == pytest.approx(sim.mean_batch, rel=0.05)


def test_batches_grow_with_load() -> None:
    service = 1.0 + 0.5 * np.arange(1, 17)
    sizes = [BatchServiceQueue(rate=r, service=service).mean_batch() for r in (0.2, 1.0, 1.6)]
    assert sizes[0] < sizes[1] < sizes[2]


def test_unstable_and_bad_input() -> None:
    q = BatchServiceQueue(rate=2.0, service=[1.0, 1.5])  # capacity 2 / 1.5 < 2
    assert not q.stable
    assert q.quantile(0.99) == math.inf
    assert q.sf(10.0) == 1.0
    with pytest.raises(InvalidInput, match="service"):
        BatchServiceQueue(rate=1.0, service=[1.0, -1.0])
    with pytest.raises(InvalidInput, match="rate"):
        BatchServiceQueue(rate=-1.0, service=[1.0])
