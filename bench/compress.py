"""Acceptance figures of `modelscale compress` on the built-in examples.

1. MiniLM (no labels: fidelity to the fp32 embeddings), the 1,101 docstring sentences at seq 64,
   batch 8, default tolerance (max drop 0.01 of mean cosine). Targets: the chosen model >= 3.5x
   smaller and >= 1.6x the fp32 throughput at batch 8, mean cosine to the fp32 embeddings >= 0.99
   and minimum >= 0.95 (checked here with a plain onnxruntime session and numpy, not the search's
   own evaluator), and the whole search within 6 minutes.
2. Digits classifier with labels, --max-drop 0.01: the chosen model's accuracy drop <= 1.0 point,
   with its 95% CI.

Run: .venv/bin/python bench/compress.py [--only minilm|digits] [--json-out FILE]
"""

from __future__ import annotations

import argparse
import json
import pathlib
import statistics
import tempfile
import time
from typing import Any

import numpy as np
import onnxruntime as ort

from modelscale.compress import CompressOptions, CompressResult, compress
from modelscale.examples import build_example
from modelscale.machine import machine_info

BATCH = 8


def _session(path: str, threads: int) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


def _outputs(path: str, inputs: dict[str, np.ndarray], output: str, threads: int) -> np.ndarray:
    sess = _session(path, threads)
    rows = len(next(iter(inputs.values())))
    parts = [
        sess.run([output], {k: v[i : i + 64] for k, v in inputs.items()})[0]
        for i in range(0, rows, 64)
    ]
    return np.concatenate(parts)


def _alternating_ratio(a: str, b: str, feeds: dict[str, np.ndarray], threads: int) -> float:
    """Throughput of b over a at one batch, timed in alternating rounds (a busy box drifts)."""
    sessions = {p: _session(p, threads) for p in (a, b)}
    medians: dict[str, list[float]] = {a: [], b: []}
    for _ in range(3):
        for p, sess in sessions.items():
            for _ in range(3):
                sess.run(None, feeds)
            lat = []
            start = time.perf_counter()
            while time.perf_counter() - start < 2.0 or len(lat) < 10:
                t0 = time.perf_counter()
                sess.run(None, feeds)
                lat.append(time.perf_counter() - t0)
            medians[p].append(statistics.median(lat))
    return statistics.median(medians[a]) / statistics.median(medians[b])


def _table(result: CompressResult) -> list[str]:
    lines = []
    for t in result.trials:
        mark = "->" if t.name == result.chosen else "  "
        lines.append(f"{mark} {t.summary}")
    return lines


def bench_minilm(threads: int) -> dict[str, Any]:
    example = build_example("minilm")
    assert example.sample_path is not None
    with tempfile.TemporaryDirectory() as out:
        started = time.perf_counter()
        result = compress(
            example.model_path,
            example.sample_path,
            options=CompressOptions(
                output="sentence_embedding", batch=BATCH, threads=threads, out=out
            ),
        )
        wall = time.perf_counter() - started
        chosen_path = result.chosen_path
        assert chosen_path is not None
        data = dict(np.load(example.sample_path))
        ref = _outputs(str(example.model_path), data, "sentence_embedding", threads)
        got = _outputs(chosen_path, data, "sentence_embedding", threads)
        cos = (ref * got).sum(1) / (np.linalg.norm(ref, axis=1) * np.linalg.norm(got, axis=1))
        feeds = {k: v[:BATCH] for k, v in data.items()}
        recheck = _alternating_ratio(str(example.model_path), chosen_path, feeds, threads)
    original, chosen = result.original, result.chosen_trial
    return {
        "rows": len(ref),
        "trials": _table(result),
        "notes": list(result.notes),
        "chosen": result.chosen,
        "size_ratio": (original.size_bytes or 0) / (chosen.size_bytes or 1),
        "throughput_ratio": (chosen.items_per_s or 0) / (original.items_per_s or 1),
        "throughput_ratio_recheck": recheck,
        "cosine_mean": float(cos.mean()),
        "cosine_min": float(cos.min()),
        "wall_s": wall,
    }


