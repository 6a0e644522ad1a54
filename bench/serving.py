"""Acceptance figures of `modelscale serve` and `modelscale load` on MiniLM fp32, seq 32.

1. The load generator alone against the trivial endpoint (target: sustains >= 5,000 req/s).
2. Raw onnxruntime best-batch throughput with 2 threads in total (2 processes x 1 thread and
   1 process x 2 threads; batches 1-32), measured in this run.
3. The server's highest sustained rate with p99 <= 100 ms (open-loop Poisson, find-max), for each
   batching setting given; target: best >= 85% of (2).
4. The same search against LitServe and Mosec serving the same model the same way (2 workers x
   1 thread, ONNX Runtime), if a Python with them is available (--compare-python); they are not
   modelscale dependencies: python -m venv /tmp/cmp && /tmp/cmp/bin/pip install litserve mosec
   onnxruntime numpy.

Every server answers one sequence per request with its 384-float sentence embedding as JSON, and is
loaded by the same open-loop generator from this process, on the same box.

Run: .venv/bin/python bench/serving.py [--step 30] [--runs 2] [--compare-python /tmp/cmp/bin/python]
     [--out bench/results/serving.json] [--md bench/results/serving.md]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.request
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


def log(*args: object) -> None:
    print(*args, file=sys.stderr, flush=True)


def load_avg() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


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
    path, npz, threads, batch, secs = sys.argv[1:6]
    threads, batch, secs = int(threads), int(batch), float(secs)
    d = np.load(npz)
    so = ort.SessionOptions(); so.intra_op_num_threads = threads; so.inter_op_num_threads = 1
    s = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    rows = len(d["input_ids"])
    feeds = [{k: d[k][i:i + batch] for k in d.files} for i in range(0, rows - batch + 1, batch)][:64]
    for f in feeds[:3]: s.run(["sentence_embedding"], f)
    print("ready", flush=True); sys.stdin.readline()  # every process loaded before any times
    n = 0; t0 = time.perf_counter(); i = 0
    while time.perf_counter() - t0 < secs:
        s.run(["sentence_embedding"], feeds[i % len(feeds)]); n += batch; i += 1
    print(n / (time.perf_counter() - t0))
    """
)


def raw_ort(model: str, npz: str, seconds: float) -> list[dict[str, Any]]:
    out = []
    for procs, threads in ((2, 1), (1, 2)):
        for batch in (1, 4, 8, 16, 32):
            ps = [
                subprocess.Popen(
                    [sys.executable, "-c", RAW, model, npz, str(threads), str(batch), str(seconds)],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    env={**os.environ, "OMP_NUM_THREADS": str(threads)},
                    text=True,
                )
                for _ in range(procs)
            ]
            for p in ps:
                assert p.stdout is not None and p.stdout.readline().strip() == "ready"
            for p in ps:
                assert p.stdin is not None
                p.stdin.write("go\n")
                p.stdin.flush()
            total = sum(float(p.communicate()[0]) for p in ps)
            log(f"raw ORT {procs} proc x {threads} thr, batch {batch}: {total:.1f} seq/s")
            out.append({"processes": procs, "threads": threads, "batch": batch, "seq_per_s": total})
    return out


