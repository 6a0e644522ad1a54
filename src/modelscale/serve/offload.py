"""Large request bodies: a memory budget for bodies in flight, and decoding away from the event loop.

Parsing JSON builds a Python object per number: a 60 MB body takes about a second of CPU and
several times its size in memory. On the event loop that second stops every other request, health
checks included; a thread would not help, since the parser holds the GIL throughout. So bodies
over ``OFFLOAD_BYTES`` are decoded in a separate process (started at the first such body), which
returns the checked arrays; the front only copies bytes. Small bodies, the common case, are decoded
inline, where a process hop would cost more than the parse.

The budget bounds the bytes of bodies being read or waiting for, or in, decoding: a request that
would exceed it is answered 503 with Retry-After before its body is read, so a burst of large
bodies cannot take the front's memory with it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import multiprocessing
from typing import Any

from modelscale.serve.codec import DecodedRequest, decode_request
from modelscale.serve.contract import ModelContract
from modelscale.serve.protocol import ApiError

__all__ = ["OFFLOAD_BYTES", "BodyBudget", "BodyHold", "Decoder"]

OFFLOAD_BYTES = 1 << 20
"""Bodies larger than this are decoded in the decoding process."""


class BodyBudget:
    """Bytes of request bodies the front holds at once, at most."""

    def __init__(self, limit: int, *, setting: str = "server.body_memory_mb") -> None:
        self.limit = limit
        self.setting = setting
        self.used = 0

    def take(self, size: int) -> None:
        """Reserve ``size`` bytes (503 with Retry-After when the budget cannot hold them)."""
        if self.used and self.used + size > self.limit:
            raise ApiError(
                503,
                f"the server is decoding {self.used} bytes of other requests' bodies and takes "
                f"at most {self.limit} at once ({self.setting}); retry shortly.",
                field="body",
                headers={"retry-after": "1"},
            )
        self.used += size

    def give(self, size: int) -> None:
        """Return ``size`` reserved bytes."""
        self.used = max(0, self.used - size)

    def hold(self) -> BodyHold:
        """What one request holds of the budget, given back when its ``with`` block ends."""
        return BodyHold(self)


class BodyHold:
    """The bytes of a ``BodyBudget`` one request holds."""

    def __init__(self, budget: BodyBudget) -> None:
        self.budget = budget
        self.bytes = 0

    def cover(self, size: int) -> None:
        """Hold ``size`` bytes in all (taking only what is not held yet; 503 as ``take``)."""
        if size > self.bytes:
            self.budget.take(size - self.bytes)
            self.bytes = size

    def __enter__(self) -> BodyHold:
        return self

    def __exit__(self, *exc: object) -> None:
        self.budget.give(self.bytes)
        self.bytes = 0


def _decode(body: bytes, header_length: str | None, contract: ModelContract) -> Any:
    # Runs in the decoding process. ApiError is returned as values: exceptions with keyword
    # arguments do not survive pickling.
    try:
        return decode_request(body, header_length, contract)
    except ApiError as exc:
        return (exc.status, exc.message, exc.field, dict(exc.headers))


class Decoder:
    """Decodes large bodies in one process of its own, one at a time."""

    def __init__(self) -> None:
        self._pool: concurrent.futures.ProcessPoolExecutor | None = None

    async def decode(
        self, body: bytes, header_length: str | None, contract: ModelContract
    ) -> DecodedRequest:
        """``decode_request`` in the decoding process (ApiError as it would raise)."""
        if self._pool is None:
            # spawn, not fork: the front has threads, and a fork copies none of them safely.
            self._pool = concurrent.futures.ProcessPoolExecutor(
                max_workers=1, mp_context=multiprocessing.get_context("spawn")
            )
        loop = asyncio.get_running_loop()
        try:
            out = await loop.run_in_executor(self._pool, _decode, body, header_length, contract)
        except concurrent.futures.process.BrokenProcessPool:
            self._pool = None
            raise ApiError(
                503,
                "the process decoding large bodies died; retry shortly.",
                field="body",
                headers={"retry-after": "1"},
            ) from None
        if isinstance(out, tuple):
            status, message, field, headers = out
            raise ApiError(status, message, field=field, headers=headers)
        result: DecodedRequest = out
        return result

    def close(self) -> None:
        """Stop the decoding process (if it was started)."""
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
