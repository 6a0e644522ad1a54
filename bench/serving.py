"""Acceptance figures of `modelscale serve` and `modelscale load` on MiniLM fp32, seq 32.

1. The load generator alone against the trivial endpoint (target: sustains >= 5,000 req/s).
2. Raw onnxruntime throughput with 2 threads in total (2 processes x 1 thread and 1 process x 2
   threads; batches 1-32), with the median time of one session.run of each batch, measured in this
   run. The SLO-feasible raw ceiling for a p99 objective P is the highest of these rates among the
   (split, batch) whose batch time is <= P/2.
3. The server's highest sustained rate with p99 <= P (open-loop Poisson, find-max from 0.6 x that
   P's ceiling), for each P of --p99 and each server setting given: fixed batch settings
   ('8:5', no objective) or the adaptive batcher ('slo': an objective of P and no batch settings).
4. The same search against LitServe and Mosec serving the same model the same way (2 workers x
   1 thread, ONNX Runtime), if a Python with them is available (--compare-python); they are not
   modelscale dependencies: python -m venv /tmp/cmp && /tmp/cmp/bin/pip install litserve mosec
   onnxruntime numpy. The acceptance grid is --theirs 4:2,4:5,4:10,8:2,8:5,8:10,16:2,16:5,16:10;
   the summary takes each peer's best setting per (P, condition): the median over --runs per
   setting, then the highest.
5. Each of 2-4 under --slow conditions: 'none'; 'quota' (every model-running process, raw
   onnxruntime included, in a cgroup v1 cpu group of its own capped at half a core); 'busy' (one
   busy-loop process per core beside everything, started before and killed after each
   measurement).

Every server answers one request (one sequence, or one digits image with --model digits) with its
output as JSON, and is loaded by the same open-loop generator from this process, on the same box.
Find-max runs alternate their order per repetition (the list, then reversed), so that a machine
that drifts penalises every server alike; the summary gives medians with every repetition listed.

Run: .venv/bin/python bench/serving.py [--step 30] [--runs 3] [--compare-python /tmp/cmp/bin/python]
     [--p99 50,100,200] [--slow none,quota] [--ours slo,8:5] [--theirs 8:5,4:5]
     [--out bench/results/serving.json] [--md bench/results/serving.md]

Acceptance (MiniLM): --skip loadgen,flood --runs 3 --step 30 --p99 50,100,200 --slow none,quota
     --ours slo,8:5 --theirs 4:2,4:5,4:10,8:2,8:5,8:10,16:2,16:5,16:10
     --compare-python /tmp/cmp/bin/python
Digits, adaptive against fixed: --model digits --skip loadgen,flood,litserve,mosec --ours slo,8:5
     --p99 100 --runs 3
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import os
import pathlib
import signal
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.request
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import psutil

from modelscale.config import DeploymentSpec
from modelscale.examples import build_example
from modelscale.loadgen import (
    LoadOptions,
    Pattern,
    Shooter,
    TrivialServer,
    build_request,
    find_max_rate,
    run_load,
    schedule,
    summarize,
)
from modelscale.machine import machine_info
from modelscale.serve import bind_socket, start_server

SEQ = 32
KEYS = ("input_ids", "attention_mask", "token_type_ids")
P99_MS = 100.0
RAW_BATCHES = (1, 2, 3, 4, 6, 8, 12, 16, 32)
SPLITS = ((2, 1), (1, 2))
# Per model: its inputs (name: dtype), the output asked for, and a cap on the find-max start rate
# (digits runs in microseconds: its raw ceiling is far above what any HTTP front answers).
MODELS: dict[str, dict[str, Any]] = {
    "minilm": {
        "inputs": dict.fromkeys(KEYS, "int64"),
        "output": "sentence_embedding",
        "start_cap": None,
    },
    "digits": {"inputs": {"pixels": "float32"}, "output": "logits", "start_cap": 1500.0},
}


def log(*args: object) -> None:
    print(*args, file=sys.stderr, flush=True)


def load_avg() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


# -- the slowed conditions ------------------------------------------------------------------------
CPU_CGROUP = pathlib.Path("/sys/fs/cgroup/cpu")  # cgroup v1, writable as root
CGROUP_PREFIX = "bench-serving-"
PERIOD_US, QUOTA_US = 100_000, 50_000  # half a core per confined process
BUSY = "while True: pass"
CONDITIONS = ("none", "quota", "busy")


class Slowdown:
    """The condition of one measurement, undone on exit whatever happens.

    ``quota``: each process given to ``confine`` goes into a cpu cgroup of its own capped at half a
    core (the cgroups are removed on exit, their processes moved back to the root first).
    ``busy``: one ``while True: pass`` process per core runs beside everything from entry to exit.
    ``none``: nothing.
    """

    _made = 0

    def __init__(self, kind: str) -> None:
        if kind not in CONDITIONS:
            raise ValueError(f"unknown --slow condition {kind!r}; one of {', '.join(CONDITIONS)}")
        self.kind = kind
        self.busy: list[subprocess.Popen[bytes]] = []
        self.groups: list[pathlib.Path] = []
        self.confined: list[int] = []

    def __enter__(self) -> Slowdown:
        if self.kind == "busy":
            try:
                for _ in range(len(os.sched_getaffinity(0))):
                    self.busy.append(subprocess.Popen([sys.executable, "-c", BUSY]))
            except BaseException:
                self.close()
                raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def confine(self, pids: Iterable[int]) -> None:
        if self.kind != "quota":
            return
        for pid in pids:
            Slowdown._made += 1
            group = CPU_CGROUP / f"{CGROUP_PREFIX}{os.getpid()}-{Slowdown._made}"
            group.mkdir()
            self.groups.append(group)
            (group / "cpu.cfs_period_us").write_text(f"{PERIOD_US}\n")
            (group / "cpu.cfs_quota_us").write_text(f"{QUOTA_US}\n")
            try:
                (group / "cgroup.procs").write_text(f"{pid}\n")
            except OSError as exc:  # it exited meanwhile
                log(f"could not confine pid {pid}: {exc}")
                continue
            self.confined.append(pid)

    def throttled_s(self) -> float | None:
        """Seconds the confined processes spent throttled so far (None unless ``quota``)."""
        if self.kind != "quota":
            return None
        total = 0
        for group in self.groups:
            with contextlib.suppress(OSError):
                stat = dict(
                    ln.split() for ln in (group / "cpu.stat").read_text().splitlines() if ln
                )
                total += int(stat.get("throttled_time", 0))
        return total / 1e9

    def close(self) -> None:
        busy, self.busy = self.busy, []
        for p in busy:
            p.kill()
            p.wait()
        groups, self.groups = self.groups, []
        for group in groups:
            _remove_cgroup(group)


def _remove_cgroup(group: pathlib.Path) -> None:
    for _ in range(100):
        if not group.exists():
            return
        with contextlib.suppress(OSError):
            for pid in (group / "cgroup.procs").read_text().split():
                with contextlib.suppress(OSError):  # gone already
                    (CPU_CGROUP / "cgroup.procs").write_text(f"{pid}\n")
            group.rmdir()
            return
        time.sleep(0.05)
    log(f"could not remove the cgroup {group}")


def remove_stale_cgroups() -> None:
    """Empty cgroups left by an earlier run of this benchmark that was killed (never a live one)."""
    if not CPU_CGROUP.is_dir():
        return
    for group in CPU_CGROUP.glob(f"{CGROUP_PREFIX}*"):
        owner = group.name[len(CGROUP_PREFIX) :].split("-")[0]
        if owner.isdigit() and not psutil.pid_exists(int(owner)):
            with contextlib.suppress(OSError):
                if not (group / "cgroup.procs").read_text().strip():
                    group.rmdir()


def check_conditions(conditions: list[str]) -> None:
    for c in conditions:
        Slowdown(c)  # raises on an unknown name
    if "quota" in conditions:
        probe = CPU_CGROUP / f"{CGROUP_PREFIX}{os.getpid()}-check"
        try:
            probe.mkdir()
            (probe / "cpu.cfs_quota_us").write_text(f"{QUOTA_US}\n")
        except OSError as exc:
            raise SystemExit(
                f"--slow quota needs a writable cgroup v1 cpu controller: {exc}"
            ) from None
        finally:
            _remove_cgroup(probe)


# -- 1. the load generator alone ------------------------------------------------------------------
def loadgen_capacity(rates: list[int], step: float) -> list[dict[str, Any]]:
    out = []
    with TrivialServer() as server:
        for rate in rates:
            r = run_load(
                server.url,
                model="trivial",
                options=LoadOptions(rate=rate, duration_s=step, warmup_s=1, max_connections=64),
            )
            s = r.overall
            row = {
                "offered_rps": rate,
                "achieved_rps": s.achieved_rps,
                "p50_ms": s.p50_ms,
                "p99_ms": s.p99_ms,
                "errors": sum(s.errors.values()),
                "late_share": s.late / max(s.sent, 1),
            }
            # Sustained: every request answered at the offered rate; a few sends may slip past
            # 2 ms when the box is busy (they are counted in the latencies anyway).
            row["sustained"] = (
                s.achieved_rps >= 0.99 * rate and row["errors"] == 0 and row["late_share"] < 0.05
            )
            log(f"loadgen {rate}/s: {r.summary}")
            out.append(row)
    return out


# -- 2. raw onnxruntime ---------------------------------------------------------------------------
RAW = textwrap.dedent(
    """
    import sys, time, numpy as np, onnxruntime as ort
    path, npz, threads, batch, secs, output, times = sys.argv[1:8]
    threads, batch, secs = int(threads), int(batch), float(secs)
    d = np.load(npz)
    so = ort.SessionOptions(); so.intra_op_num_threads = threads; so.inter_op_num_threads = 1
    s = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    rows = len(d[d.files[0]])
    feeds = [{k: d[k][i:i + batch] for k in d.files} for i in range(0, rows - batch + 1, batch)][:64]
    for f in feeds[:3]: s.run([output], f)
    print("ready", flush=True); sys.stdin.readline()  # every process loaded before any times
    n = 0; t0 = time.perf_counter(); i = 0; ts = []
    while time.perf_counter() - t0 < secs:
        t = time.perf_counter()
        s.run([output], feeds[i % len(feeds)]); n += batch; i += 1
        ts.append(time.perf_counter() - t)
    print(n / (time.perf_counter() - t0))
    np.save(times, np.asarray(ts))
    """
)


def raw_ort(
    model: str,
    npz: str,
    seconds: float,
    batches: Iterable[int] = RAW_BATCHES,
    output: str = "sentence_embedding",
    slow: str = "none",
    tmp: pathlib.Path | None = None,
    splits: Iterable[tuple[int, int]] = SPLITS,
) -> list[dict[str, Any]]:
    """seq/s of each (processes x threads, batch), and the median and p99 ms of one session.run
    of that batch (over every run of every process), under the condition ``slow``."""
    out = []
    where = pathlib.Path(tmp or tempfile.mkdtemp(prefix="bench-serving-raw-"))
    for procs, threads in splits:
        for batch in batches:
            times = [where / f"raw-{slow}-{procs}x{threads}-b{batch}-{k}.npy" for k in range(procs)]
            with Slowdown(slow) as slowed:
                ps = [
                    subprocess.Popen(
                        [
                            sys.executable,
                            "-c",
                            RAW,
                            model,
                            npz,
                            str(threads),
                            str(batch),
                            str(seconds),
                            output,
                            str(times[k]),
                        ],
                        stdin=subprocess.PIPE,
                        stdout=subprocess.PIPE,
                        env={**os.environ, "OMP_NUM_THREADS": str(threads)},
                        text=True,
                    )
                    for k in range(procs)
                ]
                try:
                    slowed.confine(p.pid for p in ps)
                    for p in ps:
                        assert p.stdout is not None and p.stdout.readline().strip() == "ready"
                    for p in ps:
                        assert p.stdin is not None
                        p.stdin.write("go\n")
                        p.stdin.flush()
                    total = sum(float(p.communicate()[0]) for p in ps)
                    throttled = slowed.throttled_s()
                finally:
                    for p in ps:
                        if p.poll() is None:
                            p.kill()
                            p.wait()
            runs = np.concatenate([np.load(t) for t in times]) * 1000
            row = {
                "condition": slow,
                "processes": procs,
                "threads": threads,
                "batch": batch,
                "seq_per_s": total,
                "batch_ms": float(np.median(runs)),
                "batch_p99_ms": float(np.percentile(runs, 99)),
                "throttled_s": throttled,
            }
            log(
                f"raw ORT [{slow}] {procs} proc x {threads} thr, batch {batch}: {total:.1f} seq/s, "
                f"{row['batch_ms']:.1f} ms per batch (p99 {row['batch_p99_ms']:.1f})"
            )
            out.append(row)
    return out


def slo_ceiling(raw: list[dict[str, Any]], p99_ms: float) -> dict[str, Any] | None:
    """The highest raw rate among the (split, batch) whose median batch time is <= p99_ms / 2."""
    feasible = [r for r in raw if r["batch_ms"] <= p99_ms / 2]
    return max(feasible, key=lambda r: r["seq_per_s"], default=None)


def _ceiling_text(c: dict[str, Any] | None) -> str:
    if c is None:
        return "none feasible"
    return (
        f"{c['seq_per_s']:.0f} ({c['processes']}x{c['threads']}, batch {c['batch']}, "
        f"{c['batch_ms']:.1f} ms)"
    )


# -- 3. modelscale --------------------------------------------------------------------------------
REPLICA_MODULE = "modelscale.serve.replica"


def modelscale_findmax(
    model: str,
    npz: pathlib.Path,
    max_batch: int | None,
    wait_ms: float | None,
    step: float,
    start: float,
    repeats: int,
    replicas: int = 2,
    threads: int = 1,
    src: str | None = None,
    tolerance: float = 0.05,
    *,
    p99_ms: float = P99_MS,
    slow: str = "none",
    name: str = "minilm",
    outputs: tuple[str, ...] = ("sentence_embedding",),
) -> dict[str, Any]:
    """Find-max of ``modelscale serve`` with p99 <= ``p99_ms``; with ``src``, of the build in that
    source tree instead. ``max_batch`` None: the adaptive batcher, with the objective ``p99_ms``
    and no batch settings; else fixed batch settings and no objective."""
    adaptive = max_batch is None
    spec = DeploymentSpec.single(
        model,
        name=name,
        replicas=replicas,
        threads=threads,
        max_batch=max_batch,  # None (with wait_ms None): derived from the objective
        max_wait_ms=wait_ms,
        p99_ms=p99_ms if adaptive else None,
        max_queue=4096,
    )
    env = {"PYTHONPATH": str(pathlib.Path(src) / "src")} if src else None
    with Slowdown(slow) as slowed, start_server(spec, env=env) as server:
        workers = _replica_pids(server.pid)
        slowed.confine(workers)
        r = run_load(
            server.url,
            model=name,
            options=LoadOptions(
                find_max=True,
                rate=start,
                duration_s=step,
                inputs=npz,
                outputs=outputs,
                p99_ms=p99_ms,
                repeats=repeats,
                tolerance=tolerance,
                warmup_s=3,
            ),
        )
        metrics = urllib.request.urlopen(f"{server.url}/metrics").read().decode()
        throttled = slowed.throttled_s()
    mean_batch = _histogram_mean(metrics, "modelscale_batch_size")
    mean_wait = _histogram_mean(metrics, "modelscale_batch_wait_seconds")
    server_name = "modelscale" if src is None else f"modelscale@{pathlib.Path(src).name}"
    setting = "adaptive" if adaptive else f"{max_batch} / {wait_ms:g} ms"
    log(
        f"{server_name} [{slow}, p99 {p99_ms:g}] {replicas}x{threads} {setting}: {r.summary} "
        f"({load_avg()})"
    )
    return {
        "server": server_name,
        "replicas_x_threads": f"{replicas} x {threads}",
        "adaptive": adaptive,
        "setting": setting,
        "max_batch": max_batch,
        "wait_ms": wait_ms,
        "max_rps": r.max_rate_rps,
        "mean_batch": float("nan") if mean_batch is None else mean_batch,
        "mean_wait_ms": None if mean_wait is None else 1000 * mean_wait,
        "workers_pids": workers,
        "throttled_s": throttled,
        "probes": [
            {
                "rate": w["rate_rps"],
                "passed": w["passed"],
                "p99_ms": w["stats"].p99_ms,
                "achieved": w["stats"].achieved_rps,
            }
            for w in r.windows
        ],
    }


def _replica_pids(server_pid: int) -> list[int]:
    """The server's replica processes (all its descendants if none looks like one)."""
    kids = psutil.Process(server_pid).children(recursive=True)

    def cmdline(p: psutil.Process) -> str:
        with contextlib.suppress(psutil.Error):
            return " ".join(p.cmdline())
        return ""

    replicas = [p.pid for p in kids if REPLICA_MODULE in cmdline(p)]
    if not replicas:
        log(f"no {REPLICA_MODULE} process under the server; confining all its descendants")
    return replicas or [p.pid for p in kids]


