"""The HTTP connection: uvicorn's httptools protocol with limits a hostile client cannot get around.

uvicorn bounds neither the size of a request's head (request line and headers) nor the time a
client may take to send it, and httptools gathers an oversized header by concatenating the pieces
it receives, which costs time quadratic in its size on the event loop every request shares: one
100 MB header held concurrent inferences for seconds. This protocol counts the bytes of each head
before handing them to the parser and answers 431 past ``max_head_bytes``, and it times out
clients that are too slow:

    idle_timeout_s     a new connection that sends nothing (keep-alive connections: uvicorn's own)
    head_timeout_s     from a request's first byte to the end of its headers
    body_timeout_s     the longest pause between two pieces of a body (while the server reads it)

A timed-out request is answered 408 when no response has started, then the connection closes. The
limits are the server's, not the app's: under a Ray Serve ingress, Ray's HTTP proxy applies its own.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

__all__ = ["ConnectionLimits", "limited_protocol"]

_END = b"\r\n\r\n"


@dataclass(frozen=True)
class ConnectionLimits:
    """What one HTTP connection may send, and how slowly."""

    max_head_bytes: int = 64 * 1024
    idle_timeout_s: float = 30.0
    head_timeout_s: float = 10.0
    body_timeout_s: float = 30.0


def _response(status: int, reason: str, message: str, field: str) -> bytes:
    body = orjson.dumps({"error": message, "field": field})
    return (
        f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    ).encode() + body


def limited_protocol(
    limits: ConnectionLimits, on_reject: Callable[[str], None] | None = None
) -> type[HttpToolsProtocol]:
    """uvicorn's httptools protocol class with ``limits``; ``on_reject(reason)`` counts refusals.

    Reasons: ``head_too_large`` (431), ``head_timeout`` and ``body_timeout`` (408), ``idle``.
    """
    too_large = _response(
        431,
        "Request Header Fields Too Large",
        f"the request line and headers exceed {limits.max_head_bytes} bytes (server.max_header_kb)",
        "headers",
    )
    head_late = _response(
        408,
        "Request Timeout",
        f"the request headers did not arrive within {limits.head_timeout_s:g} s "
        "(server.header_timeout_s)",
        "headers",
    )
    body_late = _response(
        408,
        "Request Timeout",
        f"the request body stalled for {limits.body_timeout_s:g} s (server.body_timeout_s)",
        "body",
    )

    def count(reason: str) -> None:
        if on_reject is not None:
            on_reject(reason)

    class LimitedProtocol(HttpToolsProtocol):
        _in_head = True
        _head_bytes = 0
        _timer: asyncio.TimerHandle | None = None

        def _arm(self, delay: float, callback: Callable[[], None]) -> None:
            self._disarm()
            self._timer = self.loop.call_later(delay, callback)

        def _disarm(self) -> None:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None

        def _refuse(self, response: bytes | None, reason: str) -> None:
            self._disarm()
            count(reason)
            if self.transport.is_closing():
                return
            cycle = self.cycle
            if response is not None and (cycle is None or not cycle.response_started):
                self.transport.write(response)
            if cycle is not None and not cycle.response_complete:
                # The app (if it runs) learns of the disconnect; nothing more is written.
                cycle.disconnected = True
                cycle.message_event.set()
            self.transport.close()

        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            self._arm(limits.idle_timeout_s, self._idle)

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def data_received(self, data: bytes) -> None:
            if self._in_head:
                if self._head_bytes == 0:
                    self._arm(limits.head_timeout_s, self._head_late)
                room = limits.max_head_bytes - self._head_bytes
                # Past the limit the chunk may still end the head (and carry body bytes after it).
                if len(data) > room and data.find(_END, 0, max(room, 0) + len(_END)) < 0:
                    self._refuse(too_large, "head_too_large")
                    return
                self._head_bytes += len(data)
            super().data_received(data)

        def on_headers_complete(self) -> None:
            self._in_head = False
            self._head_bytes = 0
            self._arm(limits.body_timeout_s, self._body_late)
            super().on_headers_complete()

        def on_body(self, body: bytes) -> None:
            self._arm(limits.body_timeout_s, self._body_late)
            super().on_body(body)

        def on_message_complete(self) -> None:
            self._disarm()
            self._in_head = True
            self._head_bytes = 0
            super().on_message_complete()

        def _idle(self) -> None:
            self._timer = None
            if self._in_head and self._head_bytes == 0 and self.cycle is None:
                self._refuse(None, "idle")

        def _head_late(self) -> None:
            self._timer = None
            if self._in_head:
                self._refuse(head_late, "head_timeout")

        def _body_late(self) -> None:
            self._timer = None
            if self._in_head or self.transport.is_closing():
                return
            if self.flow.read_paused:
                # The server stopped reading (the app has not taken the body yet): not the client.
                self._arm(limits.body_timeout_s, self._body_late)
                return
            self._refuse(body_late, "body_timeout")

    LimitedProtocol.__name__ = LimitedProtocol.__qualname__ = "LimitedProtocol"
    return LimitedProtocol