# -- 3. modelscale --------------------------------------------------------------------------------
def modelscale_findmax(
    model: str,
    npz: pathlib.Path,
    max_batch: int,
    wait_ms: float,
    step: float,
    start: float,
    repeats: int,
    replicas: int = 2,
    threads: int = 1,
    src: str | None = None,
    tolerance: float = 0.05,
) -> dict[str, Any]:
    """Find-max of ``modelscale serve``; with ``src``, of the build in that source tree instead."""
    spec = DeploymentSpec.single(
        model,
        name="minilm",
        replicas=replicas,
        threads=threads,
        max_batch=max_batch,
        max_wait_ms=wait_ms,
        max_queue=4096,
    )
    env = {"PYTHONPATH": str(pathlib.Path(src) / "src")} if src else None
    with start_server(spec, env=env) as server:
        r = run_load(
            server.url,
            model="minilm",
            options=LoadOptions(
                find_max=True,
                rate=start,
                duration_s=step,
                inputs=npz,
                outputs=("sentence_embedding",),
                p99_ms=P99_MS,
                repeats=repeats,
                tolerance=tolerance,
                warmup_s=3,
            ),
        )
        metrics = urllib.request.urlopen(f"{server.url}/metrics").read().decode()
    sizes = {
        ln.split()[0]: float(ln.split()[1])
        for ln in metrics.splitlines()
        if ln.startswith(("modelscale_batch_size_sum", "modelscale_batch_size_count"))
    }
    vals = list(sizes.values())
    mean_batch = vals[1] / vals[0] if len(vals) == 2 and vals[0] else float("nan")
    name = "modelscale" if src is None else f"modelscale@{pathlib.Path(src).name}"
    log(f"{name} {replicas}x{threads} batch {max_batch}/{wait_ms} ms: {r.summary} ({load_avg()})")
    return {
        "server": name,
        "replicas_x_threads": f"{replicas} x {threads}",
        "max_batch": max_batch,
        "wait_ms": wait_ms,
        "max_rps": r.max_rate_rps,
        "mean_batch": mean_batch,
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
LITSERVE = textwrap.dedent(
    """
    import sys, numpy as np, onnxruntime as ort, litserve as ls
    PATH, PORT, MB, WAIT_MS = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
    KEYS = ("input_ids", "attention_mask", "token_type_ids")

    class Embed(ls.LitAPI):
        def setup(self, device):
            so = ort.SessionOptions(); so.intra_op_num_threads = 1; so.inter_op_num_threads = 1
            self.sess = ort.InferenceSession(PATH, so, providers=["CPUExecutionProvider"])
        def decode_request(self, request):
            return {k: np.asarray(request[k], dtype=np.int64) for k in KEYS}
        def batch(self, inputs):
            return {k: np.stack([x[k] for x in inputs]) for k in KEYS}
        def predict(self, x):
            if x["input_ids"].ndim == 1:
                x = {k: v[None] for k, v in x.items()}
            return self.sess.run(["sentence_embedding"], x)[0]
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
    KEYS = ("input_ids", "attention_mask", "token_type_ids")

    class Embed(Worker):
        def __init__(self):
            super().__init__()
            so = ort.SessionOptions(); so.intra_op_num_threads = 1; so.inter_op_num_threads = 1
            self.sess = ort.InferenceSession(PATH, so, providers=["CPUExecutionProvider"])
        def forward(self, data):
            items = data if MB > 1 else [data]
            feeds = {k: np.asarray([d[k] for d in items], dtype=np.int64) for k in KEYS}
            out = self.sess.run(["sentence_embedding"], feeds)[0]
            res = [{"embedding": row.tolist()} for row in out]
            return res if MB > 1 else res[0]

    if __name__ == "__main__":
        server = Server()
        server.append_worker(Embed, num=2, max_batch_size=MB, max_wait_time=WAIT)
        server.run()
    """
)


def _free_port() -> int:
    sock = bind_socket("127.0.0.1", 0)
    port = sock.getsockname()[1]
    sock.close()
    return port


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
) -> dict[str, Any]:
    port = _free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    if kind == "litserve":
        script, path = tmp / "lit.py", "/predict"
        script.write_text(LITSERVE)
        cmd = [python, str(script), model, str(port), str(max_batch), str(wait_ms)]
    else:
        script, path = tmp / "mosec_server.py", "/inference"
        script.write_text(MOSEC)
        cmd = [python, str(script), "--port", str(port), "--address", "127.0.0.1"]
        env.update(B_MODEL=model, B_MB=str(max_batch), B_WAIT=str(int(wait_ms)))
    d = np.load(npz)
    bodies = [json.dumps({k: d[k][i].tolist() for k in KEYS}).encode() for i in range(256)]
    reqs = [
        build_request("POST", "127.0.0.1", port, path, b, {"Content-Type": "application/json"})
        for b in bodies
    ]
    proc = subprocess.Popen(
        cmd, env=env, stdout=subprocess.DEVNULL, stderr=tmp.joinpath(f"{kind}.log").open("wb")
    )
    children: list[psutil.Process] = []
    try:
        _wait_answering(port, path, bodies[0], proc)
        children = psutil.Process(proc.pid).children(recursive=True)
        shooter = Shooter("127.0.0.1", port, reqs, max_connections=256)
        with asyncio.Runner() as runner:
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
                measure, start_rps=start, p99_ms=P99_MS, repeats=repeats, tolerance=0.05
            )
            runner.run(shooter.aclose())
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
    log(f"{kind} batch {max_batch}/{wait_ms} ms: max {best}")
    return {
        "server": kind,
        "max_batch": max_batch,
        "wait_ms": wait_ms,
        "max_rps": best,
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--step", type=float, default=30.0, help="seconds per find-max probe")
    parser.add_argument("--repeats", type=int, default=1, help="windows per probe (all must pass)")
    parser.add_argument("--runs", type=int, default=1, help="find-max runs per server setting")
    parser.add_argument(
        "--tolerance", type=float, default=0.05, help="find-max bisects to this relative bracket"
    )
    parser.add_argument("--start", type=float, default=None, help="find-max start rate (req/s)")
    parser.add_argument("--raw-seconds", type=float, default=15.0)
    parser.add_argument("--loadgen-rates", default="5000,10000,20000")
    parser.add_argument("--ours", default="8:2,4:2", help="modelscale max_batch:max_wait_ms list")
    parser.add_argument(
        "--theirs", default="8:5,4:5", help="LitServe/Mosec max_batch:max_wait_ms list"
    )
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

    example = build_example("minilm")
    model = str(example.model_path)
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="bench-serving-"))
    sample = np.load(example.model_path.parent / "minilm_sample.npz")
    npz = tmp / f"minilm_seq{SEQ}.npz"
    np.savez(npz, **{k: sample[k][:, :SEQ] for k in KEYS})
    report: dict[str, Any] = {
        "machine": machine_info().to_dict(),
        "load_avg_start": load_avg(),
        "step_s": args.step,
        "repeats": args.repeats,
        "runs": args.runs,
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    if "loadgen" not in skip:
        report["loadgen"] = loadgen_capacity(
            [int(r) for r in args.loadgen_rates.split(",")], min(args.step, 15)
        )
    if "raw" not in skip:
        report["raw"] = raw_ort(model, str(npz), args.raw_seconds)
    raw_best = max((r["seq_per_s"] for r in report.get("raw", [])), default=250.0)
    start = args.start or 0.6 * raw_best
    servers: list[dict[str, Any]] = []
    if "ours" not in skip:
        for mb, w, reps, thr in _configs(args.ours):
            for run in range(args.runs):
                # Alternate which goes first: a machine that slows down over the run then
                # penalises both builds alike.
                builds = [None, args.baseline_src] if args.baseline_src else [None]
                for src in builds if run % 2 == 0 else builds[::-1]:
                    servers.append(
                        modelscale_findmax(
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
                        )
                    )
    for kind, module in (("litserve", "litserve"), ("mosec", "mosec")):
        if kind in skip:
            continue
        if not _has(args.compare_python, module):
            log(f"{kind}: not importable by {args.compare_python}; skipped (see the docstring)")
            continue
        for mb, w, _, _ in _configs(args.theirs):
            for _ in range(args.runs):
                try:
                    servers.append(
                        compare_findmax(
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
                        )
                    )
                except RuntimeError as exc:
                    log(f"{kind} failed: {exc}; log in {tmp}")
    report["servers"] = servers
    if "flood" not in skip:
        ours = [s["max_rps"] for s in servers if s["server"] == "modelscale" and s["max_rps"]]
        rate = args.flood_rate or (0.5 * max(ours) if ours else None)
        if rate:
            report["flood"] = [
                header_flood(model, npz, rate, max(args.step, 20), again=again)
                for again in (False, True)
            ]
        else:
            log("flood: no rate (give --flood-rate or let 'ours' run); skipped")
    report["raw_best_seq_per_s"] = raw_best
    report["load_avg_end"] = load_avg()
    out = pathlib.Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, default=str))
    pathlib.Path(args.md).write_text(render_md(report, args))
    log(f"wrote {out} and {args.md}")