def bench_digits(threads: int) -> dict[str, Any]:
    example = build_example("digits")
    with tempfile.TemporaryDirectory() as out:
        result = compress(
            example.model_path,
            example.eval_path,
            options=CompressOptions(
                calibration=example.calib_path, max_drop=0.01, batch=BATCH, threads=threads, out=out
            ),
        )
        chosen_path = result.chosen_path
        assert chosen_path is not None and example.eval_path is not None
        data = dict(np.load(example.eval_path))
        labels = data.pop("labels")
        data.pop("index", None)
        acc = {
            name: float((_outputs(p, data, "logits", threads).argmax(1) == labels).mean())
            for name, p in (("original", str(example.model_path)), ("chosen", chosen_path))
        }
    chosen = result.chosen_trial
    return {
        "rows": len(labels),
        "trials": _table(result),
        "notes": list(result.notes),
        "chosen": result.chosen,
        "accuracy_original": acc["original"],
        "accuracy_chosen": acc["chosen"],
        "drop_points": 100 * (acc["original"] - acc["chosen"]),
        "change_ci_points": [100 * (chosen.ci_low or 0.0), 100 * (chosen.ci_high or 0.0)],
        "wall_s": result.seconds,
    }


def _check(label: str, value: float, target: str, ok: bool) -> str:
    return f"  [{'ok' if ok else 'SHORT'}] {label}: {value:.4g} (target {target})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=["minilm", "digits"])
    parser.add_argument("--json-out", help="Also write the figures as JSON to this file.")
    parser.add_argument("--threads", type=int, default=machine_info().usable_cores)
    args = parser.parse_args()
    m = machine_info()
    print(f"Machine: {m.cpu_model}, {m.usable_cores} usable cores, ISA {' '.join(m.isa_flags)}")
    print(f"VNNI: {m.has_vnni}; onnxruntime {m.libraries.get('onnxruntime')}")
    report: dict[str, Any] = {"machine": m.to_dict()}
    if args.only in (None, "minilm"):
        r = bench_minilm(args.threads)
        report["minilm"] = r
        print(f"\nMiniLM, no labels, {r['rows']} sentences, seq 64, batch {BATCH}:")
        print("\n".join(r["trials"]))
        for note in r["notes"]:
            print(f"  note: {note}")
        print(_check("size ratio fp32 / chosen", r["size_ratio"], ">= 3.5", r["size_ratio"] >= 3.5))
        print(
            _check(
                "throughput ratio at batch 8 (search)",
                r["throughput_ratio"],
                ">= 1.6",
                r["throughput_ratio"] >= 1.6,
            )
        )
        print(
            _check(
                "throughput ratio at batch 8 (alternating re-check)",
                r["throughput_ratio_recheck"],
                ">= 1.6",
                r["throughput_ratio_recheck"] >= 1.6,
            )
        )
        print(_check("mean cosine", r["cosine_mean"], ">= 0.99", r["cosine_mean"] >= 0.99))
        print(_check("min cosine", r["cosine_min"], ">= 0.95", r["cosine_min"] >= 0.95))
        print(_check("search wall time, s", r["wall_s"], "<= 360", r["wall_s"] <= 360))
    if args.only in (None, "digits"):
        r = bench_digits(args.threads)
        report["digits"] = r
        print(f"\nDigits, labels, {r['rows']} eval rows, --max-drop 0.01:")
        print("\n".join(r["trials"]))
        lo, hi = r["change_ci_points"]
        print(
            _check(
                f"accuracy drop, points ({r['accuracy_original']:.4f} -> "
                f"{r['accuracy_chosen']:.4f}; change 95% CI [{lo:+.2f}, {hi:+.2f}])",
                r["drop_points"],
                "<= 1.0",
                r["drop_points"] <= 1.0,
            )
        )
    if args.json_out:
        out = pathlib.Path(args.json_out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=2) + "\n")
        print(f"\nWritten to {out}")


if __name__ == "__main__":
    main()
