"""The startup heap is frozen: later full collections do not walk it."""

from __future__ import annotations

import gc

from modelscale.serve.heap import freeze_startup_heap


def test_freeze_moves_startup_objects_out_of_the_collector_and_collects_cycles_first() -> None:
    class Node:
        pass

    gc.collect()
    cycle = Node()
    cycle.self = cycle  # type: ignore[attr-defined]
    alive = [Node() for _ in range(1000)]
    dead_id = id(cycle)
    del cycle
    walked = len(gc.get_objects())
    try:
        frozen = freeze_startup_heap()
        # Frozen objects still die by reference counting (another thread of the test process may
        # free some between the two reads), so the count can only fall.
        assert 0 < gc.get_freeze_count() <= frozen
        # The collector's generations no longer hold what was alive at the freeze.
        assert len(gc.get_objects()) < walked - len(alive)
        assert all(id(o) != dead_id for o in gc.get_objects())  # the cycle was collected
        assert all(isinstance(n, Node) for n in alive)  # the frozen objects are all still there
        fresh = [Node() for _ in range(10)]
        # Objects made after the freeze are the collector's as always; the frozen ones are not.
        assert sum(1 for o in gc.get_objects() if isinstance(o, Node)) == len(fresh)
    finally:
        gc.unfreeze()
    assert gc.get_freeze_count() == 0
