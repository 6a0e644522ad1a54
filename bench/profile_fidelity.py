"""Acceptance figures of `modelscale profile` on MiniLM (all-MiniLM-L6-v2, ONNX, fp32).

1. Wall time of `profile` at seq 32, batch {1,2,4,8,16} x threads {1,2} (target: <= 120 s).
2. Fidelity: each point's p50 against a plain onnxruntime timing loop on the same shapes, inputs and
   threads, run in this script (target: within 10%); prints the worst ratio.
3. Repeatability: a second profile right after; the worst per-point p50 difference (target <= 10%).
4. FLOPs at seq 128 against the analytic count, and the parameter count against PyTorch's.

Run: .venv/bin/python bench/profile_fidelity.py [--out bench/results/profile_fidelity.json]
"""

from __future__ import annotations

import argparse
import json
import pathlib
import statistics
import time

import onnxruntime as ort

from modelscale.examples import build_example
from modelscale.machine import machine_info
from modelscale.model import InputChoice, ModelArtifact, make_inputs
from modelscale.profile import (
    MeasureOptions,
    ProfileOptions,
    count_flops,
    profile_model,
    static_profile,
)

BATCHES = [1, 2, 4, 8, 16]
THREADS = [1, 2]
SEQ = 32


def plain_ort_p50(path: str, feeds: dict, threads: int, seconds: float = 2.0) -> float:
    """The simplest honest timing loop: a default session with the thread count set."""
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    for _ in range(5):
        sess.run(None, feeds)
    lat = []
    start = time.perf_counter()
    while time.perf_counter() - start < seconds or len(lat) < 20:
        t0 = time.perf_counter()
        sess.run(None, feeds)
        lat.append(time.perf_counter() - t0)
    return statistics.median(lat) * 1e3


def analytic_minilm_macs(seq: int, layers: int = 6, hidden: int = 384, inter: int = 1536) -> int:
    """Multiply-accumulates of a BERT encoder at batch 1: Q, K, V and output projections, the two
    attention products, and the feed-forward pair, per layer (embedding lookups cost none)."""
    per_layer = 4 * seq * hidden * hidden + 2 * seq * seq * hidden + 2 * seq * hidden * inter
    return layers * per_layer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="bench/results/profile_fidelity.json")
    args = parser.parse_args()

    example = build_example("minilm")
    art = ModelArtifact.load(example.model_path)
    measure = MeasureOptions()

    t0 = time.perf_counter()
    first = profile_model(
        art,
        options=ProfileOptions(
            batches=BATCHES, threads=THREADS, dims={"seq": [SEQ]}, measure=measure
        ),
    )
    wall = time.perf_counter() - t0

    fidelity = []
    for p in first.points:
        feeds = make_inputs(art.signature, batch=p.batch, choice=InputChoice(dims={"seq": SEQ}))
        plain = plain_ort_p50(str(art.path), feeds, p.threads)
        fidelity.append((p.batch, p.threads, p.p50_ms, plain, p.p50_ms / plain))

    second = profile_model(
        art,
        options=ProfileOptions(
            batches=BATCHES, threads=THREADS, dims={"seq": [SEQ]}, measure=measure
        ),
    )
    repeat = []
    for p in first.points:
        q = second.point(batch=p.batch, threads=p.threads)
        repeat.append((p.batch, p.threads, p.p50_ms, q.p50_ms, abs(q.p50_ms - p.p50_ms) / p.p50_ms))

    feeds128 = make_inputs(art.signature, batch=1, choice=InputChoice(dims={"seq": 128}))
    flops128 = count_flops(art, feeds128)
    analytic = 2 * analytic_minilm_macs(128)
    params = static_profile(art).parameters

    print(
        f"machine: {machine_info().cpu_model}, {machine_info().usable_cores} cores, "
        f"VNNI={machine_info().has_vnni}, onnxruntime {ort.__version__}"
    )
    print(f"profile wall time (10 points, seq {SEQ}): {wall:.1f} s")
    print("| batch | threads | modelscale p50 ms | plain ORT p50 ms | ratio |")
    print("|---:|---:|---:|---:|---:|")
    for b, t, ours, plain, ratio in fidelity:
        print(f"| {b} | {t} | {ours:.3f} | {plain:.3f} | {ratio:.3f} |")
    worst_fid = max(fidelity, key=lambda r: abs(r[4] - 1))
    print(
        f"worst fidelity ratio: {worst_fid[4]:.3f} (batch {worst_fid[0]} x {worst_fid[1]} threads)"
    )
    print("| batch | threads | run 1 p50 ms | run 2 p50 ms | difference |")
    print("|---:|---:|---:|---:|---:|")
    for b, t, a, c, d in repeat:
        print(f"| {b} | {t} | {a:.3f} | {c:.3f} | {d:.1%} |")
    worst_rep = max(repeat, key=lambda r: r[4])
    print(
        f"worst repeat difference: {worst_rep[4]:.1%} (batch {worst_rep[0]} x {worst_rep[1]} threads)"
    )
    print(
        f"FLOPs at seq 128: measured {flops128.flops:,} vs analytic 2*MACs {analytic:,} "
        f"(ratio {flops128.flops / analytic:.4f}); MACs {flops128.macs:,} vs {analytic // 2:,}"
    )
    print(f"parameters: {params:,} vs PyTorch {example.meta['torch_param_count']:,}")

    out = pathlib.Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "wall_s": wall,
                "fidelity": fidelity,
                "repeat": repeat,
                "flops128": flops128.flops,
                "macs128": flops128.macs,
                "analytic_flops128": analytic,
                "params": params,
                "torch_params": example.meta["torch_param_count"],
                "machine": machine_info().to_dict(),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
