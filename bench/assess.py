"""Acceptance figures of `modelscale assess` on the built-in digits classifier.

1. The original model is assessed once: that run is the baseline.
2. (a) A slower version (the same network with a wasted extra branch: a 64 x HIDDEN x 10 MLP on
   the pixels whose output is scaled by 1e-9 and added to the logits, so the predictions do not
   change but every run computes it) must be flagged slower.
3. (b) A less accurate version (the smallest PRUNE of the weights of every weight matrix and
   kernel zeroed, with onnx and numpy) must be flagged less accurate.
4. (c) The unchanged model, re-assessed REPEATS times against the same baseline, must be flagged
   in at most 1 of them.

Every assessment runs with the default options (about 18 s each on a 2-core machine). The slower
and pruned versions are compared side by side with the baseline's model (its file is still
there); the unchanged one with the baseline's stored measurements.

Run: .venv/bin/python bench/assess.py [--repeats 20] [--json-out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import tempfile
import time
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

from modelscale.examples import build_example
from modelscale.machine import machine_info
from modelscale.model import ModelArtifact
from modelscale.store import open_store
from modelscale.workflow import record
from modelscale.workflow.assess import AssessOptions, AssessResult, assess_model
from modelscale.workflow.assess_baseline import find_baseline

HIDDEN = 1024
PRUNE = 0.85


def slower(src: pathlib.Path, dest: pathlib.Path, hidden: int = HIDDEN) -> pathlib.Path:
    """``src`` plus a wasted branch: logits + 1e-9 * MLP(pixels)."""
    m = onnx.load(str(src))
    g = m.graph
    (out,) = [o.name for o in g.output]
    (inp,) = [i.name for i in g.input]
    rng = np.random.default_rng(0)
    w1 = rng.standard_normal((64, hidden)).astype(np.float32)
    w2 = rng.standard_normal((hidden, 10)).astype(np.float32)
    g.initializer.extend(
        [
            numpy_helper.from_array(w1, "waste_w1"),
            numpy_helper.from_array(w2, "waste_w2"),
            numpy_helper.from_array(np.array([-1, 64], dtype=np.int64), "waste_shape"),
            numpy_helper.from_array(np.array(1e-9, dtype=np.float32), "waste_scale"),
        ]
    )
    for node in g.node:  # the old output becomes an intermediate
        node.output[:] = [f"{out}_orig" if o == out else o for o in node.output]
    g.node.extend(
        [
            helper.make_node("Reshape", [inp, "waste_shape"], ["waste_flat"]),
            helper.make_node("MatMul", ["waste_flat", "waste_w1"], ["waste_h"]),
            helper.make_node("Relu", ["waste_h"], ["waste_r"]),
            helper.make_node("MatMul", ["waste_r", "waste_w2"], ["waste_o"]),
            helper.make_node("Mul", ["waste_o", "waste_scale"], ["waste_s"]),
            helper.make_node("Add", [f"{out}_orig", "waste_s"], [out]),
        ]
    )
    onnx.checker.check_model(m)
    onnx.save(m, str(dest))
    return dest


def pruned(src: pathlib.Path, dest: pathlib.Path, share: float = PRUNE) -> pathlib.Path:
    """``src`` with the smallest ``share`` (by magnitude) of each weight tensor set to zero."""
    m = onnx.load(str(src))
    for i, init in enumerate(m.graph.initializer):
        w = numpy_helper.to_array(init)
        if w.dtype != np.float32 or w.ndim < 2:  # biases and shapes stay
            continue
        cut = np.quantile(np.abs(w), share)
        m.graph.initializer[i].CopyFrom(
            numpy_helper.from_array(np.where(np.abs(w) <= cut, 0, w).astype(w.dtype), init.name)
        )
    onnx.save(m, str(dest))
    return dest


def _row(label: str, r: AssessResult, seconds: float) -> dict[str, Any]:
    return {
        "case": label,
        "run_regressed": r.regressed,
        "seconds": round(seconds, 1),
        "other_cores": {k: None if v is None else round(v, 2) for k, v in r.other_cores.items()},
        "checks": [
            {
                "name": c.name,
                "verdict": c.verdict.value,
                "method": c.method,
                "baseline": c.baseline,
                "now": c.now,
                "effect": c.effect,
                "ci": [c.low, c.high],
                "note": c.note,
            }
            for c in r.checks
        ],
    }


def _show(row: dict[str, Any]) -> None:
    flags = [c["name"] for c in row["checks"] if c["verdict"] == "regression"]
    print(f"{row['case']}: {'REGRESSION ' + ', '.join(flags) if flags else 'no regression'} "
          f"({row['seconds']} s, other cores {row['other_cores']})")  # fmt: skip
    for c in row["checks"]:
        lo, hi = c["ci"]
        eff = "-" if c["effect"] is None else f"{c['effect']:.4f} [{lo:.4f}, {hi:.4f}]"
        print(f"    {c['name']:<22} {c['verdict']:<13} {c['method']:<15} {eff}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--json-out", type=pathlib.Path)
    args = ap.parse_args()
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench-assess-") as tmp:
        d = pathlib.Path(tmp)
        built = build_example("digits", out_dir=d / "digits")
        assert built.eval_path is not None
        original = ModelArtifact.load(built.model_path, name="digits")
        slow = ModelArtifact.load(slower(built.model_path, d / "digits_slow.onnx"), name="digits")
        weak = ModelArtifact.load(pruned(built.model_path, d / "digits_pruned.onnx"), name="digits")
        store = open_store(f"sqlite:///{d / 'kb.db'}")
        options = AssessOptions(eval=built.eval_path)
        rows = []

        def run(label: str, artifact: ModelArtifact, baseline_id: int | None) -> int:
            baseline = find_baseline(store, artifact, baseline_id)
            t0 = time.perf_counter()
            result = assess_model(artifact, baseline=baseline, options=options)
            row = _row(label, result, time.perf_counter() - t0)
            rows.append(row)
            _show(row)
            return record(result, store).run_id

        base_id = run("baseline (original)", original, None)
        run("(a) slower", slow, base_id)
        run("(b) pruned", weak, base_id)
        for i in range(args.repeats):
            run(f"(c) unchanged #{i + 1}", original, base_id)
    repeats = [r for r in rows if r["case"].startswith("(c)")]
    flagged = sum(r["run_regressed"] for r in repeats)
    checks = [c for r in repeats for c in r["checks"]]
    verdicts = {
        v: sum(c["verdict"] == v for c in checks)
        for v in ("ok", "inconclusive", "regression", "improved")
    }
    downgraded = sum(c["note"] is not None for c in checks)
    summary = {
        "machine": machine_info().to_dict(),
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
        "slower_flagged": rows[1]["run_regressed"],
        "pruned_flagged": rows[2]["run_regressed"],
        "unchanged_flagged": f"{flagged} of {len(repeats)}",
        "unchanged_check_verdicts": verdicts,
        "unchanged_checks_called_inconclusive_for_disturbance": downgraded,
        "rows": rows,
    }
    print(json.dumps({k: v for k, v in summary.items() if k != "rows"}, indent=2))
    if args.json_out:
        args.json_out.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
