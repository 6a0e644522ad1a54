"""Acceptance figures of the accuracy monitor (modelscale.monitor.accuracy) on the digits example.

The held-out eval split of the digits example (450 rows) is split in two stratified, seeded
halves: the calibration half fits a ``ConfidenceCalibration``, the test half is the traffic pool.
Windows of 200 rows are drawn from the pool with replacement and shifted by a random type and
severity (Gaussian pixel noise sd 0.05-0.3, Gaussian blur sigma 0.3-1.2, contrast x 0.4-1.6
around 0.5, all clipped to [0, 1], or no shift); the model runs on each with ONNX Runtime (one
thread).

1. CBPE: does the estimate's 95% interval hold the window's realized accuracy? Target: >= 90% of
   windows. Reported overall and per shift type, with mean interval width and mean error.
2. Concept shift: labels of two classes swapped in the pool (inputs unshifted), so accuracy falls
   while the model's confidence does not; CBPE cannot see it, and its coverage shows that.
3. Feedback: labels for a random 30% of each covariate-shift window; how often the 95% percentile
   bootstrap interval of ``realized_metric`` holds the whole window's accuracy (expect ~95%).
   A Wilson score interval on the same rows is shown beside it for comparison: when all 60
   feedback rows are right, every bootstrap resample is too and the interval is [1, 1]
   ("degenerate"), which cannot hold a window accuracy below 1.

The calibration's construction (Jeffreys-smoothed isotonic map, bootstrap + Beta posterior draws,
mean-of-sd bound) was written before any window was drawn. Alternatives tried afterwards were
compared on the split of --seed 1 with 300 windows of their own, not on the reported --seed 0
split (this construction there: 100% covered, width 0.160): the exact spread of the window mean
over the draws instead of the mean-of-sd bound covered 66-87% (with any of the draw schemes);
bootstrap-only or Beta-only draws with the bound covered 96% and 91% (blur 94% and 82%) at
widths 0.136 and 0.118. None was adopted: each drops a source of doubt the design counts for a
reason (error-free blocks; moving block edges), and the margin above 90% was thin.

Run: .venv/bin/python bench/monitor_accuracy.py [--quick] [--windows 400] [--seed 0]
     [--out bench/results/monitor_accuracy.json]
"""

from __future__ import annotations

import argparse
import json
import math
import pathlib
import statistics
import time
from typing import Any

import numpy as np
import onnxruntime as ort
from scipy import ndimage
from sklearn.model_selection import train_test_split

from modelscale.examples import build_example
from modelscale.monitor.accuracy import ConfidenceCalibration, realized_metric, softmax_top

WINDOW = 200
SHIFTS = ("none", "noise", "blur", "contrast")
SWAPPED = (3, 8)  # classes whose labels trade places in the concept-shift pool
FEEDBACK_SHARE = 0.3
LEVEL = 0.95
OUT = pathlib.Path(__file__).parent / "results" / "monitor_accuracy.json"