def _histogram_mean(metrics: str, name: str) -> float | None:
    """Mean of a Prometheus histogram over all its label sets (None when absent or empty)."""
    total = count = 0.0
    for line in metrics.splitlines():
        head, _, value = line.rpartition(" ")
        metric = head.split("{", 1)[0]
        with contextlib.suppress(ValueError):
            if metric == f"{name}_sum":
                total += float(value)
            elif metric == f"{name}_count":
                count += float(value)
    return total / count if count else None


# -- 5. a header flood beside the load -------------------------------------------------------------
FLOOD = textwrap.dedent(
    """
    import socket, sys, threading
    host, port, clients, mb = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    again = sys.argv[5] == "again"  # reconnect after each refusal, else one header per client
    stop = threading.Event(); answers = {}; sent = [0]; lock = threading.Lock()

    def flood():
        chunk = b"a" * 65536
        while not stop.is_set():
            try:
                s = socket.create_connection((host, port), timeout=30)
            except OSError:
                continue
            try:
                s.sendall(b"POST /v2/models/minilm/infer HTTP/1.1\\r\\nHost: x\\r\\nX-Big: ")
                for _ in range(mb * 16):
                    if stop.is_set():
                        break
                    s.sendall(chunk)
                    with lock:
                        sent[0] += len(chunk)
            except OSError:
                pass
            try:
                head = s.recv(64)[:12].decode(errors="replace") or "closed"
            except OSError:
                head = "reset"
            with lock:
                answers[head] = answers.get(head, 0) + 1
            s.close()
            if not again:
                stop.wait()

    threads = [threading.Thread(target=flood, daemon=True) for _ in range(clients)]
    for t in threads:
        t.start()
    sys.stdin.readline()
    stop.set()
    for t in threads:
        t.join(35)
    print(sent[0], repr(answers), flush=True)
    """
)


