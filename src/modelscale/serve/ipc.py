"""Messages between the front and its replicas: pickle protocol 5 with out-of-band array buffers.

A frame is ``<u32 pickle length><u32 buffer count><u64 length per buffer>`` then the pickle, then
each buffer's raw bytes. numpy arrays travel as their raw memory (no copy into the pickle stream),
over a Unix socketpair: blocking calls in the replica, asyncio streams in the front.
Both ends are processes of the same server, so unpickling their messages is trusted.
"""

from __future__ import annotations

import asyncio
import pickle
import socket
import struct
from typing import Any

__all__ = ["Channel", "pack", "read_message"]

_HEAD = struct.Struct("<II")
_MAX_BUFFERS = 1 << 16
_JOIN_BYTES = 1 << 20
"""Messages up to this size go out as one piece: one write, so the reader wakes up once, which
costs far more than copying them (batches of a few requests are a few KiB)."""


def pack(obj: Any) -> list[bytes | memoryview]:
    """The frames of one message, ready for ``sendall``/``writelines``."""
    buffers: list[pickle.PickleBuffer] = []
    payload = pickle.dumps(obj, protocol=5, buffer_callback=buffers.append)
    raws = [b.raw() for b in buffers]
    head = _HEAD.pack(len(payload), len(raws)) + struct.pack(
        f"<{len(raws)}Q", *(r.nbytes for r in raws)
    )
    if len(payload) + sum(r.nbytes for r in raws) <= _JOIN_BYTES:
        return [b"".join([head, payload, *raws])]
    return [head, payload, *raws]


def _unpack_lengths(head: bytes) -> tuple[int, int]:
    plen, nbuf = _HEAD.unpack(head)
    if nbuf > _MAX_BUFFERS:
        raise ConnectionError(f"corrupt frame: {nbuf} buffers")
    return plen, nbuf


async def read_message(reader: asyncio.StreamReader) -> Any:
    """Read one message (raises ``asyncio.IncompleteReadError`` at end of stream)."""
    plen, nbuf = _unpack_lengths(await reader.readexactly(_HEAD.size))
    sizes = struct.unpack(f"<{nbuf}Q", await reader.readexactly(8 * nbuf)) if nbuf else ()
    payload = await reader.readexactly(plen)
    buffers = [await reader.readexactly(n) for n in sizes]
    return pickle.loads(payload, buffers=buffers)


class Channel:
    """The replica's blocking end of the socketpair."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    def send(self, obj: Any) -> None:
        """Send one message."""
        for part in pack(obj):
            self.sock.sendall(part)

    def _exactly(self, n: int) -> bytearray:
        buf = bytearray(n)
        view = memoryview(buf)
        got = 0
        while got < n:
            k = self.sock.recv_into(view[got:])
            if k == 0:
                raise EOFError("the front closed the channel")
            got += k
        return buf

    def recv(self) -> Any:
        """Receive one message (``EOFError`` when the front is gone)."""
        plen, nbuf = _unpack_lengths(bytes(self._exactly(_HEAD.size)))
        sizes = struct.unpack(f"<{nbuf}Q", self._exactly(8 * nbuf)) if nbuf else ()
        payload = self._exactly(plen)
        buffers = [self._exactly(n) for n in sizes]
        return pickle.loads(payload, buffers=buffers)
