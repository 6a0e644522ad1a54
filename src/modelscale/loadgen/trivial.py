"""A trivial HTTP endpoint that answers every request at once: the load generator's calibration target.

It speaks just enough of the V2 protocol for ``modelscale load`` to run against it (GET answers a
model metadata document for any model name, POST answers a fixed inference reply), so measuring the
load generator alone is ``modelscale load http://127.0.0.1:PORT --model trivial ...``. An optional
``delay_s`` holds every POST reply, and ``stall_after``/``stall_s`` freeze the whole server once, for
testing that the load generator counts such stalls in its latencies.

Run it with ``python -m modelscale.loadgen.trivial --port 8001`` or ``TrivialServer`` (a subprocess).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http.client
import socket
import subprocess
import sys
import time
from types import TracebackType
from typing import cast

import httptools

__all__ = ["METADATA", "TrivialServer", "main", "serve_trivial"]

METADATA = (
    b'{"name":"trivial","versions":["1"],"platform":"trivial","inputs":[{"name":"x",'
    b'"datatype":"FP32","shape":[-1,1]}],"outputs":[{"name":"y","datatype":"FP32","shape":[-1,1]}],'
    b'"parameters":{"version":"1"}}'
)
_REPLY = b'{"model_name":"trivial","model_version":"1","outputs":[{"name":"y","datatype":"FP32","shape":[1,1],"data":[0.0]}]}'


def _response(body: bytes) -> bytes:
    head = (
        f"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


_GET, _POST = _response(METADATA), _response(_REPLY)


class _Proto(asyncio.Protocol):
    def __init__(self, server: _State) -> None:
        self.state = server
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport but have its methods.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            assert self.transport is not None  # data only arrives on a connection
            self.transport.close()

    def on_message_complete(self) -> None:
        assert self.transport is not None  # a message only completes on a connection
        is_get = self.parser.get_method() == b"GET"
        reply = _GET if is_get else _POST
        self.state.count += 1
        st = self.state
        if st.stall_after and st.count == st.stall_after:
            time.sleep(st.stall_s)  # freezes the event loop: every connection waits
        if st.delay_s > 0 and not is_get:
            asyncio.get_running_loop().call_later(st.delay_s, self.transport.write, reply)
        else:
            self.transport.write(reply)


class _State:
    def __init__(self, delay_s: float, stall_after: int, stall_s: float) -> None:
        self.count = 0
        self.delay_s, self.stall_after, self.stall_s = delay_s, stall_after, stall_s


async def serve_trivial(
    sock: socket.socket, *, delay_s: float = 0.0, stall_after: int = 0, stall_s: float = 0.0
) -> None:
    """Serve on ``sock`` until cancelled."""
    state = _State(delay_s, stall_after, stall_s)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: _Proto(state), sock=sock, backlog=1024)
    async with server:
        await server.serve_forever()


def main() -> None:
    """``python -m modelscale.loadgen.trivial [--host H] [--port P | --fd FD] [--delay-ms D]``."""
    parser = argparse.ArgumentParser(prog="python -m modelscale.loadgen.trivial")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    parser.add_argument("--fd", type=int, default=None)
    parser.add_argument("--delay-ms", type=float, default=0.0)
    parser.add_argument("--stall-after", type=int, default=0)
    parser.add_argument("--stall-ms", type=float, default=0.0)
    args = parser.parse_args()
    if args.fd is not None:
        sock = socket.socket(fileno=args.fd)
    else:
        sock = socket.create_server((args.host, args.port), reuse_port=False)
    coro = serve_trivial(
        sock,
        delay_s=args.delay_ms / 1000,
        stall_after=args.stall_after,
        stall_s=args.stall_ms / 1000,
    )
    try:
        import uvloop

        runner = asyncio.Runner(loop_factory=uvloop.new_event_loop)
    except ImportError:
        runner = asyncio.Runner()
    with runner, contextlib.suppress(KeyboardInterrupt):
        runner.run(coro)


class TrivialServer:
    """The trivial endpoint in a subprocess on a free port of 127.0.0.1 (a context manager)."""

    def __init__(self, *, delay_ms: float = 0.0, stall_after: int = 0, stall_ms: float = 0.0):
        self.args = [
            "--delay-ms",
            str(delay_ms),
            "--stall-after",
            str(stall_after),
            "--stall-ms",
            str(stall_ms),
        ]
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0

    @property
    def url(self) -> str:
        """Base URL."""
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> TrivialServer:
        sock = socket.create_server(("127.0.0.1", 0), backlog=1024)
        sock.set_inheritable(True)
        self.port = sock.getsockname()[1]
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "modelscale.loadgen.trivial",
                "--fd",
                str(sock.fileno()),
                *self.args,
            ],
            pass_fds=(sock.fileno(),),
            stdin=subprocess.DEVNULL,
        )
        sock.close()  # the listening socket lives on in the child; connections queue meanwhile
        self._wait_ready()
        return self

    def _wait_ready(self, timeout_s: float = 30.0) -> None:
        # The first answer proves the child runs; until then connections only sit in the backlog.
        deadline = time.monotonic() + timeout_s
        while True:
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=1)
            try:
                conn.request("GET", "/v2/models/trivial")
                conn.getresponse().read()
                return
            except (OSError, http.client.HTTPException):
                if time.monotonic() > deadline or (self.proc and self.proc.poll() is not None):
                    raise
                time.sleep(0.05)
            finally:
                conn.close()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


if __name__ == "__main__":
    main()
