"""The batch loop with a latency objective: the policy's batches, waits and predictions, over a
backend whose replicas are told when to finish (the real replicas run in test_slo_batching.py)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from modelscale.batching import ServiceCurve, SloPolicy
from modelscale.serve.batcher import Batcher

from .test_batcher import FakePool, req, run

MS = 1e-3


def _policy(a_ms: float = 3.0, b_ms: float = 8.0, objective_ms: float = 100.0) -> SloPolicy:
    curve = ServiceCurve(prior=(a_ms * MS, b_ms * MS), span=64)
    curve.tail = 1.0
    return SloPolicy(objective_ms * MS, 64, curve=curve)


async def _started(pool: FakePool, policy: SloPolicy, **kw: Any) -> Batcher:
    b = Batcher(
        pool,  # type: ignore[arg-type]
        max_batch=64,
        max_wait_s=0.0,
        max_queue=1000,
        label="t",
        policy=policy,
        **kw,
    )
    b.start()
    return b


def test_at_low_load_a_request_is_sent_at_once_alone() -> None:
    async def main() -> None:
        pool = FakePool(replicas=2)
        waits: list[float] = []
        b = await _started(pool, _policy(), on_dispatch=lambda rows, w: waits.append(w))
        loop = asyncio.get_running_loop()
        for _ in range(3):
            t0 = loop.time()
            await asyncio.wait_for(b.submit(req(1)), 2.0)
            assert pool.launched_at[-1] - t0 < 0.005  # no batch timer to wait out
            await asyncio.sleep(0.05)
        assert pool.batches == [[1], [1], [1]]
        assert waits == [pytest.approx(0.0, abs=0.005)] * 3
        await b.close()

    run(main())


def test_a_queue_is_served_in_batches_no_larger_than_the_objective_allows() -> None:
    async def main() -> None:
        pool = FakePool(replicas=1, auto=False)
        policy = _policy()  # cap: 3 + 8n <= 50 ms -> 5 rows
        b = await _started(pool, policy)
        first = b.submit(req(1))
        await asyncio.sleep(0.01)
        assert pool.batches == [[1]]  # the replica is busy from now on
        queued = [b.submit(req(1)) for _ in range(12)]
        await asyncio.sleep(0.01)
        assert len(pool.batches) == 1  # nothing runs while every replica is busy
        while len(pool.batches) < 4:
            pool.finish_held()
            await asyncio.sleep(0.01)
        pool.finish_held()
        await asyncio.wait_for(asyncio.gather(first, *queued), 2.0)
        assert [len(x) for x in pool.batches] == [1, 5, 5, 2]
        assert policy.current_limit() == 5
        await b.close()

    run(main())


def test_the_prediction_grows_with_the_queue_and_the_batches_in_flight() -> None:
    async def main() -> None:
        pool = FakePool(replicas=1, auto=False)
        b = await _started(pool, _policy())
        assert b.predict_s(1) == pytest.approx(11 * MS, rel=0.05)  # a free replica
        futs = [b.submit(req(1))]
        await asyncio.sleep(0.01)
        busy = b.predict_s(1)  # behind the batch of 1 in flight (11 ms, just begun)
        assert 5 * MS < busy <= 22 * MS
        futs += [b.submit(req(1)) for _ in range(10)]
        assert b.predict_s(1) > busy + 2 * 35 * MS  # two batches of 5 ahead
        pool.auto = True
        pool.finish_held()
        await asyncio.wait_for(asyncio.gather(*futs), 2.0)
        await b.close()

    run(main())


def test_without_a_policy_there_is_no_prediction() -> None:
    async def main() -> None:
        b = Batcher(FakePool(), max_batch=4, max_wait_s=0.0, max_queue=10)  # type: ignore[arg-type]
        assert b.predict_s(1) == 0.0

    run(main())


def test_observers_that_fail_do_not_leave_requests_unanswered() -> None:
    def boom(*_: Any) -> None:
        raise RuntimeError("observer bug")

    async def main() -> None:
        pool = FakePool(replicas=2)
        b = await _started(pool, _policy(), on_batch=boom, on_dispatch=boom, on_prediction=boom)
        replies = await asyncio.wait_for(asyncio.gather(*(b.submit(req(1)) for _ in range(6))), 2.0)
        assert len(replies) == 6
        await b.close()

    run(main())


def test_the_policy_learns_from_every_batch_the_replicas_run() -> None:
    async def main() -> None:
        pool = FakePool(replicas=2)
        policy = SloPolicy(0.1, 64)
        assert not policy.service.known
        b = await _started(
            pool,
            policy,
            on_batch=lambda rows, infer, wall, overlap: policy.service.observe(rows, wall),
        )
        await asyncio.wait_for(asyncio.gather(*(b.submit(req(1)) for _ in range(5))), 2.0)
        assert policy.service.known and policy.service.batches >= 1
        await b.close()

    run(main())
