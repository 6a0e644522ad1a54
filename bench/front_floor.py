"""The floor under the front's CPU per request: an ASGI app that does nothing, under each HTTP server.

The front's CPU per request (bench/front_cost.py, bench/server_share.py) is the HTTP server's share
plus the server's own (pipeline, batcher, replica hand-over, recorders). This measures the first
alone, with an app that reads the request, parses its JSON, waits 10 ms as a model would (one
timer) and answers a 4.8 KB reply (MiniLM's sentence embedding), under:

- ``uvicorn``: uvicorn with uvloop and httptools, as ``modelscale serve`` runs;
- ``granian-asgi`` and ``granian-rsgi``: granian (a Rust HTTP server) embedded in the same
  process's asyncio loop, through ASGI and through its own RSGI interface, if granian is
  installed (``.venv/bin/pip install granian``).

Each server runs in a process of its own; a client process sends open-loop Poisson load over
keep-alive connections; the server's CPU (user + system, every thread) is read from /proc before
and after. With ``--beside 2`` two busy processes (matrix products, batch scheduling, as replicas
run) share the cores, as a compute-heavy model's replicas do. Servers alternate within each
repetition.

    .venv/bin/python bench/front_floor.py [--rates 60,300] [--seconds 10] [--beside 0,2] [--runs 2]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import pathlib
import subprocess
import sys
import time
from typing import Any

import psutil

_APP = r"""
import asyncio, sys
import orjson
REPLY = orjson.dumps({"outputs": [{"name": "sentence_embedding", "datatype": "FP32",
                                   "shape": [1, 384], "data": [0.123456] * 384}]})

async def asgi(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            m = await receive()
            if m["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            else:
                await send({"type": "lifespan.shutdown.complete"})
                return
    body = b""
    while True:
        m = await receive()
        body += m.get("body", b"")
        if not m.get("more_body"):
            break
    orjson.loads(body)
    await asyncio.sleep(0.01)
    await send({"type": "http.response.start", "status": 200, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(REPLY)).encode())]})
    await send({"type": "http.response.body", "body": REPLY})

class Rsgi:
    def __rsgi_init__(self, loop): pass
    def __rsgi_del__(self, loop): pass
    async def __rsgi__(self, scope, proto):
        orjson.loads(await proto())
        await asyncio.sleep(0.01)
        proto.response_bytes(200, [("content-type", "application/json")], REPLY)

kind, port = sys.argv[1], int(sys.argv[2])
if kind == "uvicorn":
    import uvicorn
    uvicorn.run(asgi, host="127.0.0.1", port=port, loop="uvloop", http="httptools",
                log_level="warning", lifespan="on", access_log=False)
else:
    import uvloop
    from granian.constants import Interfaces
    from granian.server.embed import Server
    rsgi = kind == "granian-rsgi"
    server = Server(Rsgi() if rsgi else asgi, address="127.0.0.1", port=port,
                    interface=Interfaces.RSGI if rsgi else Interfaces.ASGI, log_enabled=False)
    uvloop.run(server.serve())
"""

_CLIENT = r"""
import asyncio, json, random, sys, time
port, rate, secs = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
body = json.dumps({"inputs": [{"name": n, "datatype": "INT64", "shape": [1, 32],
                               "data": list(range(32))}
                              for n in ("input_ids", "attention_mask", "token_type_ids")]}).encode()
req = (b"POST /v2/models/m/infer HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
       b"content-length: %d\r\n\r\n%s" % (len(body), body))
async def one(pool, lat):
    pooled = bool(pool)
    r, w = pool.pop() if pooled else await asyncio.open_connection("127.0.0.1", port)
    t = time.perf_counter()
    w.write(req)
    try:
        head = await r.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, ConnectionError):
        if not pooled:
            raise
        # The server closed a connection idle past its keep-alive: a new one, timed anew.
        r, w = await asyncio.open_connection("127.0.0.1", port)
        t = time.perf_counter()
        w.write(req)
        head = await r.readuntil(b"\r\n\r\n")
    n = next(int(h.split(b":")[1]) for h in head.split(b"\r\n")
             if h.lower().startswith(b"content-length"))
    await r.readexactly(n)
    lat.append(time.perf_counter() - t)
    pool.append((r, w))
