"""Where the cores go while the server runs MiniLM: the front, the replicas, the load generator.

The serving acceptance figures compare the server with raw ONNX Runtime, whose processes have the
machine to themselves. In the server the replicas share it with the front (HTTP, decoding, the
batcher) and, in these benchmarks, with the load generator. This measures what that costs the
replicas on this machine, at a few request rates under one server setting:

1. raw: two single-thread ONNX Runtime processes side by side (as the raw ceiling is measured) run
   MiniLM fp32 seq 32 at batch 1 to 4; the median time of one batch of each size;
2. served: ``modelscale serve`` on 2 replicas x 1 thread under open-loop Poisson load, each rate
   for ``--seconds``; the CPU of the front, of the replicas and of this process (the load
   generator) in cores, the whole machine's busy cores, and from /metrics the mean batch and the
   replicas' own time per batch (``session.run`` in the replica);
3. the slowdown: the replicas' time per batch in the server over raw's at the same mean batch
   (raw's line through batch 1 to 4, which is straight to within a few percent).

    .venv/bin/python bench/server_share.py [--rates 60,115,300] [--seconds 20] [--setting slo]

``--setting slo`` serves with ``--p99-ms 100`` and no batch settings; ``B:W`` with max batch B and
max wait W ms. Run it on a quiet machine: another process's CPU reads as the server's slowdown.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import tempfile
import time
from typing import Any

import numpy as np
import psutil

from modelscale.config import DeploymentSpec
from modelscale.examples import build_example
from modelscale.loadgen import LoadOptions, run_load
from modelscale.serve import start_server
from modelscale.workflow import CpuMeter, batch_deltas, batch_totals
from modelscale.workflow.metering import machine_busy_s

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from front_floor import _positive  # bench/front_floor.py: a comma list of positive numbers
from serving import _request_inputs, raw_ort  # bench/serving.py: the raw pass and its inputs

OUTPUT = "sentence_embedding"


def raw_batch_ms(model: str, npz: pathlib.Path, seconds: float) -> dict[int, float]:
    """Median ms of one batch of 1-4 rows, two single-thread processes running side by side
    (``bench/serving.py``'s raw pass, as the raw ceiling is measured)."""
    rows = raw_ort(model, str(npz), seconds, batches=(1, 2, 3, 4), output=OUTPUT, splits=[(2, 1)])
    return {r["batch"]: r["batch_ms"] for r in rows}


def served(
    model: str, npz: pathlib.Path, setting: str, rates: list[float], seconds: float
) -> list[dict[str, Any]]:
    adaptive = setting == "slo"
    max_batch, wait = (None, None) if adaptive else map(float, setting.split(":"))
    spec = DeploymentSpec.single(
        model,
        name="minilm",
        replicas=2,
        threads=1,
        max_batch=None if max_batch is None else int(max_batch),
        max_wait_ms=wait,
        p99_ms=100 if adaptive else None,
        max_queue=4096,
        monitor=False,
    )
    rows = []
    with start_server(spec) as server:
        warm = LoadOptions(rate=rates[0], duration_s=3, inputs=npz, outputs=(OUTPUT,))
        run_load(server.url, model="minilm", options=warm)
        for rate in rates:
            before = batch_totals(server.url, "minilm")
            meter = CpuMeter(server.pid)
            busy0, t0 = machine_busy_s(), time.monotonic()
            opts = LoadOptions(
                rate=rate,
                duration_s=seconds,
                inputs=npz,
                outputs=(OUTPUT,),
                pattern="poisson",
                warmup_s=0,
                max_connections=64,
            )
            s = run_load(server.url, model="minilm", options=opts).overall
            wall = time.monotonic() - t0
            cpu_ms = meter.per_request_ms(1)  # totals: "per one request" of 1
            busy1 = machine_busy_s()
            busy = (busy1 - busy0) / wall if busy0 is not None and busy1 is not None else None
            batches = batch_deltas(before, batch_totals(server.url, "minilm"))
            rows.append(
                {
                    "setting": setting,
                    "rate": rate,
                    "achieved_rps": s.achieved_rps,
                    "ok": s.ok,
                    "errors": dict(s.errors),
                    "p50_ms": s.p50_ms,
                    "p99_ms": s.p99_ms,
                    "cores": {k: v / 1000 / wall for k, v in cpu_ms.items()},
                    "machine_busy_cores": busy,
                    # per request the front handled, answered or shed (503)
                    "front_ms_per_request": cpu_ms.get("front", float("nan"))
                    / max(s.ok + sum(s.errors.values()), 1),
                    **batches,
                }
            )
            r = rows[-1]
            print(
                f"{setting} {rate:g} req/s: p99 {s.p99_ms:.0f} ms, mean batch "
                f"{r.get('mean_batch', float('nan')):.2f}, {r.get('infer_ms', float('nan')):.1f} "
                f"ms per batch in the replicas; cores {json.dumps({k: round(v, 3) for k, v in r['cores'].items()})}",
                flush=True,
            )
    return rows


def _num(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.2f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rates", default="60,115,300", help="request rates (req/s), comma list")
    ap.add_argument("--seconds", type=float, default=20.0, help="load window per rate")
    ap.add_argument("--raw-seconds", type=float, default=5.0, help="raw timing per batch size")
    ap.add_argument("--setting", default="slo", help="'slo' (p99 100 ms) or MAX_BATCH:WAIT_MS")
    ap.add_argument("--out", default="bench/results/server_share.json")
    args = ap.parse_args()
    rates = _positive(args.rates, "--rates")
    if args.setting != "slo":
        try:
            b, w = args.setting.split(":")
            if int(b) < 1 or float(w) < 0:
                raise ValueError
        except ValueError:
            raise SystemExit(
                f"--setting must be 'slo' or MAX_BATCH:WAIT_MS (e.g. 4:2). Got {args.setting!r}."
            ) from None

    example = build_example("minilm")
    model = str(example.model_path)
    npz = _request_inputs("minilm", example, pathlib.Path(tempfile.mkdtemp(prefix="bench-share-")))

    started = time.strftime("%Y-%m-%d %H:%M:%S")
    load_start = " ".join(f"{x:.2f}" for x in psutil.getloadavg())
    raw = raw_batch_ms(model, npz, args.raw_seconds)
    slope, intercept = np.polyfit(list(raw), list(raw.values()), 1)
    print("raw ms per batch (2 processes side by side):", {b: round(v, 1) for b, v in raw.items()})
    rows = served(model, npz, args.setting, rates, args.seconds)
    for r in rows:
        if "mean_batch" in r:
            r["raw_ms_at_mean_batch"] = float(intercept + slope * r["mean_batch"])
            r["slowdown"] = r["infer_ms"] / r["raw_ms_at_mean_batch"]

    print(f"\nMeasured {started} (load average {load_start} at the start).\n")
    print(
        "| setting | req/s offered (answered) | p99 ms | mean batch | replicas' ms per batch "
        "in the server | raw ms at that batch | slowdown | cores: front / replicas / load "
        "generator / whole machine | front CPU ms per request |"
    )
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | --- | ---: |")
    for r in rows:
        c = r["cores"]
        print(
            f"| {r['setting']} | {r['rate']:g} ({r['achieved_rps']:.0f}) | {r['p99_ms']:.0f} | "
            f"{r.get('mean_batch', float('nan')):.2f} | {r.get('infer_ms', float('nan')):.1f} | "
            f"{r.get('raw_ms_at_mean_batch', float('nan')):.1f} | "
            f"{r.get('slowdown', float('nan')):.2f}x | {c.get('front', 0):.2f} / "
            f"{c.get('replicas', 0):.2f} / {c.get('client', 0):.2f} / "
            f"{_num(r['machine_busy_cores'])} | {r['front_ms_per_request']:.2f} |"
        )
    out = pathlib.Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {"started": started, "load_avg_start": load_start, "raw_ms": raw, "rows": rows},
            indent=2,
        )
    )
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