def _session(path: pathlib.Path) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    # One thread: the machine is shared, and the figures do not depend on speed.
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def _predict(session: ort.InferenceSession, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    logits = session.run(["logits"], {"pixels": pixels.astype(np.float32)})[0]
    return softmax_top(logits)


def _shift(pixels: np.ndarray, rng: np.random.Generator) -> tuple[str, float, np.ndarray]:
    """A random covariate shift of random severity: (type, severity, shifted pixels)."""
    kind = SHIFTS[int(rng.integers(len(SHIFTS)))]
    if kind == "noise":
        sd = float(rng.uniform(0.05, 0.3))
        return kind, sd, np.clip(pixels + rng.normal(0.0, sd, pixels.shape), 0.0, 1.0)
    if kind == "blur":
        sigma = float(rng.uniform(0.3, 1.2))
        # Blur each image on its own: sigma 0 on the batch and channel axes.
        return kind, sigma, ndimage.gaussian_filter(pixels, sigma=(0.0, 0.0, sigma, sigma))
    if kind == "contrast":
        factor = float(rng.uniform(0.4, 1.6))
        return kind, factor, np.clip(0.5 + factor * (pixels - 0.5), 0.0, 1.0)
    return kind, 0.0, pixels


def _wilson(hits: int, n: int, level: float) -> tuple[float, float]:
    z = statistics.NormalDist().inv_cdf(0.5 + level / 2.0)
    p = hits / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return centre - half, centre + half


def _summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    if not rows:
        return {"windows": 0}
    return {
        "windows": len(rows),
        "coverage": statistics.fmean(r["covered"] for r in rows),
        "mean_width": statistics.fmean(r["hi"] - r["lo"] for r in rows),
        "mean_realized": statistics.fmean(r["realized"] for r in rows),
        "mean_estimate": statistics.fmean(r["estimate"] for r in rows),
        "mean_abs_error": statistics.fmean(abs(r["estimate"] - r["realized"]) for r in rows),
        "min_realized": min(r["realized"] for r in rows),
    }


def run(quick: bool = False, *, windows: int = 400, seed: int = 0) -> dict[str, Any]:
    """Measure CBPE coverage under covariate and concept shift, and feedback-interval coverage."""
    started = time.perf_counter()
    if quick:
        windows = min(windows, 40)
    build = build_example("digits")
    assert build.eval_path is not None
    data = np.load(build.eval_path)
    pixels, labels = data["pixels"].astype(np.float64), data["labels"].astype(np.int64)
    session = _session(build.model_path)

    calib_idx, pool_idx = train_test_split(
        np.arange(len(labels)), test_size=0.5, stratify=labels, random_state=seed
    )
    calib_class, calib_score = _predict(session, pixels[calib_idx])
    calibration = ConfidenceCalibration.fit(
        calib_score, calib_class == labels[calib_idx], seed=seed
    )
    pool_x, pool_y = pixels[pool_idx], labels[pool_idx]
    pool_class, _ = _predict(session, pool_x)

    rng = np.random.default_rng(seed + 1)
    covariate: list[dict[str, Any]] = []
    feedback: list[dict[str, Any]] = []
    for _ in range(windows):
        rows = rng.integers(0, len(pool_y), size=WINDOW)
        kind, severity, x = _shift(pool_x[rows], rng)
        top, score = _predict(session, x)
        truth = pool_y[rows]
        correct = top == truth
        realized = float(correct.mean())
        est = calibration.estimate(score, level=LEVEL)
        covariate.append(
            {
                "shift": kind,
                "severity": severity,
                "realized": realized,
                "estimate": est.value,
                "lo": est.lo,
                "hi": est.hi,
                "covered": est.lo <= realized <= est.hi,
                "mean_score": float(score.mean()),
            }
        )
        labelled = rng.choice(WINDOW, size=int(FEEDBACK_SHARE * WINDOW), replace=False)
        ci = realized_metric(
            top[labelled], truth[labelled], level=LEVEL, seed=int(rng.integers(2**31))
        )
        w_lo, w_hi = _wilson(int(correct[labelled].sum()), len(labelled), LEVEL)
        feedback.append(
            {
                "shift": kind,
                "covered": ci.lo <= realized <= ci.hi,
                "width": ci.hi - ci.lo,
                "degenerate": ci.lo == ci.hi,
                "wilson_covered": w_lo <= realized <= w_hi,
            }
        )

    # Concept shift: same inputs, but the labels of two classes trade places.
    swapped_y = pool_y.copy()
    a, b = SWAPPED
    swapped_y[pool_y == a], swapped_y[pool_y == b] = b, a
    concept: list[dict[str, Any]] = []
    for _ in range(max(20, windows // 4)):
        rows = rng.integers(0, len(pool_y), size=WINDOW)
        _, score = _predict(session, pool_x[rows])
        realized = float((pool_class[rows] == swapped_y[rows]).mean())
        est = calibration.estimate(score, level=LEVEL)
        concept.append(
            {
                "shift": "concept",
                "realized": realized,
                "estimate": est.value,
                "lo": est.lo,
                "hi": est.hi,
                "covered": est.lo <= realized <= est.hi,
            }
        )

    def feedback_summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "windows": len(rows),
            "coverage": statistics.fmean(r["covered"] for r in rows),
            "mean_width": statistics.fmean(r["width"] for r in rows),
            "degenerate_share": statistics.fmean(r["degenerate"] for r in rows),
            "wilson_coverage": statistics.fmean(r["wilson_covered"] for r in rows),
        }

    return {
        "config": {
            "quick": quick,
            "windows": windows,
            "window_rows": WINDOW,
            "seed": seed,
            "level": LEVEL,
            "calibration_rows": len(calib_idx),
            "pool_rows": len(pool_idx),
            "calibration_accuracy": calibration.reference_accuracy,
            "calibration_draws": calibration.draws,
            "feedback_share": FEEDBACK_SHARE,
            "swapped_classes": list(SWAPPED),
        },
        "cbpe": {
            "overall": _summary(covariate),
            "by_shift": {k: _summary([r for r in covariate if r["shift"] == k]) for k in SHIFTS},
        },
        "concept_shift": _summary(concept),
        "feedback": {
            "overall": feedback_summary(feedback),
            "by_shift": {
                k: feedback_summary([r for r in feedback if r["shift"] == k])
                for k in SHIFTS
                if any(r["shift"] == k for r in feedback)
            },
        },
        "windows": covariate,
        "seconds": round(time.perf_counter() - started, 2),
    }


def _table(result: dict[str, Any]) -> str:
    cfg = result["config"]
    lines = [
        f"digits: calibration {cfg['calibration_rows']} rows (accuracy "
        f"{cfg['calibration_accuracy']:.3f}), pool {cfg['pool_rows']} rows, "
        f"{cfg['windows']} windows of {cfg['window_rows']}, level {cfg['level']}",
        "",
        "CBPE       windows  coverage  width   realized  estimate  |err|   min realized",
    ]

    def row(name: str, s: dict[str, Any]) -> str:
        if not s.get("windows"):
            return f"{name:<10} {0:>7}"
        return (
            f"{name:<10} {s['windows']:>7}  {s['coverage']:>8.1%}  {s['mean_width']:.3f}   "
            f"{s['mean_realized']:.3f}     {s['mean_estimate']:.3f}     {s['mean_abs_error']:.3f}   "
            f"{s['min_realized']:.3f}"
        )

    lines.append(row("all", result["cbpe"]["overall"]))
    for kind, s in result["cbpe"]["by_shift"].items():
        lines.append(row(kind, s))
    lines.append(row("concept", result["concept_shift"]))
    lines += ["", "feedback (30%)  windows  bootstrap coverage  width  degenerate  Wilson coverage"]
    fb = result["feedback"]
    for name, s in [("all", fb["overall"]), *fb["by_shift"].items()]:
        lines.append(
            f"{name:<15} {s['windows']:>7}  {s['coverage']:>18.1%}  {s['mean_width']:.3f}  "
            f"{s['degenerate_share']:>10.1%}  {s['wilson_coverage']:>15.1%}"
        )
    lines.append(f"\n{result['seconds']} s")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="40 windows, for a smoke test")
    parser.add_argument("--windows", type=int, default=400)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=pathlib.Path, default=OUT)
    args = parser.parse_args()
    result = run(args.quick, windows=args.windows, seed=args.seed)
    print(_table(result))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
