"""Batch formation: full or max_wait after the first request, rows counted, shapes kept apart."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import pytest

from modelscale.serve.backend import (
    BackendHealth,
    BackendState,
    Batch,
    BatchLost,
    BatchOk,
    BatchOutcome,
)
from modelscale.serve.batcher import Batcher
from modelscale.serve.codec import DecodedRequest
from modelscale.serve.protocol import ApiError


def req(rows: int, width: int = 4, timeout_s: float | None = None) -> DecodedRequest:
    x = np.zeros((rows, width), dtype=np.float32)
    return DecodedRequest(
        id=None,
        inputs={"x": x},
        rows=rows,
        outputs=("y",),
        binary_outputs=frozenset(),
        timeout_s=timeout_s,
        key=((width,),),
    )


class FakePool:
    """A backend whose replicas echo x as y, when told to (or at once with auto=True).

    The batcher's timing is what these tests check; the real backends run real models in
    tests/serve/test_pool.py, test_front_corpus.py and the end-to-end tests.
    """

    def __init__(self, replicas: int = 1, *, auto: bool = True) -> None:
        self.replicas = replicas
        self.free = asyncio.Semaphore(replicas)
        self.auto = auto
        self.batches: list[list[int]] = []
        self.launched_at: list[float] = []
        self.held: list[tuple[Batch, asyncio.Future[BatchOutcome]]] = []

    async def acquire(self) -> Any:
        await self.free.acquire()
        return object()

    def release(self, slot: Any) -> None:
        self.free.release()

    def health(self) -> BackendHealth:
        return BackendHealth(BackendState.READY, self.replicas, self.replicas)

    def run(self, slot: Any, batch: Batch) -> asyncio.Future[BatchOutcome]:
        self.batches.append(list(batch.row_counts))
        self.launched_at.append(asyncio.get_running_loop().time())
        fut: asyncio.Future[BatchOutcome] = asyncio.get_running_loop().create_future()
        if self.auto:
            self.finish(batch, fut)
        else:
            self.held.append((batch, fut))
        return fut

    def finish(self, batch: Batch, fut: asyncio.Future[BatchOutcome]) -> None:
        fut.set_result(BatchOk([batch.feeds["x"]], 0.001))
        self.free.release()

    def lose(self) -> None:
        _, fut = self.held.pop(0)
        fut.set_result(BatchLost("replica 0 of t died"))
        self.free.release()

    def finish_held(self) -> None:
        while self.held:
            self.finish(*self.held.pop(0))


def run(coro: Any) -> Any:
    return asyncio.run(coro)


async def _started(pool: FakePool, **kw: Any) -> Batcher:
    b = Batcher(
        pool,  # type: ignore[arg-type]
        max_batch=kw.pop("max_batch", 4),
        max_wait_s=kw.pop("max_wait_s", 0.05),
        max_queue=kw.pop("max_queue", 100),
        label="t",
    )
    b.start()
    return b


def test_a_full_batch_closes_at_once() -> None:
    async def main() -> None:
        pool = FakePool()
        b = await _started(
            pool, max_batch=4, max_wait_s=10.0
        )  # a long wait: only fullness closes it
        t0 = asyncio.get_running_loop().time()
        futs = [b.submit(req(1)) for _ in range(4)]
        await asyncio.wait_for(asyncio.gather(*futs), 2.0)
        assert pool.batches == [[1, 1, 1, 1]]
        assert pool.launched_at[0] - t0 < 5.0
        await b.close()

    run(main())


def test_a_partial_batch_closes_max_wait_after_its_first_request() -> None:
    async def main() -> None:
        pool = FakePool()
        b = await _started(pool, max_batch=8, max_wait_s=0.05)
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        f1 = b.submit(req(1))
        await asyncio.sleep(0.02)
        f2 = b.submit(req(2))  # joins the batch opened by the first request
        await asyncio.gather(f1, f2)
        assert pool.batches == [[1, 2]]
        assert pool.launched_at[0] >= t0 + 0.05 - 1e-3  # not before max_wait after the first
        await b.close()

    run(main())


def test_rows_count_and_max_batch_is_never_exceeded() -> None:
    async def main() -> None:
        pool = FakePool()
        b = await _started(pool, max_batch=8, max_wait_s=0.01)
        futs = [b.submit(req(n)) for n in (3, 3, 3, 8, 1)]
        await asyncio.gather(*futs)
        assert pool.batches == [[3, 3], [3], [8], [1]]
        assert all(sum(batch) <= 8 for batch in pool.batches)
        await b.close()

    run(main())


def test_requests_with_other_shapes_are_not_stacked() -> None:
    async def main() -> None:
        pool = FakePool()
        b = await _started(pool, max_batch=8, max_wait_s=0.01)
        futs = [b.submit(req(1, width=4)), b.submit(req(1, width=5)), b.submit(req(1, width=4))]
        replies = await asyncio.gather(*futs)
        assert pool.batches == [[1, 1], [1]]  # the two width-4 requests together, the width-5 alone
        assert [r.outputs["y"].shape[1] for r in replies] == [4, 5, 4]
        await b.close()

    run(main())


def test_a_batch_keeps_filling_while_every_replica_is_busy() -> None:
    async def main() -> None:
        pool = FakePool(auto=False)
        b = await _started(pool, max_batch=4, max_wait_s=0.001)
        first = b.submit(req(1))
        await asyncio.sleep(0.02)
        assert pool.batches == [[1]]  # the replica is now busy
        later = [b.submit(req(1)) for _ in range(6)]
        await asyncio.sleep(0.02)  # far past max_wait: nothing can start, the batch keeps filling
        pool.finish_held()
        await asyncio.sleep(0.02)
        pool.finish_held()
        await asyncio.sleep(0.02)
        pool.finish_held()
        await asyncio.gather(first, *later)
        assert pool.batches == [[1], [1, 1, 1, 1], [1, 1]]
        await b.close()

    run(main())


def test_a_full_queue_is_refused_at_once_with_retry_after() -> None:
    async def main() -> None:
        pool = FakePool(auto=False)
        b = await _started(pool, max_batch=1, max_wait_s=0.0, max_queue=2)
        b.submit(req(1))
        await asyncio.sleep(0.01)  # dispatched: the one replica is busy from now on
        b.submit(req(1))
        b.submit(req(1))
        with pytest.raises(ApiError) as info:
            b.submit(req(1))
        assert info.value.status == 503 and info.value.headers["retry-after"] == "1"
        assert b.queued == 2
        pool.finish_held()
        await b.close()

    run(main())


def test_a_request_that_times_out_in_the_queue_is_504_and_never_runs() -> None:
    async def main() -> None:
        pool = FakePool(auto=False)
        b = await _started(pool, max_batch=1, max_wait_s=0.0)
        busy = b.submit(req(1))
        await asyncio.sleep(0.01)
        late = b.submit(req(1, timeout_s=0.02))
        with pytest.raises(ApiError) as info:
            await asyncio.wait_for(late, 2.0)  # answered at its deadline, the replica still busy
        assert info.value.status == 504 and info.value.field == "parameters.timeout"
        pool.finish_held()
        await busy
        await asyncio.sleep(0.02)
        assert pool.batches == [[1]]  # the expired request never ran
        assert b.queued == 0 and b.queued_rows == 0
        await b.close()

    run(main())


def test_close_answers_what_is_queued_with_503() -> None:
    async def main() -> None:
        pool = FakePool(auto=False)
        b = await _started(pool, max_batch=1, max_wait_s=0.0)
        b.submit(req(1))
        await asyncio.sleep(0.01)
        queued = b.submit(req(1))
        await b.close()
        with pytest.raises(ApiError) as info:
            await queued
        assert info.value.status == 503
        with pytest.raises(ApiError):
            b.submit(req(1))

    run(main())


def test_replies_carry_where_the_time_went_and_observe_each_batch() -> None:
    async def main() -> None:
        pool = FakePool(auto=False)
        seen: list[tuple[int, float, float]] = []
        b = Batcher(
            pool,  # type: ignore[arg-type]
            max_batch=4,
            max_wait_s=0.02,
            max_queue=10,
            label="t",
            on_batch=lambda *a: seen.append(a),
        )
        b.start()
        futs = [b.submit(req(1)), b.submit(req(2))]
        await asyncio.sleep(0.05)
        pool.finish_held()
        a, c = await asyncio.gather(*futs)
        assert a.batch_rows == c.batch_rows == 3 and a.infer_s == 0.001
        assert a.batch_wait_s >= 0.02 - 1e-3 and a.queue_s >= a.batch_wait_s
        assert (
            c.roundtrip_s > 0 and a.outputs["y"].shape == (1, 4) and c.outputs["y"].shape == (2, 4)
        )
        assert len(seen) == 1 and seen[0][0] == 3
        await b.close()

    run(main())


def test_a_lost_batch_is_503_with_retry_after_for_each_request() -> None:
    async def main() -> None:
        pool = FakePool(auto=False)
        b = await _started(pool, max_batch=4, max_wait_s=0.0)
        fut = b.submit(req(1))
        await asyncio.sleep(0.01)
        pool.lose()
        with pytest.raises(ApiError) as info:
            await fut
        assert info.value.status == 503 and info.value.headers["retry-after"] == "1"
        assert "died" in info.value.message and "retry" in info.value.message
        await b.close()

    run(main())


def test_a_failing_batch_loop_answers_its_queue_and_starts_again() -> None:
    class Flaky(FakePool):
        def __init__(self) -> None:
            super().__init__()
            self.broken = True

        async def acquire(self) -> Any:
            if self.broken:
                self.broken = False
                raise RuntimeError("a bug in a backend")
            return await super().acquire()

    async def main() -> None:
        pool = Flaky()
        b = await _started(pool, max_batch=1, max_wait_s=0.0)
        with pytest.raises(ApiError) as info:
            await asyncio.wait_for(b.submit(req(1)), 2.0)  # never left waiting
        assert info.value.status == 500
        reply = await asyncio.wait_for(b.submit(req(1)), 2.0)  # the loop runs again
        assert reply.outputs["y"].shape == (1, 4)
        await b.close()

    run(main())