def render_md(r: dict[str, Any], args: argparse.Namespace) -> str:
    m = r["machine"]
    lines = [
        "## serve and load",
        "",
        f"Measured {r['started']} on {m.get('cpu_model', '?')}, {m.get('logical_cores', m.get('cores', '?'))} "
        f"logical cores; load average {r['load_avg_start']} at the start, {r['load_avg_end']} at the end "
        "(the benchmark's own load included). MiniLM (all-MiniLM-L6-v2) fp32 ONNX, seq 32, one "
        f"sequence per request; find-max probes of {r['step_s']:g} s, open-loop Poisson, p99 <= {P99_MS:g} ms "
        "and < 1% errors, bisected to 5%, from this process on the same box.",
        "",
        "Reproduce: `.venv/bin/python bench/serving.py " + " ".join(sys.argv[1:]) + "`",
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
    if "raw" in r:
        lines += [
            "### Raw onnxruntime, 2 threads in total (seq/s)",
            "",
            "| processes x threads | batch 1 | 4 | 8 | 16 | 32 |",
            "| --- | ---: | ---: | ---: | ---: | ---: |",
        ]
        for procs, threads in ((2, 1), (1, 2)):
            vals = [
                x["seq_per_s"]
                for x in r["raw"]
                if x["processes"] == procs and x["threads"] == threads
            ]
            lines.append(f"| {procs} x {threads} | " + " | ".join(f"{v:.0f}" for v in vals) + " |")
        lines += ["", f"Best: {r['raw_best_seq_per_s']:.0f} seq/s.", ""]
    if r.get("servers"):
        raw = r["raw_best_seq_per_s"]
        lines += [
            "### Highest rate with p99 <= 100 ms",
            "",
            "| server | replicas x threads | max batch / wait | max req/s | % of raw best | mean batch | probes (rate: p99 ms) |",
            "| --- | --- | --- | ---: | ---: | ---: | --- |",
        ]
        for s in r["servers"]:
            best = s["max_rps"]
            probes = ", ".join(
                f"{p['rate']:.0f}{'' if p['passed'] else 'x'}: {p['p99_ms']:.0f}"
                for p in s["probes"]
            )
            rxt = s.get("replicas_x_threads", "2 x 1")
            lines.append(
                f"| {s['server']} | {rxt} | {s['max_batch']} / {s['wait_ms']:g} ms | "
                f"{best:.0f} | {best / raw:.0%} | {s.get('mean_batch', float('nan')):.1f} | {probes} |"
                if best
                else f"| {s['server']} | {rxt} | {s['max_batch']} / {s['wait_ms']:g} ms | none | - | - | {probes} |"
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
