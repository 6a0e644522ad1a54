"""Where the server front's CPU per request comes from: request rate, ONNX Runtime beside it, payload.

`plan` charges the front a fixed CPU cost per request (``Overheads.front_ms``) plus a share of a
per-batch cost. This measures how that cost moves, on the digits example served by 2 replicas x 1
thread with batch 8 / 5 ms:

1. against the request rate (Poisson, open loop, the load generator in this process);
2. with two single-thread ONNX Runtime processes running MiniLM flat out beside the server (what a
   compute-heavy model's replicas do to the front), at the same rates;
3. the codec alone, in-process: decoding a V2 JSON request and encoding the reply for digits and for
   MiniLM (seq 32, sentence_embedding only) and MiniLM with every output (token_embeddings too).

The front's CPU is read from /proc (psutil) before and after each window, as `plan --validate`
measures it.

    .venv/bin/python bench/front_cost.py [--seconds 5] [--out bench/results/front_cost.json]

With ``--fixed-vs-slo`` it only compares the front's CPU per request of digits under fixed 8 / 5 ms
and under the SLO batcher (p99 100 ms) at 150, 300 and 1,000 req/s.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import subprocess
import sys
import time
from typing import Any

import numpy as np

from modelscale.config import DeploymentSpec
from modelscale.examples import build_example
from modelscale.loadgen import LoadOptions, run_load
from modelscale.model import InputChoice, ModelArtifact, make_inputs
from modelscale.runtime import Engine, EngineOptions
from modelscale.serve import ModelContract, decode_request, encode_response, start_server
from modelscale.workflow import CpuMeter, batch_totals, inputs_file

RATES = (150, 300, 1000, 3000)

_HOG = """
import os, sys, time
import numpy as np
os.sched_setscheduler(0, os.SCHED_BATCH, os.sched_param(0))  # as a replica runs
from modelscale.runtime import Engine, EngineOptions
e = Engine(sys.argv[1], EngineOptions(intra_op_threads=1, allow_spinning=False))
feeds = {s.name: np.ones((1, 32), dtype=np.int64) for s in e.session.get_inputs()}
end = time.monotonic() + float(sys.argv[2])
while time.monotonic() < end:
    e.run(feeds)