async def main():
    pool, lat, tasks = [], [], []
    end = nxt = time.perf_counter()
    end += secs
    while nxt < end:
        nxt += random.expovariate(rate)
        await asyncio.sleep(max(0.0, nxt - time.perf_counter()))
        tasks.append(asyncio.create_task(one(pool, lat)))
    await asyncio.gather(*tasks)
    lat.sort()
    print(json.dumps({"ok": len(lat), "p50_ms": 1000 * lat[len(lat) // 2],
                      "p99_ms": 1000 * lat[int(len(lat) * 0.99)]}))
asyncio.run(main())
"""

_BUSY = """
import os, sys, time
import numpy as np
os.sched_setscheduler(0, os.SCHED_BATCH, os.sched_param(0))
a = np.random.rand(300, 300)
end = time.time() + float(sys.argv[1])
while time.time() < end:
    a @ a
"""


def _wait_listening(port: int, proc: subprocess.Popen[bytes]) -> None:
    import socket

    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the server on port {port} exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"the server on port {port} did not listen within 20 s")


def measure(kind: str, port: int, rate: float, seconds: float, beside: int) -> dict[str, Any]:
    """One server, one rate: the server's CPU ms per request, p50 and p99."""
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    server = subprocess.Popen([sys.executable, "-c", _APP, kind, str(port)], env=env)
    busy: list[subprocess.Popen[bytes]] = []
    try:
        _wait_listening(port, server)
        client = [sys.executable, "-c", _CLIENT, str(port), str(rate)]
        warm = subprocess.run([*client, "2"], capture_output=True, text=True)
        if warm.returncode != 0:
            raise SystemExit(f"the client failed against {kind}: {warm.stderr[-2000:]}")
        busy = [
            subprocess.Popen([sys.executable, "-c", _BUSY, str(seconds + 2)], env=env)
            for _ in range(beside)
        ]
        proc = psutil.Process(server.pid)
        t0 = proc.cpu_times()
        out = subprocess.run([*client, str(seconds)], capture_output=True, text=True)
        if out.returncode != 0:
            raise SystemExit(f"the client failed against {kind}: {out.stderr[-2000:]}")
        t1 = proc.cpu_times()
    finally:
        for b in busy:
            b.kill()
        server.terminate()
        server.wait()
    r = json.loads(out.stdout)
    cpu_s = (t1.user - t0.user) + (t1.system - t0.system)
    return {
        "server": kind,
        "rate": rate,
        "beside": beside,
        **r,
        "cpu_ms_per_request": 1000 * cpu_s / max(r["ok"], 1),
    }


def _positive(text: str, what: str) -> list[float]:
    try:
        values = [float(x) for x in text.split(",") if x]
    except ValueError:
        values = []
    if not values or min(values) <= 0:
        raise SystemExit(f"{what} must be positive numbers, comma separated. Got {text!r}.")
    return values


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rates", default="60,300", help="request rates (req/s), comma list")
    ap.add_argument("--seconds", type=float, default=10.0, help="load window per measurement")
    ap.add_argument("--beside", default="0,2", help="busy processes beside the server, comma list")
    ap.add_argument("--runs", type=int, default=2, help="repetitions (servers alternate)")
    ap.add_argument("--out", default="bench/results/front_floor.json")
    args = ap.parse_args()
    rates = _positive(args.rates, "--rates")
    try:
        besides = [int(x) for x in args.beside.split(",") if x]
    except ValueError:
        besides = []
    if not besides or min(besides) < 0:
        raise SystemExit(f"--beside must be counts >= 0, comma separated. Got {args.beside!r}.")
    if args.seconds <= 0 or args.runs < 1:
        raise SystemExit("--seconds must be > 0 and --runs >= 1.")
    kinds = ["uvicorn"]
    if importlib.util.find_spec("granian") is not None:
        kinds += ["granian-asgi", "granian-rsgi"]
    else:
        print("granian is not installed: measuring uvicorn only (.venv/bin/pip install granian)")

    started = time.strftime("%Y-%m-%d %H:%M:%S")
    load = " ".join(f"{x:.2f}" for x in psutil.getloadavg())
    rows = []
    port = 18700
    for run in range(args.runs):
        for beside in besides:
            for rate in rates:
                order = kinds if run % 2 == 0 else kinds[::-1]
                for kind in order:
                    port += 1
                    row = {"run": run + 1, **measure(kind, port, rate, args.seconds, beside)}
                    rows.append(row)
                    print(
                        f"run {run + 1} {kind} {rate:g} req/s, {beside} busy beside: "
                        f"{row['cpu_ms_per_request']:.3f} ms CPU per request, p99 "
                        f"{row['p99_ms']:.1f} ms",
                        flush=True,
                    )
    print(f"\nMeasured {started} (load average {load} at the start).\n")
    print("| server | req/s | busy beside | CPU ms per request (each run) | p99 ms (each run) |")
    print("| --- | ---: | ---: | --- | --- |")
    for beside in besides:
        for rate in rates:
            for kind in kinds:
                sel = [
                    r
                    for r in rows
                    if r["server"] == kind and r["rate"] == rate and r["beside"] == beside
                ]
                cpu = ", ".join(f"{r['cpu_ms_per_request']:.3f}" for r in sel)
                p99 = ", ".join(f"{r['p99_ms']:.1f}" for r in sel)
                print(f"| {kind} | {rate:g} | {beside} | {cpu} | {p99} |")
    out = pathlib.Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"started": started, "load_avg_start": load, "rows": rows}, indent=2))
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
