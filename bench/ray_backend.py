"""The Ray backend beside the local one: the highest rate at the p99 bound, and where the CPU goes.

Two models in the same configuration for every way of serving them (2 replicas x 1 thread; digits
batch 16 / 2 ms at p99 <= 50 ms, MiniLM fp32 seq 32 batch 8 / 2 ms at p99 <= 100 ms), one after
another on this machine:

    local         modelscale serve: replica processes
    ray           modelscale serve --backend ray: the front here, replicas as Ray Serve deployments
    ray-ingress   serve run on the Ray config plan --emit ray writes: Ray's HTTP proxy hands every
                  request to the front, which is the application's ingress deployment
    ray-haproxy   the same config with RAY_SERVE_ENABLE_HA_PROXY=1 where Ray starts: HAProxy
                  forwards requests to the front replica's own HTTP server (no Python proxy)
    ray-before    (with --baseline-src DIR, a checkout of an earlier commit) that build's Ray
                  application under serve run: Ray's proxy handing each request to a model
                  replica that batched with @serve.batch, as its plan --emit ray configured it

For each: the highest rate with p99 <= the bound and < 1% errors (open-loop Poisson, find-max,
bisected to 5%), then one window at a fixed rate (half the local maximum) in which the CPU time of
every process on the machine is metered and charged per request: the front, the proxy, the
replicas, Ray's controller and daemons, and the load generator (this process).

Run: .venv/bin/python bench/ray_backend.py [--step 15] [--models digits,minilm]
     [--kinds local,ray,ray-ingress,ray-haproxy] [--out bench/results/ray_backend.json]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import pathlib
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import psutil
import yaml

from modelscale.config import DeploymentSpec
from modelscale.examples import build_example
from modelscale.loadgen import LoadOptions, run_load
from modelscale.machine import machine_info
from modelscale.model import ModelArtifact
from modelscale.serve import start_server

KINDS = ("local", "ray", "ray-ingress", "ray-haproxy")
RAY_ENV = {"RAY_USAGE_STATS_ENABLED": "0", "RAY_DEDUP_LOGS": "0"}


@dataclass(frozen=True)
class Case:
    name: str
    model: str
    inputs: pathlib.Path
    outputs: tuple[str, ...]
    p99_ms: float
    max_batch: int
    wait_ms: float
    start_rps: float


def log(*args: object) -> None:
    print(*args, file=sys.stderr, flush=True)


def load_avg() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def cases(names: list[str], tmp: pathlib.Path) -> list[Case]:
    out = []
    if "digits" in names:
        ex = build_example("digits")
        data = np.load(ex.eval_path)
        inputs = [t.name for t in ModelArtifact.load(ex.model_path).signature.inputs]
        npz = tmp / "digits.npz"
        np.savez(npz, **{n: data[n][:256] for n in inputs})
        out.append(Case("digits", str(ex.model_path), npz, (), 50.0, 16, 2.0, 1500.0))
    if "minilm" in names:
        ex = build_example("minilm")
        sample = np.load(ex.model_path.parent / "minilm_sample.npz")
        npz = tmp / "minilm_seq32.npz"
        keys = ("input_ids", "attention_mask", "token_type_ids")
        np.savez(npz, **{k: sample[k][:, :32] for k in keys})
        out.append(
            Case("minilm", str(ex.model_path), npz, ("sentence_embedding",), 100.0, 8, 2.0, 150.0)
        )
    return out


DEPTH = 1
"""ray.max_ongoing_batches (--depth)."""


def spec_of(case: Case, kind: str) -> DeploymentSpec:
    return DeploymentSpec.from_dict(
        {
            "models": {
                case.name: {
                    "versions": {"1": {"path": case.model}},
                    "batching": {
                        "max_batch": case.max_batch,
                        "max_wait_ms": case.wait_ms,
                        "max_queue": 4096,
                    },
                    "replicas": 2,
                    "threads": 1,
                }
            },
            "backend": "ray" if kind == "ray" else "local",
            "ray": {"max_ongoing_batches": DEPTH},
        }
    )


def _wait_ready(url: str, proc: subprocess.Popen[bytes] | None, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"the server exited with {proc.returncode}")
        with contextlib.suppress(OSError), urllib.request.urlopen(url + "/v2/health/ready") as r:
            if r.status == 200:
                return
        time.sleep(0.5)
    raise RuntimeError("the server was never ready")


BASELINE_SRC: str | None = None
"""--baseline-src: the build 'ray-before' runs."""


def _before_config(case: Case, port: int) -> dict[str, Any]:
    """The Ray config the earlier build's plan --emit ray wrote for this configuration."""
    return {
        "proxy_location": "EveryNode",
        "http_options": {"host": "127.0.0.1", "port": port},
        "applications": [
            {
                "name": case.name,
                "route_prefix": "/",
                "import_path": "modelscale.serve.ray_app:build_app",
                "args": {"model_path": case.model, "name": case.name, "threads": 1},
                "deployments": [
                    {
                        "name": "Model",
                        "num_replicas": 2,
                        "max_ongoing_requests": 2 * case.max_batch,
                        "ray_actor_options": {"num_cpus": 1},
                        "max_queued_requests": 4096,
                        "backpressure_config": {"status_code": 503, "retry_after_s": 1},
                        "user_config": {
                            "max_batch_size": case.max_batch,
                            "batch_wait_timeout_s": case.wait_ms / 1000.0,
                            "intra_op_threads": 1,
                        },
                    }
                ],
            }
        ],
    }


