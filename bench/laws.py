"""Acceptance figures of `modelscale laws` on the Epoch AI extraction of the Chinchilla runs.

1. The Chinchilla-form fit (D = C / (6N), the 5 highest-loss rows dropped) against the published
   grid fit: E, alpha, beta within +-0.01; A and B inside the published 95% bootstrap intervals.
2. Our 95% bootstrap intervals (200 resamples, seed 0) against the published ones: must overlap.
3. Compute-optimal N at C = 5.76e23 FLOPs against what the published fit implies (within 15%).
4. Wall time of the whole fit (grid, leave-largest-out refit, 200 bootstrap refits; target <= 90 s).

Run: .venv/bin/python bench/laws.py [--workers N] [--out bench/results/laws.json]
"""

from __future__ import annotations

import argparse
import json
import pathlib
import time
import warnings

from modelscale.laws import (
    ExtrapolationWarning,
    FitOptions,
    ScalingLaw,
    compute_optimal,
    fit_scaling_law,
)
from modelscale.machine import machine_info

PUBLISHED_GRID = {"E": 1.8172, "A": 477.8, "B": 2143.9, "alpha": 0.3473, "beta": 0.3672}
PUBLISHED_CI = {
    "E": (1.769, 1.871),
    "A": (285.2, 743.6),
    "B": (1042.0, 5810.0),
    "alpha": (0.317, 0.373),
    "beta": (0.331, 0.415),
}
GOPHER_BUDGET = 5.76e23


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    root = pathlib.Path(__file__).resolve().parents[1]
    parser.add_argument("--data", default=str(root / ".." / "shared" / "data" / "scaling"))
    parser.add_argument("--out", default="bench/results/laws.json")
    parser.add_argument("--bootstrap", type=int, default=200)
    parser.add_argument("--workers", type=int, default=None, help="default: auto")
    args = parser.parse_args()

    csv_path = pathlib.Path(args.data) / "epoch_chinchilla_svg_extracted_data.csv"
    started = time.perf_counter()
    fit = fit_scaling_law(
        csv_path,
        options=FitOptions(
            drop_highest_loss=5, bootstrap=args.bootstrap, seed=0, workers=args.workers
        ),
    )
    wall = time.perf_counter() - started
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExtrapolationWarning)  # 44x beyond the data, as expected
        ours = compute_optimal(fit, flops=GOPHER_BUDGET).allocations[0]
        published_law = ScalingLaw(form="chinchilla", **PUBLISHED_GRID)
        published = compute_optimal(published_law, flops=GOPHER_BUDGET).allocations[0]
    assert ours.n_opt is not None and published.n_opt is not None  # Chinchilla form: always set

    checks: dict[str, bool] = {}
    print(
        f"Epoch data: {fit.n_rows} rows, {len(fit.dropped_rows)} highest-loss dropped, "
        f"{fit.n_points} points; {fit.n_starts} starts, {fit.workers} worker process(es)"
    )
    print(f"{'param':6} {'ours':>10} {'published':>10} {'our 95% CI':>22} {'published 95% CI':>22}")
    for est in fit.estimates:
        lo, hi = PUBLISHED_CI[est.name]
        assert est.ci_low is not None and est.ci_high is not None
        print(
            f"{est.name:6} {est.value:10.4f} {PUBLISHED_GRID[est.name]:10.4f} "
            f"{est.ci_low:10.4f} - {est.ci_high:9.4f} {lo:10.4f} - {hi:9.4f}"
        )
        checks[f"{est.name}: CI overlaps published"] = est.ci_low <= hi and est.ci_high >= lo
        if est.name in ("E", "alpha", "beta"):
            checks[f"{est.name}: within 0.01"] = abs(est.value - PUBLISHED_GRID[est.name]) <= 0.01
        else:
            checks[f"{est.name}: inside published CI"] = lo < est.value < hi
    ratio = ours.n_opt / published.n_opt
    checks["N_opt within 15%"] = abs(ratio - 1) <= 0.15
    checks["wall time <= 90 s"] = wall <= 90
    n_ci = ours.n_opt_ci or (float("nan"), float("nan"))
    print(
        f"N_opt at C = {GOPHER_BUDGET:.3g}: ours {ours.n_opt:.4g} (95% CI {n_ci[0]:.3g} - "
        f"{n_ci[1]:.3g}), published fit implies {published.n_opt:.4g} (ratio {ratio:.3f}); "
        f"D_opt {ours.d_opt:.4g}"
    )
    if fit.holdout:
        h = fit.holdout
        print(
            f"Leave-largest-out ({h.n_held_out} runs with C >= {h.threshold:.3g}): mean error "
            f"{h.mean_abs_rel_error:.2%}, max {h.max_abs_rel_error:.2%} (in-sample "
            f"{h.in_sample_mean_abs_rel_error:.2%})"
        )
    print(f"Flags: {list(fit.flags) or 'none'}")
    print(
        f"Wall time: {wall:.1f} s (bootstrap {fit.bootstrap_succeeded}/{args.bootstrap} converged)"
    )
    for name, ok in checks.items():
        print(f"  [{'ok' if ok else 'FAIL'}] {name}")

    out = pathlib.Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "fit": fit.results_dict(),
                "n_opt": ours.n_opt,
                "n_opt_published": published.n_opt,
                "wall_s": wall,
                "checks": checks,
                "machine": machine_info().to_dict(),
            },
            indent=2,
        )
    )


if __name__ == "__main__":  # worker processes re-import this file when they are spawned
    main()
