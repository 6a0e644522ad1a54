"""Keep the garbage collector's full passes off the request path.

CPython's cyclic collector now and then walks every tracked object (a generation-2 pass). The front
holds a few hundred thousand objects from startup (imported modules, pydantic schemas, the models'
contracts, the HTTP server), so one such pass stopped its event loop for 53-63 ms on the benchmark
machine, every request in flight waiting with it: a latency objective of 50 ms is lost whole for
each of them. A replica's pass (its own imports and the ONNX Runtime binding) took about 20 ms, in
the middle of a batch.

What startup built lives as long as the process. ``gc.freeze()`` moves it to a permanent
generation the collector no longer walks, so later passes see only what the requests left behind
(the use CPython documents for it). Cycles made before the freeze are collected first; objects freed
by reference counting are freed as always, frozen or not.
"""

from __future__ import annotations

import gc

__all__ = ["freeze_startup_heap"]


def freeze_startup_heap() -> int:
    """Collect what startup left as garbage, then freeze the rest; the objects now frozen."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()
