"""The HTTP client over real sockets: open loop never skips, and stalls show in the latencies."""

from __future__ import annotations

import asyncio

import numpy as np

from modelscale.loadgen.client import CONNECTION_ERROR, Shooter, build_request
from modelscale.loadgen.stats import summarize
from modelscale.loadgen.trivial import TrivialServer
from modelscale.serve.runner import bind_socket

BODY = b'{"inputs":[{"name":"x","shape":[1,1],"datatype":"FP32","data":[1.0]}]}'


def run(s: Shooter, coro):
    async def go():
        try:
            return await coro
        finally:
            await s.aclose()

    return asyncio.run(go())


def shooter(port: int, **kw) -> Shooter:
    req = build_request(
        "POST",
        "127.0.0.1",
        port,
        "/v2/models/trivial/infer",
        BODY,
        {"Content-Type": "application/json"},
    )
    return Shooter("127.0.0.1", port, [req], **kw)


def test_open_loop_sends_every_planned_request() -> None:
    with TrivialServer() as server:
        s = shooter(server.port)
        out = run(s, s.open_loop(np.arange(400) / 400.0))
    assert (out.status == 200).all() and (out.sent > 0).all()
    assert (out.sent >= out.intended).all() and (out.done > out.sent).all()


def test_a_stalled_server_shows_in_the_latencies() -> None:
    # 200 req/s for 2 s; the server freezes for 300 ms at its 100th request. Every request planned
    # during the freeze waits for it: a client that measured from its own (delayed) send time, or
    # that paused sending while waiting, would report one slow request instead of ~60.
    with TrivialServer(stall_after=100, stall_ms=300) as server:
        s = shooter(server.port, max_connections=64)
        out = run(s, s.open_loop(np.arange(400) / 200.0))
    stats = summarize(out, planned_s=2.0)
    assert stats.ok == 400
    from_plan = (out.done - out.intended) * 1000
    from_send = (out.done - out.sent) * 1000
    slow = from_plan > 100
    assert 40 <= slow.sum() <= 80  # ~ rate x stall = 60 requests saw the stall
    assert stats.p99_ms > 200 and stats.max_ms > 250
    assert from_plan.sum() >= from_send.sum()


def test_with_every_connection_busy_requests_wait_and_are_sent_late_not_skipped() -> None:
    with TrivialServer(delay_ms=20) as server:
        s = shooter(server.port, max_connections=1)  # capacity ~50/s; offered 100/s for 1 s
        out = run(s, s.open_loop(np.arange(100) / 100.0, timeout_s=30))
    stats = summarize(out, planned_s=1.0)
    assert stats.sent == 100 and stats.ok == 100
    assert stats.late > 50  # the backlog is sent late...
    assert stats.max_ms > 500  # ...and its waiting is in the latency
    lag = out.sent - out.intended
    assert lag[-1] > lag[0]


def test_closed_loop_keeps_the_concurrency() -> None:
    with TrivialServer(delay_ms=10) as server:
        s = shooter(server.port, max_connections=64)
        out = run(s, s.closed_loop(4, 1.0))
    n = len(out.status)
    assert (out.status == 200).all()
    assert 4 * 1.0 / 0.010 * 0.5 <= n <= 4 * 1.0 / 0.010 * 1.1  # ~4 in flight, 10 ms each


def test_a_refused_connection_is_an_error_not_a_hang() -> None:
    sock = bind_socket("127.0.0.1", 0)  # bound, never listening: connections are refused
    port = sock.getsockname()[1]
    try:
        s = shooter(port)
        out = run(s, s.open_loop(np.arange(20) / 100.0, timeout_s=5))
    finally:
        sock.close()
    assert (out.status == CONNECTION_ERROR).all()