@contextlib.contextmanager
def served(case: Case, kind: str, tmp: pathlib.Path) -> Iterator[str]:
    """The URL of ``case`` served the ``kind`` way; everything started is stopped after."""
    spec = spec_of(case, kind)
    if kind in ("local", "ray"):
        server = start_server(spec, wait=False)
        try:
            _wait_ready(server.url, server.proc)
            yield server.url
        finally:
            tree = psutil.Process(server.pid).children(recursive=True) if server.pid else []
            server.stop(timeout_s=60)
            server.close()
            _kill(tree)
        return
    port = 8000 + os.getpid() % 1000
    config = tmp / f"{case.name}-{kind}.yaml"
    if kind == "ray-before":
        if BASELINE_SRC is None:
            raise RuntimeError("ray-before needs --baseline-src")
        data = _before_config(case, port)
    else:
        data = spec.ray_config(app_name=case.name, host="127.0.0.1", port=port)
    config.write_text(yaml.safe_dump(data))
    env = {**os.environ, **RAY_ENV}
    if kind == "ray-haproxy":
        env["RAY_SERVE_ENABLE_HA_PROXY"] = "1"
    if kind == "ray-before":
        env["PYTHONPATH"] = str(pathlib.Path(str(BASELINE_SRC)) / "src")
    serve_cli = pathlib.Path(sys.executable).parent / "serve"
    with (tmp / f"{case.name}-{kind}.log").open("wb") as out:
        proc = subprocess.Popen(
            [str(serve_cli), "run", str(config)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        _wait_ready(f"http://127.0.0.1:{port}", proc)
        yield f"http://127.0.0.1:{port}"
    finally:
        tree = psutil.Process(proc.pid).children(recursive=True)
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
        _kill(tree)


def _kill(tree: list[psutil.Process]) -> None:
    for p in tree:
        with contextlib.suppress(psutil.Error):
            p.kill()
    psutil.wait_procs(tree, timeout=30)


def _part(proc: psutil.Process) -> str:
    """Which part of the serving stack a process is."""
    try:
        cmd = " ".join(proc.cmdline())
        name = proc.name()
    except psutil.Error:
        return "gone"
    if proc.pid == os.getpid():
        return "load generator"
    if "ServeReplica" in cmd:  # ray::ServeReplica:<app>:<deployment>
        return "front" if cmd.split()[0].endswith(":Front") else "replicas"
    if "modelscale.serve.replica" in cmd:
        return "replicas"
    if "modelscale.serve" in cmd:
        return "front"
    if "ProxyActor" in cmd or "haproxy" in name or "HAProxyManager" in cmd:
        return "proxy"
    if "ServeController" in cmd:
        return "ray controller"
    if any(k in cmd for k in ("raylet", "gcs_server", "ray/", "ray::", "dashboard")):
        return "ray daemons"
    return "other"


def _cpu() -> dict[int, tuple[str, float]]:
    out = {}
    for p in psutil.process_iter():
        with contextlib.suppress(psutil.Error):
            t = p.cpu_times()
            out[p.pid] = (_part(p), t.user + t.system)
    return out


def cpu_window(url: str, case: Case, rate: float, seconds: float) -> dict[str, Any]:
    """CPU ms per request by part while serving ``rate`` for ``seconds``."""
    before = _cpu()
    t0 = time.monotonic()
    r = run_load(
        url,
        model=case.name,
        options=LoadOptions(
            rate=rate, duration_s=seconds, inputs=case.inputs, outputs=case.outputs, warmup_s=0
        ),
    )
    wall = time.monotonic() - t0
    after = _cpu()
    by_part: dict[str, float] = {}
    for pid, (part, t) in after.items():
        start = before.get(pid, (part, 0.0))[1]
        by_part[part] = by_part.get(part, 0.0) + max(0.0, t - start)
    sent = max(r.overall.sent, 1)
    return {
        "rate": rate,
        "achieved_rps": r.overall.achieved_rps,
        "p99_ms": r.overall.p99_ms,
        "errors": sum(r.overall.errors.values()),
        "cores_busy": sum(by_part.values()) / wall,
        "cpu_ms_per_request": {k: 1000.0 * v / sent for k, v in sorted(by_part.items())},
        "batches": _batches(url, case.name),
    }


def _batches(url: str, model: str) -> dict[str, float]:
    try:
        text = urllib.request.urlopen(url + "/metrics").read().decode()
    except OSError:  # a server without /metrics (the earlier Ray application)
        return {"mean_batch": float("nan"), "roundtrip_ms": float("nan")}
    vals: dict[str, float] = {}
    for line in text.splitlines():
        for key in ("batch_size_sum", "batch_size_count", "batch_roundtrip_seconds_sum"):
            if line.startswith(f"modelscale_{key}{{") and f'model="{model}"' in line:
                vals[key] = float(line.split()[-1])
    count = vals.get("batch_size_count", 0.0) or 1.0
    return {
        "mean_batch": vals.get("batch_size_sum", 0.0) / count,
        "roundtrip_ms": 1000.0 * vals.get("batch_roundtrip_seconds_sum", 0.0) / count,
    }


def find_max(url: str, case: Case, start: float, step: float) -> dict[str, Any]:
    r = run_load(
        url,
        model=case.name,
        options=LoadOptions(
            find_max=True,
            rate=start,
            duration_s=step,
            inputs=case.inputs,
            outputs=case.outputs,
            p99_ms=case.p99_ms,
            tolerance=0.05,
            warmup_s=3,
        ),
    )
    return {
        "max_rps": r.max_rate_rps,
        "probes": [
            {"rate": w["rate_rps"], "passed": w["passed"], "p99_ms": w["stats"].p99_ms}
            for w in r.windows
        ],
    }


def main() -> None:
    global DEPTH, BASELINE_SRC
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--step", type=float, default=15.0, help="seconds per find-max probe")
    parser.add_argument("--cpu-seconds", type=float, default=15.0)
    parser.add_argument("--models", default="digits,minilm")
    parser.add_argument("--kinds", default=",".join(KINDS))
    parser.add_argument("--out", default="bench/results/ray_backend.json")
    parser.add_argument("--depth", type=int, default=1, help="ray.max_ongoing_batches")
    parser.add_argument("--baseline-src", default=None, help="the build 'ray-before' runs")
    parser.add_argument(
        "--local-max", type=float, default=None, help="skip 'local': its max rate, measured before"
    )
    args = parser.parse_args()
    DEPTH = args.depth
    BASELINE_SRC = args.baseline_src
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="bench-ray-"))
    report: dict[str, Any] = {
        "machine": machine_info().to_dict(),
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        "load_avg_start": load_avg(),
        "step_s": args.step,
        "max_ongoing_batches": args.depth,
        "results": [],
    }
    kinds = args.kinds.split(",")
    for case in cases(args.models.split(","), tmp):
        local_max: float | None = args.local_max
        for kind in kinds:
            log(f"{case.name} {kind}: starting ({load_avg()})")
            start = case.start_rps if local_max is None else max(20.0, 0.3 * local_max)
            try:
                with served(case, kind, tmp) as url:
                    found = find_max(url, case, start, args.step)
                    if kind == "local":
                        local_max = found["max_rps"]
                    rate = 0.5 * (local_max or found["max_rps"] or start)
                    if found["max_rps"]:
                        rate = min(rate, 0.9 * found["max_rps"])
                    cpu = cpu_window(url, case, rate, args.cpu_seconds)
            except RuntimeError as exc:
                log(f"{case.name} {kind}: failed: {exc} (logs in {tmp})")
                report["results"].append({"model": case.name, "kind": kind, "error": str(exc)})
                continue
            row = {"model": case.name, "kind": kind, "p99_ms": case.p99_ms, **found, "cpu": cpu}
            report["results"].append(row)
            share = (found["max_rps"] or 0) / local_max if local_max else None
            log(
                f"{case.name} {kind}: max {found['max_rps']} req/s"
                + (f" ({share:.1%} of local)" if share is not None else "")
                + f"; at {rate:.0f} req/s CPU ms/request {cpu['cpu_ms_per_request']}"
                f" mean batch {cpu['batches']['mean_batch']:.1f}"
            )
    report["load_avg_end"] = load_avg()
    out = pathlib.Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, default=str))
    log(f"wrote {out}")


if __name__ == "__main__":
    main()