"""


def front_vs_rate(seconds: float) -> list[dict[str, Any]]:
    """Front CPU per request of digits at each rate, alone and beside two MiniLM processes."""
    digits = ModelArtifact.load(build_example("digits").model_path, name="digits")
    minilm = build_example("minilm").model_path
    spec = DeploymentSpec.single(
        digits.path, name="digits", replicas=2, threads=1, max_batch=8, max_wait_ms=5
    )
    rows: list[dict[str, Any]] = []
    with inputs_file(digits, {}, rows=1) as npz, start_server(spec) as server:
        inputs = pathlib.Path(npz)
        warm = LoadOptions(rate=300, duration_s=2, inputs=inputs)
        run_load(server.url, model="digits", options=warm)
        for beside in (0, 2):
            hog_s = len(RATES) * (seconds + 1.5) + 3
            hogs = [
                subprocess.Popen([sys.executable, "-c", _HOG, str(minilm), str(hog_s)])
                for _ in range(beside)
            ]
            time.sleep(2.0 if beside else 0.0)  # the hogs load their model
            for rate in RATES:
                meter, batches0 = CpuMeter(server.pid), batch_totals(server.url, "digits", None)
                opts = LoadOptions(
                    rate=rate, duration_s=seconds, inputs=inputs, pattern="poisson", warmup_s=0
                )
                res = run_load(server.url, model="digits", options=opts).overall
                front_ms = meter.per_request_ms(res.ok)["front"]
                batches1 = batch_totals(server.url, "digits", None)
                assert batches0 is not None and batches1 is not None
                n_batches = batches1["batches"] - batches0["batches"]
                mean_batch = (batches1["rows"] - batches0["rows"]) / max(n_batches, 1)
                rows.append(
                    {
                        "onnxruntime_beside": beside,
                        "rate_rps": rate,
                        "ok": res.ok,
                        "p99_ms": round(res.p99_ms, 2),
                        "mean_batch": round(mean_batch, 2),
                        "front_ms_per_request": round(front_ms, 4),
                        "front_cpu_share": round(front_ms * res.ok / 1000 / seconds, 4),
                    }
                )
                print(json.dumps(rows[-1]), flush=True)
            for h in hogs:
                h.wait()
    return rows


def codec_costs(repeats: int = 3000) -> list[dict[str, Any]]:
    """Decode + encode per request, in-process (no HTTP, no replica)."""
    out: list[dict[str, Any]] = []
    cases = (
        ("digits", {}, None),
        ("minilm", {"seq": 32}, ("sentence_embedding",)),
        ("minilm", {"seq": 32}, None),
    )
    for name, dims, wanted in cases:
        art = ModelArtifact.load(build_example(name).model_path, name=name)
        contract = ModelContract.from_artifact(art, name=name, version="1", max_batch=8)
        feeds = make_inputs(art.signature, batch=1, choice=InputChoice(dims=dims))
        names = list(wanted or contract.output_names)
        doc: dict[str, Any] = {
            "inputs": [
                {
                    "name": k,
                    "shape": list(v.shape),
                    "datatype": "INT64" if v.dtype == np.int64 else "FP32",
                    "data": v.ravel().tolist(),
                }
                for k, v in feeds.items()
            ],
            "outputs": [{"name": n} for n in names],
        }
        body = json.dumps(doc).encode()
        engine = Engine(art, EngineOptions(intra_op_threads=1))
        outputs = dict(zip(names, engine.run(feeds, names), strict=True))
        t0 = time.perf_counter()
        for _ in range(repeats):
            decode_request(body, None, contract)
        decode_ms = (time.perf_counter() - t0) / repeats * 1e3
        t0 = time.perf_counter()
        for _ in range(repeats):
            reply, _ = encode_response(
                model_name=name,
                model_version="1",
                request_id=None,
                outputs=outputs,
                binary=frozenset(),
            )
        encode_ms = (time.perf_counter() - t0) / repeats * 1e3
        out.append(
            {
                "model": name,
                "outputs": ",".join(names),
                "request_bytes": len(body),
                "reply_bytes": len(reply),
                "decode_ms": round(decode_ms, 4),
                "encode_ms": round(encode_ms, 4),
            }
        )
        print(json.dumps(out[-1]), flush=True)
    return out


def fixed_vs_slo(seconds: float, rates: tuple[int, ...] = (150, 300, 1000)) -> list[dict[str, Any]]:
    """Front CPU per request of digits (2 x 1) under fixed 8 / 5 ms and under the SLO batcher
    (p99 100 ms), two alternating repetitions, with what each server says of its batches."""
    digits = ModelArtifact.load(build_example("digits").model_path, name="digits")
    configs = [("fixed 8/5", {"max_batch": 8, "max_wait_ms": 5}), ("slo 100", {"p99_ms": 100})]
    rows: list[dict[str, Any]] = []
    with inputs_file(digits, {}, rows=1) as npz:
        inputs = pathlib.Path(npz)
        for rep in range(2):
            for name, kw in configs if rep % 2 == 0 else configs[::-1]:
                spec = DeploymentSpec.single(
                    digits.path, name="digits", replicas=2, threads=1, monitor=False, **kw
                )
                with start_server(spec) as server:
                    warm = LoadOptions(rate=300, duration_s=2, inputs=inputs)
                    run_load(server.url, model="digits", options=warm)
                    for rate in rates:
                        meter = CpuMeter(server.pid)
                        opts = LoadOptions(
                            rate=rate,
                            duration_s=seconds,
                            inputs=inputs,
                            pattern="poisson",
                            warmup_s=0,
                        )
                        r = run_load(server.url, model="digits", options=opts)
                        rows.append(
                            {
                                "repetition": rep,
                                "config": name,
                                "rate_rps": rate,
                                "front_ms_per_request": round(
                                    meter.per_request_ms(r.overall.ok)["front"], 4
                                ),
                                "p99_ms": round(r.overall.p99_ms, 2),
                                "server": {k: round(v, 3) for k, v in r.server.items()},
                            }
                        )
                        print(json.dumps(rows[-1]), flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=5.0, help="load window per rate")
    ap.add_argument(
        "--fixed-vs-slo",
        action="store_true",
        help="only compare the front's CPU under fixed 8 / 5 ms and under the SLO batcher",
    )
    ap.add_argument(
        "--out", type=pathlib.Path, default=pathlib.Path("bench/results/front_cost.json")
    )
    args = ap.parse_args()
    result: dict[str, Any] = {
        "when": time.strftime("%Y-%m-%d %H:%M:%S"),
        "load_average": os.getloadavg(),
    }
    if args.fixed_vs_slo:
        result["fixed_vs_slo"] = fixed_vs_slo(args.seconds)
    else:
        result["front_vs_rate"] = front_vs_rate(args.seconds)
        result["codec"] = codec_costs()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1), encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