def header_flood(
    model: str,
    npz: pathlib.Path,
    rate: float,
    seconds: float,
    clients: int = 8,
    mb: int = 100,
    again: bool = True,
) -> dict[str, Any]:
    """p99 of a fixed-rate load, quiet and then beside ``clients`` sending ``mb`` MB headers
    (``again``: each reconnects and sends another as soon as one is refused)."""
    spec = DeploymentSpec.single(
        model, name="minilm", replicas=2, threads=1, max_batch=8, max_wait_ms=2, max_queue=4096
    )
    options = LoadOptions(
        rate=rate, duration_s=seconds, inputs=npz, outputs=("sentence_embedding",), warmup_s=3
    )
    with start_server(spec) as server:
        quiet = run_load(server.url, model="minilm", options=options).overall
        rss_start = psutil.Process(server.pid).memory_info().rss
        # The flood runs in a process of its own, so that it does not share this one's GIL with
        # the load generator: what is measured is the server.
        flood = subprocess.Popen(
            [
                sys.executable,
                "-c",
                FLOOD,
                server.host,
                str(server.port),
                str(clients),
                str(mb),
                "again" if again else "once",
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        time.sleep(1)
        front, flooder = psutil.Process(server.pid), psutil.Process(flood.pid)
        replicas = front.children()

        def cpu(procs: list[psutil.Process]) -> float:
            return sum(sum(p.cpu_times()[:2]) for p in procs)

        before = (cpu([front]), cpu(replicas), cpu([flooder]), time.monotonic())
        try:
            flooded = run_load(server.url, model="minilm", options=options).overall
            rss_peak = front.memory_info().rss
            wall = time.monotonic() - before[3]
            cores = {
                "front": (cpu([front]) - before[0]) / wall,
                "replicas": (cpu(replicas) - before[1]) / wall,
                "flood clients": (cpu([flooder]) - before[2]) / wall,
            }
        finally:
            out, _ = flood.communicate("stop\n", timeout=60)
        sent, answers = out.split(" ", 1)
    row = {
        "again": again,
        "rate": rate,
        "seconds": seconds,
        "clients": clients,
        "header_mb": mb,
        "quiet_p99_ms": quiet.p99_ms,
        "flooded_p99_ms": flooded.p99_ms,
        "ratio": flooded.p99_ms / quiet.p99_ms,
        "quiet_achieved": quiet.achieved_rps,
        "flooded_achieved": flooded.achieved_rps,
        "flooded_errors": dict(flooded.errors),
        "flood_bytes_sent": int(sent),
        "flood_answers": answers.strip(),
        "front_rss_mb_before": rss_start / 2**20,
        "front_rss_mb_after": rss_peak / 2**20,
        "cores_during_flood": cores,
    }
    log(f"header flood: {row}")
    return row


# -- 4. LitServe and Mosec --------------------------------------------------------------------------
# Each worker that loads the model writes its pid into $B_PIDDIR: those (and only those) are the
# processes confined under --slow quota.
LITSERVE = textwrap.dedent(
    """
    import os, sys, numpy as np, onnxruntime as ort, litserve as ls
    PATH, PORT, MB, WAIT_MS = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
    OUTPUT, INPUTS = sys.argv[5], dict(kv.split(":") for kv in sys.argv[6].split(","))

    class Embed(ls.LitAPI):
        def setup(self, device):
            so = ort.SessionOptions(); so.intra_op_num_threads = 1; so.inter_op_num_threads = 1
            self.sess = ort.InferenceSession(PATH, so, providers=["CPUExecutionProvider"])
            open(os.path.join(os.environ["B_PIDDIR"], str(os.getpid())), "w").close()
        def decode_request(self, request):
            return {k: np.asarray(request[k], dtype=t) for k, t in INPUTS.items()}
        def batch(self, inputs):
            return {k: np.stack([x[k] for x in inputs]) for k in INPUTS}
        def predict(self, x):
            if MB == 1:  # no batch() call: one request's arrays
                x = {k: v[None] for k, v in x.items()}
            return self.sess.run([OUTPUT], x)[0]
        def unbatch(self, output):
            return list(output)
        def encode_response(self, output):
            return {"embedding": np.asarray(output).reshape(-1).tolist()}

    if __name__ == "__main__":
        api = Embed(max_batch_size=MB, batch_timeout=WAIT_MS / 1000)
        server = ls.LitServer(api, accelerator="cpu", workers_per_device=2, timeout=30)
        server.run(host="127.0.0.1", port=PORT, num_api_servers=1, log_level="warning",
                   generate_client_file=False)
    """
)

MOSEC = textwrap.dedent(
    """
    import os, numpy as np, onnxruntime as ort
    from mosec import Server, Worker
    PATH, MB, WAIT = os.environ["B_MODEL"], int(os.environ["B_MB"]), int(os.environ["B_WAIT"])
    OUTPUT = os.environ["B_OUTPUT"]
    INPUTS = dict(kv.split(":") for kv in os.environ["B_INPUTS"].split(","))

    class Embed(Worker):
        def __init__(self):
            super().__init__()
            so = ort.SessionOptions(); so.intra_op_num_threads = 1; so.inter_op_num_threads = 1
            self.sess = ort.InferenceSession(PATH, so, providers=["CPUExecutionProvider"])
            open(os.path.join(os.environ["B_PIDDIR"], str(os.getpid())), "w").close()
        def forward(self, data):
            items = data if MB > 1 else [data]
            feeds = {k: np.asarray([d[k] for d in items], dtype=t) for k, t in INPUTS.items()}
            out = self.sess.run([OUTPUT], feeds)[0]
            res = [{"embedding": row.reshape(-1).tolist()} for row in out]
            return res if MB > 1 else res[0]

    if __name__ == "__main__":
        server = Server()
        server.append_worker(Embed, num=2, max_batch_size=MB, max_wait_time=WAIT)
        server.run()
    """
)
PEER_WORKERS = 2


def _free_port() -> int:
    sock = bind_socket("127.0.0.1", 0)
    port = sock.getsockname()[1]
    sock.close()
    return port


def _loop_runner() -> asyncio.Runner:
    # What run_load uses (uvloop when installed), so that every server meets the same generator.
    try:
        import uvloop

        return asyncio.Runner(loop_factory=uvloop.new_event_loop)
    except ImportError:
        return asyncio.Runner()


def compare_findmax(
    kind: str,
    python: str,
    model: str,
    npz: pathlib.Path,
    max_batch: int,
    wait_ms: float,
    step: float,
    start: float,
    repeats: int,
    tmp: pathlib.Path,
    *,
    p99_ms: float = P99_MS,
    tolerance: float = 0.05,
    slow: str = "none",
    inputs: dict[str, str] | None = None,
    output: str = "sentence_embedding",
) -> dict[str, Any]:
    inputs = inputs or MODELS["minilm"]["inputs"]
    keys = ",".join(f"{k}:{t}" for k, t in inputs.items())
    port = _free_port()
    piddir = pathlib.Path(tempfile.mkdtemp(prefix=f"{kind}-pids-", dir=tmp))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "B_PIDDIR": str(piddir)}
    if kind == "litserve":
        script, path = tmp / "lit.py", "/predict"
        script.write_text(LITSERVE)
        cmd = [python, str(script), model, str(port), str(max_batch), str(wait_ms), output, keys]
    else:
        script, path = tmp / "mosec_server.py", "/inference"
        script.write_text(MOSEC)
        cmd = [python, str(script), "--port", str(port), "--address", "127.0.0.1"]
        env.update(
            B_MODEL=model,
            B_MB=str(max_batch),
            B_WAIT=str(int(wait_ms)),
            B_OUTPUT=output,
            B_INPUTS=keys,
        )
    d = np.load(npz)
    rows = len(d[next(iter(inputs))])
    bodies = [
        json.dumps({k: d[k][i].tolist() for k in inputs}).encode() for i in range(min(256, rows))
    ]
    reqs = [
        build_request("POST", "127.0.0.1", port, path, b, {"Content-Type": "application/json"})
        for b in bodies
    ]
    children: list[psutil.Process] = []
    with Slowdown(slow) as slowed:
        proc = subprocess.Popen(
            cmd, env=env, stdout=subprocess.DEVNULL, stderr=tmp.joinpath(f"{kind}.log").open("wb")
        )
        try:
            _wait_answering(port, path, bodies[0], proc)
            children = psutil.Process(proc.pid).children(recursive=True)
            workers, identified = _worker_pids(piddir, children)
            slowed.confine(workers)
            shooter = Shooter("127.0.0.1", port, reqs, max_connections=256)
            with _loop_runner() as runner:
                warm, _ = schedule(Pattern("constant"), rate=start, duration_s=3)
                runner.run(shooter.open_loop(warm))
                counter = [0]

                def measure(rate: float):
                    counter[0] += 1
                    offsets, _ = schedule(
                        Pattern("poisson"), rate=rate, duration_s=step, seed=counter[0]
                    )
                    return summarize(
                        runner.run(shooter.open_loop(offsets, timeout_s=30)), planned_s=step
                    )

                best, probes = find_max_rate(
                    measure,
                    start_rps=start,
                    p99_ms=p99_ms,
                    repeats=repeats,
                    tolerance=tolerance,
                )
                runner.run(shooter.aclose())
            throttled = slowed.throttled_s()
        finally:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            for child in children:  # this server's own workers, by pid
                with contextlib.suppress(psutil.Error):
                    child.kill()
    log(f"{kind} [{slow}, p99 {p99_ms:g}] batch {max_batch}/{wait_ms} ms: max {best}")
    return {
        "server": kind,
        "setting": f"{max_batch} / {wait_ms:g} ms",
        "max_batch": max_batch,
        "wait_ms": wait_ms,
        "max_rps": best,
        "workers_pids": workers,
        "workers_identified": identified,
        "throttled_s": throttled,
        "probes": [
            {
                "rate": p.rate,
                "passed": p.passed,
                "p99_ms": p.windows[-1].p99_ms,
                "achieved": p.windows[-1].achieved_rps,
            }
            for p in probes
        ],
    }


def _worker_pids(piddir: pathlib.Path, children: list[psutil.Process]) -> tuple[list[int], bool]:
    """The pids of the workers that loaded the model (they write them into ``piddir``), and
    whether they were found; else every descendant of the launched process."""
    deadline = time.monotonic() + 60
    while True:
        pids = [int(f.name) for f in piddir.iterdir() if psutil.pid_exists(int(f.name))]
        if len(pids) >= PEER_WORKERS:
            return pids, True
        if time.monotonic() > deadline:
            log(f"only {len(pids)} workers wrote their pid; using every descendant instead")
            return [c.pid for c in children], False
        time.sleep(0.2)


def _wait_answering(port: int, path: str, body: bytes, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with {proc.returncode}")
        try:
            req = urllib.request.Request(
                f"http://127.0.0.1:{port}{path}", body, {"Content-Type": "application/json"}
            )
            with urllib.request.urlopen(req, timeout=5) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError("the server never answered")


def _has(python: str, module: str) -> bool:
    return subprocess.run([python, "-c", f"import {module}"], capture_output=True).returncode == 0


def _configs(text: str) -> list[tuple[int, float, int, int]]:
    """'8:2,8:2:1x2' -> (max_batch, wait_ms, replicas, threads); replicas x threads default 2 x 1."""
    out = []
    for c in text.split(","):
        parts = c.split(":")
        r, t = (int(v) for v in (parts[2] if len(parts) > 2 else "2x1").split("x"))
        out.append((int(parts[0]), float(parts[1]), r, t))
    return out


def _ours_configs(text: str) -> list[tuple[int | None, float | None, int, int]]:
    """As ``_configs``, and 'slo' or 'slo:1x2' -> (None, None, replicas, threads): the adaptive
    batcher (the probe's p99 objective, no batch settings)."""
    out: list[tuple[int | None, float | None, int, int]] = []
    for c in text.split(","):
        parts = c.split(":")
        if parts[0] == "slo":
            r, t = (int(v) for v in (parts[1] if len(parts) > 1 else "2x1").split("x"))
            out.append((None, None, r, t))
        else:
            out.extend(_configs(c))
    return out


def _request_inputs(name: str, example: Any, tmp: pathlib.Path) -> pathlib.Path:
    """An .npz of one request per row: MiniLM's sample cut to seq 32, or digits' eval images."""
    inputs = MODELS[name]["inputs"]
    npz = tmp / (f"minilm_seq{SEQ}.npz" if name == "minilm" else f"{name}.npz")
    if name == "minilm":
        sample = np.load(example.model_path.parent / "minilm_sample.npz")
        np.savez(npz, **{k: sample[k][:, :SEQ] for k in inputs})
    else:
        data = np.load(example.sample_path or example.eval_path)
        np.savez(npz, **{k: data[k].astype(t) for k, t in inputs.items()})
    return npz


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)  # so that every finally runs: busy loops, cgroups, servers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--step", type=float, default=30.0, help="seconds per find-max probe")
    parser.add_argument("--repeats", type=int, default=1, help="windows per probe (all must pass)")
    parser.add_argument(
        "--runs",
        type=int,
        default=1,
        help="find-max runs per server setting, objective and condition; run r goes through the "
        "servers in order if r is even, in reverse if odd",
    )
    parser.add_argument(
        "--tolerance", type=float, default=0.05, help="find-max bisects to this relative bracket"
    )
    parser.add_argument(
        "--start",
        type=float,
        default=None,
        help="find-max start rate (req/s; default 0.6 x each objective's raw ceiling)",
    )
    parser.add_argument("--raw-seconds", type=float, default=15.0)
    parser.add_argument(
        "--raw-batches",
        default=",".join(map(str, RAW_BATCHES)),
        help="raw onnxruntime batch sizes",
    )
    parser.add_argument("--loadgen-rates", default="5000,10000,20000")
    parser.add_argument(
        "--ours",
        default="8:2,4:2",
        help="modelscale settings: max_batch:max_wait_ms[:RxT] (fixed, no objective) or "
        "slo[:RxT] (adaptive: the probe's p99 as objective, no batch settings); RxT default 2x1",
    )
    parser.add_argument(
        "--theirs",
        default="8:5,4:5",
        help="LitServe/Mosec max_batch:max_wait_ms list; the acceptance grid is "
        "4:2,4:5,4:10,8:2,8:5,8:10,16:2,16:5,16:10",
    )
    parser.add_argument(
        "--p99", default=str(int(P99_MS)), help="p99 objectives in ms, e.g. 50,100,200"
    )
    parser.add_argument(
        "--slow",
        default="none",
        help="conditions, comma list of: none, quota (each model process capped at half a core "
        "by a cgroup), busy (one busy loop per core beside everything)",
    )
    parser.add_argument("--model", default="minilm", choices=sorted(MODELS))
    parser.add_argument("--compare-python", default=sys.executable)
    parser.add_argument(
        "--baseline-src",
        default=None,
        help="a checkout of another commit (git worktree add DIR COMMIT): its server runs "
        "beside this one, alternating, for a regression check",
    )
    parser.add_argument(
        "--skip", default="", help="comma list of: loadgen,raw,ours,litserve,mosec,flood"
    )
    parser.add_argument(
        "--flood-rate",
        type=float,
        default=None,
        help="rate of the header-flood check (default: half the best find-max of this run)",
    )
    parser.add_argument("--out", default="bench/results/serving.json")
    parser.add_argument("--md", default="bench/results/serving.md")
    args = parser.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    objectives = [float(p) for p in args.p99.split(",")]
    conditions = [c for c in args.slow.split(",") if c]
    check_conditions(conditions)
    remove_stale_cgroups()
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    ours_configs = _ours_configs(args.ours)
    theirs_configs = _configs(args.theirs)

    about = MODELS[args.model]
    inputs, output = about["inputs"], about["output"]
    example = build_example(args.model)
    model = str(example.model_path)
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="bench-serving-"))
    npz = _request_inputs(args.model, example, tmp)
    report: dict[str, Any] = {
        "machine": machine_info().to_dict(),
        "load_avg_start": load_avg(),
        "model": args.model,
        "step_s": args.step,
        "repeats": args.repeats,
        "runs": args.runs,
        "tolerance": args.tolerance,
        "p99_objectives_ms": objectives,
        "conditions": conditions,
        "argv": sys.argv[1:],
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    out = pathlib.Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)

    def save() -> None:  # after every measurement: a long run that dies keeps what it measured
        out.write_text(json.dumps(report, indent=2, default=str))

    if "loadgen" not in skip:
        report["loadgen"] = loadgen_capacity(
            [int(r) for r in args.loadgen_rates.split(",")], min(args.step, 15)
        )
    raw: dict[str, list[dict[str, Any]]] = {}
    if "raw" not in skip:
        report["raw"] = []
        batches = [int(b) for b in args.raw_batches.split(",")]
        for cond in conditions:
            raw[cond] = raw_ort(model, str(npz), args.raw_seconds, batches, output, cond, tmp)
            report["raw"] += raw[cond]
            save()
    plain = raw.get("none") or [r for rows in raw.values() for r in rows]
    raw_best = max((r["seq_per_s"] for r in plain), default=250.0)
    report["raw_best_seq_per_s"] = raw_best
    report["ceilings"] = [
        {"p99_ms": p99, "condition": cond, **(slo_ceiling(raw.get(cond, []), p99) or {})}
        for cond in conditions
        for p99 in objectives
    ]

    peers = []
    for kind in ("litserve", "mosec"):
        if kind in skip:
            continue
        if _has(args.compare_python, kind):
            peers.append(kind)
        else:
            log(f"{kind}: not importable by {args.compare_python}; skipped (see the docstring)")
    servers: list[dict[str, Any]] = []
    report["servers"] = servers
    builds = [None, args.baseline_src] if args.baseline_src else [None]
    for cond in conditions:
        for p99 in objectives:
            ceiling = slo_ceiling(raw.get(cond, []), p99)
            start = args.start
            if start is None:
                best = max((r["seq_per_s"] for r in raw.get(cond, [])), default=raw_best)
                start = 0.6 * (ceiling["seq_per_s"] if ceiling else best)
                if about["start_cap"]:
                    start = min(start, about["start_cap"])
            plan: list[tuple[dict[str, Any], Callable[[], dict[str, Any]]]] = []
            if "ours" not in skip:
                for mb, w, reps, thr in ours_configs:
                    for src in builds:
                        what = {
                            "server": "modelscale"
                            if src is None
                            else f"modelscale@{pathlib.Path(src).name}",
                            "replicas_x_threads": f"{reps} x {thr}",
                            "adaptive": mb is None,
                            "setting": "adaptive" if mb is None else f"{mb} / {w:g} ms",
                        }
                        plan.append(
                            (
                                what,
                                functools.partial(
                                    modelscale_findmax,
                                    model,
                                    npz,
                                    mb,
                                    w,
                                    args.step,
                                    start,
                                    args.repeats,
                                    reps,
                                    thr,
                                    src,
                                    args.tolerance,
                                    p99_ms=p99,
                                    slow=cond,
                                    name=args.model,
                                    outputs=(output,),
                                ),
                            )
                        )
            for kind in peers:
                for mb, w, _, _ in theirs_configs:
                    what = {"server": kind, "setting": f"{mb} / {w:g} ms"}
                    plan.append(
                        (
                            what,
                            functools.partial(
                                compare_findmax,
                                kind,
                                args.compare_python,
                                model,
                                npz,
                                mb,
                                w,
                                args.step,
                                start,
                                args.repeats,
                                tmp,
                                p99_ms=p99,
                                tolerance=args.tolerance,
                                slow=cond,
                                inputs=inputs,
                                output=output,
                            ),
                        )
                    )
            for run in range(args.runs):
                # Alternate the order: a machine that slows down over the run then penalises
                # every server alike.
                for what, measure in plan if run % 2 == 0 else plan[::-1]:
                    try:
                        row = measure()
                    except Exception as exc:
                        log(f"{what['server']} {what['setting']} failed: {exc!r}; logs in {tmp}")
                        row = {**what, "max_rps": None, "error": repr(exc), "probes": []}
                    row.update(condition=cond, p99_objective_ms=p99, rep=run, start_rps=start)
                    servers.append(row)
                    save()
    report["summary"] = acceptance_summary(report)
    if "flood" not in skip:
        ours = [
            s["max_rps"]
            for s in servers
            if s["server"] == "modelscale" and s["max_rps"] and s["condition"] == "none"
        ]
        rate = args.flood_rate or (0.5 * max(ours) if ours else None)
        if args.model != "minilm":
            log("flood: MiniLM only; skipped")
        elif rate:
            report["flood"] = [
                header_flood(model, npz, rate, max(args.step, 20), again=again)
                for again in (False, True)
            ]
        else:
            log("flood: no rate (give --flood-rate or let 'ours' run); skipped")
    report["load_avg_end"] = load_avg()
    save()
    pathlib.Path(args.md).write_text(render_md(report, args))
    log(f"wrote {out} and {args.md}")


# -- the acceptance summary -----------------------------------------------------------------------
def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def _aggregate(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """One setting's find-max runs: the median (a run that sustained nothing counts 0) and each."""
    rows = sorted(rows, key=lambda s: s["rep"])
    reps = [s["max_rps"] or 0.0 for s in rows]
    batches = [s.get("mean_batch") for s in rows if s.get("mean_batch") == s.get("mean_batch")]
    waits = [s["mean_wait_ms"] for s in rows if s.get("mean_wait_ms") is not None]
    return {
        "server": rows[0]["server"],
        "setting": rows[0]["setting"],
        "replicas_x_threads": rows[0].get("replicas_x_threads", "2 x 1"),
        "adaptive": rows[0].get("adaptive", False),
        "median": statistics.median(reps),
        "reps": reps,
        "mean_batch": _median([b for b in batches if b is not None]),
        "mean_wait_ms": _median(waits),
    }


def acceptance_summary(r: dict[str, Any]) -> list[dict[str, Any]]:
    """Per (objective, condition): the raw ceiling, modelscale adaptive and fixed 8/5, and each
    peer at its best setting (median over runs per setting, then the highest)."""
    out = []
    for cond in r["conditions"]:
        for p99 in r["p99_objectives_ms"]:
            runs = [
                s
                for s in r.get("servers", [])
                if s["condition"] == cond and s["p99_objective_ms"] == p99 and "error" not in s
            ]
            groups: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
            for s in runs:
                key = (s["server"], s["setting"], s.get("replicas_x_threads", "2 x 1"))
                groups.setdefault(key, []).append(s)
            settings = [_aggregate(rows) for rows in groups.values()]

            def best(
                keep: Callable[[dict[str, Any]], bool], among: list[dict[str, Any]] = settings
            ) -> dict[str, Any] | None:
                return max(filter(keep, among), key=lambda x: x["median"], default=None)

            adaptive = best(lambda x: x["server"] == "modelscale" and x["adaptive"])
            fixed = best(
                lambda x: (
                    x["server"] == "modelscale"
                    and x["setting"] == "8 / 5 ms"
                    and x["replicas_x_threads"] == "2 x 1"
                )
            ) or best(lambda x: x["server"] == "modelscale" and not x["adaptive"])
            peers = {k: best(lambda x, k=k: x["server"] == k) for k in ("mosec", "litserve")}
            ceiling = next(
                (
                    c
                    for c in r.get("ceilings", [])
                    if c["condition"] == cond and c["p99_ms"] == p99 and "seq_per_s" in c
                ),
                None,
            )
            top_peer = max((p["median"] for p in peers.values() if p), default=None)

            def ratio(a: dict[str, Any] | None, b: float | None) -> float | None:
                return a["median"] / b if a and b else None

            out.append(
                {
                    "p99_ms": p99,
                    "condition": cond,
                    "ceiling": ceiling,
                    "adaptive": adaptive,
                    "fixed": fixed,
                    **peers,
                    "adaptive_of_ceiling": ratio(adaptive, ceiling and ceiling["seq_per_s"]),
                    "fixed_of_ceiling": ratio(fixed, ceiling and ceiling["seq_per_s"]),
                    "adaptive_vs_best_peer": ratio(adaptive, top_peer),
                    "adaptive_vs_fixed": ratio(adaptive, fixed and fixed["median"]),
                }
            )
    return out


def _fmt_setting(x: dict[str, Any] | None, label: bool = True) -> str:
    if x is None:
        return "-"
    reps = ", ".join(f"{v:.0f}" for v in x["reps"])
    head = f"{x['setting']}: " if label else ""
    return f"{head}**{x['median']:.0f}** ({reps})"


def _fmt(v: float | None, spec: str, unit: str = "") -> str:
    return "n/a" if v is None or v != v else format(v, spec) + unit


def render_md(r: dict[str, Any], args: argparse.Namespace) -> str:
    m = r["machine"]
    what = (
        "MiniLM (all-MiniLM-L6-v2) fp32 ONNX, seq 32, one sequence per request"
        if r.get("model", "minilm") == "minilm"
        else f"{r['model']} ONNX, one row per request"
    )
    objectives = ", ".join(f"{p:g}" for p in r.get("p99_objectives_ms", [P99_MS]))
    lines = [
        "## serve and load",
        "",
        f"Measured {r['started']} on {m.get('cpu_model', '?')}, {m.get('logical_cores', m.get('cores', '?'))} "
        f"logical cores; load average {r['load_avg_start']} at the start, {r['load_avg_end']} at the end "
        f"(the benchmark's own load included). {what}; find-max probes of {r['step_s']:g} s, open-loop "
        f"Poisson, p99 <= P ms (P: {objectives}) and < 1% errors, bisected to {r.get('tolerance', 0.05):.0%}, "
        f"from this process on the same box; {r['runs']} alternating run(s) per setting; conditions: "
        f"{', '.join(r.get('conditions', ['none']))}.",
        "",
        "Reproduce: `.venv/bin/python bench/serving.py " + " ".join(sys.argv[1:]) + "`",
        "",
    ]
    summary = r.get("summary") or []
    if any(s["adaptive"] or s["fixed"] or s.get("mosec") or s.get("litserve") for s in summary):
        lines += [
            "### Acceptance summary (req/s: median **bold**, every run in brackets)",
            "",
            "| p99 <= | condition | raw ceiling seq/s (split, batch, batch ms) | modelscale adaptive "
            "| % of ceiling (>= 80%) | mean batch / wait ms | best Mosec | best LitServe "
            "| adaptive / best peer (>= 1.3x) | fixed 8/5 | % of ceiling | adaptive / fixed |",
            "| ---: | --- | --- | --- | ---: | --- | --- | --- | ---: | --- | ---: | ---: |",
        ]
        for s in summary:
            a = s["adaptive"]
            lines.append(
                f"| {s['p99_ms']:g} ms | {s['condition']} "
                f"| {_ceiling_text(s['ceiling']) if r.get('raw') else 'not measured'} "
                f"| {_fmt_setting(a, label=False)} | {_fmt(s['adaptive_of_ceiling'], '.0%')} "
                f"| {_fmt(a and a['mean_batch'], '.1f')} / {_fmt(a and a['mean_wait_ms'], '.1f')} "
                f"| {_fmt_setting(s.get('mosec'))} | {_fmt_setting(s.get('litserve'))} "
                f"| {_fmt(s['adaptive_vs_best_peer'], '.2f', 'x')} "
                f"| {_fmt_setting(s['fixed'], label=s['fixed'] is not None and s['fixed']['setting'] != '8 / 5 ms')} "
                f"| {_fmt(s['fixed_of_ceiling'], '.0%')} | {_fmt(s['adaptive_vs_fixed'], '.2f', 'x')} |"
            )
        lines += [
            "",
            "Raw ceiling: the highest raw onnxruntime rate among the (split, batch) whose median "
            "batch time is <= P/2, under the same condition. Peers: each at its best setting "
            "(median over runs per setting, then the highest). Mean batch / wait: medians over the "
            "runs of each run's mean from /metrics (n/a: not exported).",
            "",
        ]
    if "loadgen" in r:
        lines += [
            "### Load generator alone (trivial endpoint, target >= 5,000 req/s)",
            "",
            "| offered req/s | achieved req/s | p50 ms | p99 ms | errors | sent late | sustained |",
            "| ---: | ---: | ---: | ---: | ---: | ---: | --- |",
        ]
        for x in r["loadgen"]:
            lines.append(
                f"| {x['offered_rps']:,} | {x['achieved_rps']:,.0f} | {x['p50_ms']:.2f} | {x['p99_ms']:.2f} "
                f"| {x['errors']} | {x['late_share']:.2%} | {'yes' if x['sustained'] else 'no'} |"
            )
        lines.append("")
    if r.get("raw"):
        batches = sorted({x["batch"] for x in r["raw"]})
        lines += [
            "### Raw onnxruntime, 2 threads in total (seq/s, and median ms of one batch)",
            "",
            "| condition | processes x threads | "
            + " | ".join(f"batch {b}" if i == 0 else str(b) for i, b in enumerate(batches))
            + " |",
            "| --- | --- |" + " ---: |" * len(batches),
        ]
        for cond in r.get("conditions", ["none"]):
            for procs, threads in SPLITS:
                cells = {
                    x["batch"]: f"{x['seq_per_s']:.0f} ({x['batch_ms']:.1f} ms)"
                    for x in r["raw"]
                    if x.get("condition", "none") == cond
                    and x["processes"] == procs
                    and x["threads"] == threads
                }
                if cells:
                    lines.append(
                        f"| {cond} | {procs} x {threads} | "
                        + " | ".join(cells.get(b, "-") for b in batches)
                        + " |"
                    )
        lines += ["", f"Best: {r['raw_best_seq_per_s']:.0f} seq/s. SLO-feasible ceilings:", ""]
        for c in r.get("ceilings", []):
            ceiling = c if "seq_per_s" in c else None
            lines.append(f"- p99 <= {c['p99_ms']:g} ms, {c['condition']}: {_ceiling_text(ceiling)}")
        lines.append("")
    if r.get("servers"):
        ceilings = {
            (c["condition"], c["p99_ms"]): c.get("seq_per_s") for c in r.get("ceilings", [])
        }
        lines += [
            "### Every find-max run",
            "",
            "| condition | p99 <= | run | server | replicas x threads | max batch / wait | max req/s "
            "| % of ceiling | mean batch | mean wait ms | probes (rate: p99 ms) |",
            "| --- | ---: | ---: | --- | --- | --- | ---: | ---: | ---: | ---: | --- |",
        ]
        for s in r["servers"]:
            best = s["max_rps"]
            ceiling = ceilings.get((s["condition"], s["p99_objective_ms"]))  # None: raw skipped
            probes = ", ".join(
                f"{p['rate']:.0f}{'' if p['passed'] else 'x'}: {p['p99_ms']:.0f}"
                for p in s["probes"]
            )
            if "error" in s:
                probes = f"failed: {s['error'][:120]}"
            head = (
                f"| {s['condition']} | {s['p99_objective_ms']:g} | {s['rep'] + 1} | {s['server']} "
                f"| {s.get('replicas_x_threads', '2 x 1')} | {s['setting']} |"
            )
            lines.append(
                f"{head} {best:.0f} | {_fmt(ceiling and best / ceiling, '.0%')} "
                f"| {_fmt(s.get('mean_batch'), '.1f')} "
                f"| {_fmt(s.get('mean_wait_ms'), '.1f')} | {probes} |"
                if best
                else f"{head} none | - | - | - | {probes} |"
            )
        lines += ["", "(x = probe failed.)", ""]
    for f in r.get("flood", []):
        how = "each reconnecting at once after a refusal" if f["again"] else "one header each"
        lines += [
            f"### Header flood ({f['clients']} clients sending {f['header_mb']} MB headers, {how})",
            "",
            f"Fixed rate {f['rate']:.0f} req/s for {f['seconds']:g} s, quiet, then beside the "
            f"flood: p99 {f['quiet_p99_ms']:.1f} ms -> {f['flooded_p99_ms']:.1f} ms "
            f"({f['ratio']:.2f}x; target <= 2x); achieved {f['quiet_achieved']:.0f} -> "
            f"{f['flooded_achieved']:.0f} req/s, errors {f['flooded_errors'] or 'none'}. The "
            f"flood sent {f['flood_bytes_sent'] / 2**20:.0f} MiB and got {f['flood_answers']}; "
            f"front RSS {f['front_rss_mb_before']:.0f} -> {f['front_rss_mb_after']:.0f} MiB. "
            "Cores used during the flood: "
            + ", ".join(f"{k} {v:.2f}" for k, v in f["cores_during_flood"].items())
            + ".",
            "",
        ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
