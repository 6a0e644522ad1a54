"""Acceptance figures of the experiment statistics (modelscale.experiment.stats), by simulation.

Every figure comes from the shipped formulas: the simulations compute the per-look p-values with
the same private functions :func:`modelscale.experiment.stats.compare` calls (they take numpy
arrays as well as floats), on cumulative sums per block of 100 units, and each arm needs 100
units before anything is concluded (``min_units``), as in ``compare``. Units are randomised by a
coin per unit (50/50), not split in exact halves. alpha is 0.05 for comparisons, 0.001 for SRM.

1. aa: A/A experiments with continuous peeking: 10,000 simulated experiments per metric, a look
   after every 100 units up to 100,000 units, for a Bernoulli metric (5% base rate), a Gaussian
   one and a heavy-tailed latency (log-normal, sigma 1). Per metric: the share of experiments the
   sequential test ever rejects (p < 0.05 at any look: SequentialTest's running minimum), with
   its Wilson 95% interval, at planned_units 10,000 and 100,000; beside it, on the same
   simulated data, a naive Welch t-test peeked at the same looks. Acceptance: rate <= 5% and
   Wilson upper bound <= 5.5%.
2. power: 2,000 simulated experiments per row. Bernoulli (base 5%) relative lifts 5/10/20/30%
   and Gaussian effects of 0.02/0.05/0.1/0.2 sd. In ``rows`` each row's N is the fixed-horizon
   sample size for 80% power (two-sided 0.05); in ``shared_n`` every row has the N of a middle
   effect (10% lift; 0.05 sd). Per row: the fixed-horizon Welch test's power at N, the
   sequential test's power by N (planned_units = N) and by 2N, their ratio (acceptance >= 0.8),
   the units (over N) by which the sequential test rejects as often as the fixed test does at
   N, and its median units to decision (among rejections by N, and over all runs with N for a
   run that did not reject by N).
3. srm: 1,000 runs of a correct 50/50 split and 1,000 of a 50/50 split served 50/45 (treatment
   share 45/95), looked at every 100 units up to 100,000: share flagged by the sequential
   sample-ratio-mismatch test (acceptance <= 5% for the correct split) and median units until
   flagged; beside it a chi-square test peeked at the same looks at the same level.
4. cuped: a Gaussian metric with a pre-period covariate correlated 0.5 and 0.8: the variance of
   the CUPED-adjusted difference against the unadjusted one over 2,000 runs of 10,000 units
   (theory: 1 - r^2) and the adjusted estimate's bias; the A/A false-positive rate with CUPED on,
   peeking every 100 units up to 100,000 (2,000 runs); and the power and median units to
   decision of a 0.05 sd effect with and without CUPED (2,000 runs, N = 12,600, planned_units
   = N).

5. canary (real HTTP): the digits example's fp32 model (control) against its INT8 version from
   ``compress`` (treatment) as a canary under the load generator (``modelscale load``'s), ramp
   5 -> 25 -> 50 -> 100%: does it reach 100%; then two broken treatments: one answering wrong
   classes (the logits' columns rolled) and one about 5x slower end to end (a chain of matrix
   products whose result is multiplied by zero): rolled back, by which guardrail, after how
   many treatment requests and seconds.
6. shadow (real HTTP): the primary's p99 with every request copied to a shadow (the INT8
   version) against no experiment at all, alternating runs of --shadow-s seconds at
   --shadow-rate req/s, medians of --shadow-pairs pairs.
7. router: the experiment stage's cost per request (unit from a header, salted hash, arm,
   response headers), p50/p99 over 200,000 calls, beside a request without an experiment.

Run: nice -n 10 .venv/bin/python bench/experiment.py [--only aa,power,srm,cuped] [--scale 1.0]
     [--seed 0] [--out bench/results/experiment.json]
(--scale multiplies every simulation count: 0.05 for a quick smoke run.)
"""

from __future__ import annotations

import argparse
import datetime
import functools
import json
import math
import os
import pathlib
import platform
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
from scipy import stats as sps

from modelscale.experiment import stats

ROOT = pathlib.Path(__file__).resolve().parent.parent
ALPHA = 0.05
MIN_UNITS = 100
BLOCK = 100
Z80 = sps.norm.ppf(0.8)
Z975 = sps.norm.ppf(0.975)

# Per-block sums of one arm: units, sum, sum of squares (and covariate sums for CUPED).
Sums = dict[str, np.ndarray]


def wilson(k: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """Wilson 95% interval of a binomial share k / n."""
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def _rate(hits: np.ndarray) -> dict[str, Any]:
    k, n = int(hits.sum()), int(hits.size)
    lo, hi = wilson(k, n)
    return {"rate": k / n, "wilson95": [lo, hi], "rejected": k, "runs": n}


def _chunks(total: int, size: int) -> Iterator[int]:
    done = 0
    while done < total:
        step = min(size, total - done)
        yield step
        done += step


# --------------------------------------------------------------------------------------------
# Simulated block sums


def _split(rng: np.random.Generator, sims: int, blocks: int, share_t: float = 0.5) -> np.ndarray:
    """Treatment units per block (a coin per unit)."""
    return rng.binomial(BLOCK, share_t, size=(sims, blocks)).astype(np.float64)


def bernoulli_blocks(
    rng: np.random.Generator, sims: int, blocks: int, p_c: float, p_t: float
) -> tuple[Sums, Sums]:
    """Exact per-block sums of a 0/1 metric: events ~ Binomial(units of the arm, rate)."""
    n_t = _split(rng, sims, blocks)
    n_c = BLOCK - n_t
    k_c = rng.binomial(n_c.astype(np.int64), p_c).astype(np.float64)
    k_t = rng.binomial(n_t.astype(np.int64), p_t).astype(np.float64)
    return {"n": n_c, "s": k_c, "ss": k_c}, {"n": n_t, "s": k_t, "ss": k_t}


def _normal_arm(rng: np.random.Generator, n: np.ndarray, mean: float) -> Sums:
    # The sum of n N(mean, 1) units is N(n mean, n); the sum of squares about the block mean
    # is chi-square(n - 1) and independent of it, so sum x^2 = that + sum^2 / n.
    s = rng.standard_normal(n.shape) * np.sqrt(n) + n * mean
    within = 2.0 * rng.gamma(np.maximum(n - 1.0, 0.0) / 2.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        ss = within + np.where(n > 0, s * s / np.maximum(n, 1.0), 0.0)
    return {"n": n, "s": s, "ss": ss}


def gaussian_blocks(
    rng: np.random.Generator, sims: int, blocks: int, effect: float
) -> tuple[Sums, Sums]:
    """Exact per-block sums of a N(0, 1) metric (treatment shifted by ``effect``)."""
    n_t = _split(rng, sims, blocks)
    return _normal_arm(rng, BLOCK - n_t, 0.0), _normal_arm(rng, n_t, effect)


def lognormal_blocks(
    rng: np.random.Generator, sims: int, blocks: int, sigma: float = 1.0
) -> tuple[Sums, Sums]:
    """Per-block sums of a log-normal latency drawn unit by unit (heavy-tailed: no shortcut)."""
    shape = (sims, blocks, BLOCK)
    y = np.exp(sigma * rng.standard_normal(shape, dtype=np.float32))
    y2 = y * y
    t = rng.random(shape, dtype=np.float32) < 0.5
    n_t = t.sum(axis=2, dtype=np.float64)
    s_all = y.sum(axis=2, dtype=np.float64)
    ss_all = y2.sum(axis=2, dtype=np.float64)
    s_t = np.where(t, y, 0.0).sum(axis=2, dtype=np.float64)
    ss_t = np.where(t, y2, 0.0).sum(axis=2, dtype=np.float64)
    return (
        {"n": BLOCK - n_t, "s": s_all - s_t, "ss": ss_all - ss_t},
        {"n": n_t, "s": s_t, "ss": ss_t},
    )


def covariate_blocks(
    rng: np.random.Generator, sims: int, blocks: int, r: float, effect: float
) -> tuple[Sums, Sums]:
    """Per-block sums of y = r x + sqrt(1 - r^2) e (treatment + effect) with its covariate x,
    drawn unit by unit."""
    shape = (sims, blocks, BLOCK)
    x = rng.standard_normal(shape)
    y = r * x + math.sqrt(1.0 - r * r) * rng.standard_normal(shape)
    t = rng.random(shape) < 0.5
    y += effect * t
    arms = []
    for mask in (~t, t):
        arms.append(
            {
                "n": mask.sum(axis=2, dtype=np.float64),
                "s": np.where(mask, y, 0.0).sum(axis=2),
                "ss": np.where(mask, y * y, 0.0).sum(axis=2),
                "xs": np.where(mask, x, 0.0).sum(axis=2),
                "xss": np.where(mask, x * x, 0.0).sum(axis=2),
                "xys": np.where(mask, x * y, 0.0).sum(axis=2),
            }
        )
    return arms[0], arms[1]


def cumulative(arm: Sums) -> Sums:
    """Running sums at each look (the looks are the blocks' ends)."""
    return {k: np.cumsum(v, axis=1) for k, v in arm.items()}


# --------------------------------------------------------------------------------------------
# Per-look tests, with the shipped formulas


def arm_stats(arm: Sums, *, binary: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mean, variance as the test uses it, units) per look; nan where an arm has < 2 units."""
    n = arm["n"]
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = arm["s"] / n
        variance = stats._binary_variance if binary else stats._sample_variance
        var = np.where(n >= 2, variance(n, arm["s"], arm["ss"]), np.nan)
    return mean, var, n


def sequential_p(
    c: Sums,
    t: Sums,
    *,
    binary: bool,
    planned_units: int,
    cuped: bool = False,
    horizon: int | None = None,
) -> np.ndarray:
    """The always-valid p-value at every look (1 before each arm has MIN_UNITS units): the
    open-ended sequence, or the horizon test up to ``horizon`` units (1 after it)."""
    mean_c, var_c, n_c = arm_stats(c, binary=binary)
    mean_t, var_t, n_t = arm_stats(t, binary=binary)
    with np.errstate(invalid="ignore", divide="ignore"):
        if cuped:
            sxy_c, sxx_c = stats._centred(n_c, c["s"], c["xs"], c["xss"], c["xys"])
            sxy_t, sxx_t = stats._centred(n_t, t["s"], t["xs"], t["xss"], t["xys"])
            theta = (sxy_c + sxy_t) / (sxx_c + sxx_t)
            x_pooled = (c["xs"] + t["xs"]) / (n_c + n_t)
            mean_c, var_c = stats._cuped_arm(
                mean_c, var_c, n_c, c["xs"] / n_c, x_pooled, sxy_c, sxx_c, theta
            )
            mean_t, var_t = stats._cuped_arm(
                mean_t, var_t, n_t, t["xs"] / n_t, x_pooled, sxy_t, sxx_t, theta
            )
        d, v, _, p = stats._difference(
            mean_c,
            var_c,
            n_c,
            mean_t,
            var_t,
            n_t,
            stats._rho2(ALPHA, planned_units),
            ALPHA,
            np,
        )
        if horizon is not None:
            n = n_c + n_t
            p = np.where(n <= horizon, stats._bounded_p(d, v, n, horizon), 1.0)
    ready = (n_c >= MIN_UNITS) & (n_t >= MIN_UNITS)
    return np.where(ready & np.isfinite(p), p, 1.0)


def welch_p(c: Sums, t: Sums) -> np.ndarray:
    """The naive dashboard's Welch t-test p-value at every look (same readiness)."""
    mean_c, var_c, n_c = arm_stats(c, binary=False)
    mean_t, var_t, n_t = arm_stats(t, binary=False)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = stats._welch_p(mean_c, var_c, n_c, mean_t, var_t, n_t)
    ready = (n_c >= MIN_UNITS) & (n_t >= MIN_UNITS)
    return np.where(ready & np.isfinite(p), p, 1.0)


def first_rejection(p: np.ndarray, alpha: float = ALPHA) -> np.ndarray:
    """Units at the first look with p < alpha; 0 for a run that never rejects."""
    hit = p < alpha
    return np.where(hit.any(axis=1), (hit.argmax(axis=1) + 1) * BLOCK, 0)


# --------------------------------------------------------------------------------------------
# Sections


def aa(args: argparse.Namespace) -> dict[str, Any]:
    """A/A false-positive rate with a look every 100 units, sequential vs naive."""
    sims = max(50, round(10_000 * args.scale))
    blocks = 100_000 // BLOCK
    planned = (10_000, 100_000)
    rng = np.random.default_rng(args.seed)
    draws: dict[str, tuple[Callable[[int], tuple[Sums, Sums]], bool, int]] = {
        "bernoulli_5pct": (lambda s: bernoulli_blocks(rng, s, blocks, 0.05, 0.05), True, 1000),
        "gaussian": (lambda s: gaussian_blocks(rng, s, blocks, 0.0), False, 1000),
        # about 60 bytes a unit across the temporaries: 40 runs x 100,000 units is ~250 MB
        "lognormal_sigma1": (lambda s: lognormal_blocks(rng, s, blocks), False, 40),
    }
    out: dict[str, Any] = {
        "runs": sims,
        "max_units": blocks * BLOCK,
        "look_every": BLOCK,
        "min_units_per_arm": MIN_UNITS,
        "alpha": ALPHA,
    }
    for name, (draw, binary, chunk) in draws.items():
        t0 = time.perf_counter()
        seq_first: dict[int, list[np.ndarray]] = {pu: [] for pu in planned}
        horizon_first: list[np.ndarray] = []
        naive_first: list[np.ndarray] = []
        naive_end: list[np.ndarray] = []
        for step in _chunks(sims, chunk):
            c, t = (cumulative(a) for a in draw(step))
            for pu in planned:
                seq_first[pu].append(
                    first_rejection(sequential_p(c, t, binary=binary, planned_units=pu))
                )
            horizon_first.append(
                first_rejection(
                    sequential_p(c, t, binary=binary, planned_units=1, horizon=blocks * BLOCK)
                )
            )
            naive = welch_p(c, t)
            naive_first.append(first_rejection(naive))
            naive_end.append(naive[:, -1] < ALPHA)
        res: dict[str, Any] = {}
        for pu in planned:
            first = np.concatenate(seq_first[pu])
            fpr = _rate(first > 0)
            fpr["accept"] = fpr["rate"] <= 0.05 and fpr["wilson95"][1] <= 0.055
            res[f"sequential_planned_{pu}"] = fpr
        fpr = _rate(np.concatenate(horizon_first) > 0)
        fpr["accept"] = fpr["rate"] <= 0.05 and fpr["wilson95"][1] <= 0.055
        res["horizon_100000"] = fpr
        naive = np.concatenate(naive_first)
        res["naive_welch_peeking"] = _rate(naive > 0)
        # The same t-test read once, at 100,000 units: what it is valid for (about 5%).
        res["naive_welch_at_end_only"] = _rate(np.concatenate(naive_end))
        res["seconds"] = time.perf_counter() - t0
        out[name] = res
        print(
            f"aa {name}: sequential {res['sequential_planned_10000']['rate']:.4f} "
            f"(planned 10k), {res['sequential_planned_100000']['rate']:.4f} (planned 100k), "
            f"horizon test {res['horizon_100000']['rate']:.4f}, "
            f"naive {res['naive_welch_peeking']['rate']:.3f} [{res['seconds']:.0f} s]",
            flush=True,
        )
    return out


def _n_for_power(var_sum: float, delta: float) -> int:
    """Total units (both arms, rounded up to a look) for 80% power of a two-sided 0.05 test."""
    per_arm = (Z975 + Z80) ** 2 * var_sum / delta**2
    return int(math.ceil(2 * per_arm / BLOCK) * BLOCK)


def _power_row(
    rng: np.random.Generator, label: str, effect: float, n_max: int, binary: bool, sims: int
) -> dict[str, Any]:
    """One row: fixed-horizon power at N, the sequential test's (planned_units = N) by N and
    2N, and its units to decision."""
    t0 = time.perf_counter()
    base = 0.05
    blocks = 2 * n_max // BLOCK
    end = n_max // BLOCK - 1
    fixed, first, bounded = [], [], []
    for step in _chunks(sims, max(1, 2_000_000 // blocks)):
        if binary:
            c, t = bernoulli_blocks(rng, step, blocks, base, base * (1 + effect))
        else:
            c, t = gaussian_blocks(rng, step, blocks, effect)
        c, t = cumulative(c), cumulative(t)
        fixed.append(welch_p(c, t)[:, end] < ALPHA)
        first.append(first_rejection(sequential_p(c, t, binary=binary, planned_units=n_max)))
        bounded.append(
            first_rejection(sequential_p(c, t, binary=binary, planned_units=1, horizon=n_max))
        )
    units = np.concatenate(first)
    by_n = (units > 0) & (units <= n_max)
    h_units = np.concatenate(bounded)
    h_by_n = h_units > 0
    p_horizon = float(h_by_n.mean())
    p_fixed = float(np.concatenate(fixed).mean())
    p_seq = float(by_n.mean())
    # The units by which the sequential test has rejected in as many runs as the fixed test
    # does at N: the sample-size price of being able to stop at any look.
    ordered = np.sort(np.where(units > 0, units, np.inf))
    k = math.ceil(p_fixed * sims)
    match = float(ordered[k - 1]) if k > 0 and math.isfinite(ordered[k - 1]) else None
    return {
        "case": label,
        "effect": effect,
        "effect_unit": "relative lift" if binary else "sd",
        "N": n_max,
        "runs": sims,
        "fixed_power_at_N": p_fixed,
        "sequential_power_by_N": p_seq,
        "sequential_power_by_2N": float((units > 0).mean()),
        "ratio": p_seq / p_fixed if p_fixed else None,
        "horizon_power_by_N": p_horizon,
        "horizon_ratio": p_horizon / p_fixed if p_fixed else None,
        "accept": bool(p_fixed and p_horizon / p_fixed >= 0.8),
        "horizon_median_units_to_decision_all": float(np.median(np.where(h_by_n, h_units, n_max))),
        "sequential_units_to_match_fixed_power_over_N": None if match is None else match / n_max,
        "median_units_to_decision_rejections": float(np.median(units[by_n]))
        if by_n.any()
        else None,
        "median_units_to_decision_all": float(np.median(np.where(by_n, units, n_max))),
        "seconds": time.perf_counter() - t0,
    }


def power(args: argparse.Namespace) -> dict[str, Any]:
    """Fixed-horizon power at N against the sequential test's power by N and by 2N."""
    sims = max(50, round(2_000 * args.scale))
    rng = np.random.default_rng(args.seed + 1)
    base = 0.05
    lifts = (0.05, 0.10, 0.20, 0.30)
    effects = (0.02, 0.05, 0.10, 0.20)

    def n_bernoulli(lift: float) -> int:
        p_t = base * (1 + lift)
        return _n_for_power(base * (1 - base) + p_t * (1 - p_t), p_t - base)

    # Each row at its own N (80% fixed-horizon power), then every effect at the N of a middle
    # one (10% lift, 0.05 sd): small effects underpowered, large ones decided early.
    tables: dict[str, list[tuple[str, float, int, bool]]] = {
        "rows": [(f"bernoulli 5% base, lift {x:.0%}", x, n_bernoulli(x), True) for x in lifts]
        + [(f"gaussian, {x} sd", x, _n_for_power(2.0, x), False) for x in effects],
        "shared_n": [
            (f"bernoulli 5% base, lift {x:.0%}", x, n_bernoulli(0.10), True) for x in lifts
        ]
        + [(f"gaussian, {x} sd", x, _n_for_power(2.0, 0.05), False) for x in effects],
    }
    out: dict[str, Any] = {"alpha": ALPHA, "look_every": BLOCK, "min_units_per_arm": MIN_UNITS}
    for table, cases in tables.items():
        out[table] = []
        for label, effect, n_max, binary in cases:
            row = _power_row(rng, label, effect, n_max, binary, sims)
            out[table].append(row)
            print(
                f"power {table} {label}: N {n_max}, fixed {row['fixed_power_at_N']:.3f}, "
                f"sequential {row['sequential_power_by_N']:.3f} by N, "
                f"{row['sequential_power_by_2N']:.3f} by 2N, median units "
                f"{row['median_units_to_decision_all']:.0f}; horizon test "
                f"{row['horizon_power_by_N']:.3f} (x{row['horizon_ratio']:.2f} of fixed), median "
                f"units {row['horizon_median_units_to_decision_all']:.0f} "
                f"[{row['seconds']:.0f} s]",
                flush=True,
            )
    return out


def srm(args: argparse.Namespace) -> dict[str, Any]:
    """The sequential SRM test on a correct split and on a 50/45 one, with a peeked chi-square."""
    runs = max(50, round(1_000 * args.scale))
    blocks = 100_000 // BLOCK
    alpha = stats.DEFAULT_SRM_ALPHA
    shares = np.array([0.5, 0.5])
    rng = np.random.default_rng(args.seed + 2)
    out: dict[str, Any] = {
        "runs": runs,
        "max_units": blocks * BLOCK,
        "look_every": BLOCK,
        "alpha": alpha,
        "concentration": stats.DEFAULT_SRM_CONCENTRATION,
    }
    for name, share_t in (("correct_50_50", 0.5), ("served_50_45", 45 / 95)):
        t0 = time.perf_counter()
        n_t = _split(rng, runs, blocks, share_t).cumsum(axis=1)
        n_c = BLOCK * np.arange(1, blocks + 1)[None, :] - n_t
        counts = np.stack([n_c, n_t], axis=-1)
        log_bf = stats._srm_log_bf(counts, shares, stats.DEFAULT_SRM_CONCENTRATION)
        # SequentialSrm's p-value: 1 / the largest Bayes factor so far.
        p = np.minimum(1.0, np.exp(-np.maximum.accumulate(log_bf, axis=1)))
        first = first_rejection(p, alpha)
        expected = counts.sum(axis=-1, keepdims=True) * shares
        chi2 = ((counts - expected) ** 2 / expected).sum(axis=-1)
        naive = first_rejection(sps.chi2.sf(chi2, df=1), alpha)
        res: dict[str, Any] = {
            "sequential": _rate(first > 0),
            "naive_chi2_peeking": _rate(naive > 0),
        }
        if (first > 0).any():
            res["sequential"]["median_units_until_flagged"] = float(np.median(first[first > 0]))
            res["sequential"]["p90_units_until_flagged"] = float(
                np.percentile(first[first > 0], 90)
            )
        if name == "correct_50_50":
            res["sequential"]["accept"] = res["sequential"]["rate"] <= 0.05
        res["seconds"] = time.perf_counter() - t0
        out[name] = res
        print(
            f"srm {name}: flagged {res['sequential']['rate']:.4f} "
            f"(naive chi-square peeked {res['naive_chi2_peeking']['rate']:.3f}) "
            f"[{res['seconds']:.0f} s]",
            flush=True,
        )
    return out


def cuped(args: argparse.Namespace) -> dict[str, Any]:
    """CUPED's variance reduction against 1 - r^2, its A/A rate with peeking, and its speed-up."""
    runs = max(50, round(2_000 * args.scale))
    rng = np.random.default_rng(args.seed + 3)
    out: dict[str, Any] = {"runs": runs, "alpha": ALPHA, "look_every": BLOCK}
    effect = 0.05
    n_effect = _n_for_power(2.0, effect)
    out["effect_sd"] = effect
    out["N"] = n_effect
    for r in (0.5, 0.8):
        t0 = time.perf_counter()
        res: dict[str, Any] = {"theory_variance_ratio": 1 - r * r}
        # Variance of the estimate over runs at 10,000 units, with a true effect of 0.05 sd.
        d_raw: list[float] = []
        d_adj: list[float] = []
        v_raw: list[float] = []
        v_adj: list[float] = []
        for step in _chunks(runs, 200):
            c, t = covariate_blocks(rng, step, 100, r, effect)
            c = {k: v.sum(axis=1) for k, v in c.items()}
            t = {k: v.sum(axis=1) for k, v in t.items()}
            for cuped_on, d_out, v_out in ((False, d_raw, v_raw), (True, d_adj, v_adj)):
                for i in range(step):
                    mc = stats.Moments(
                        int(c["n"][i]), c["s"][i], c["ss"][i], c["xs"][i], c["xss"][i], c["xys"][i]
                    )
                    mt = stats.Moments(
                        int(t["n"][i]), t["s"][i], t["ss"][i], t["xs"][i], t["xss"][i], t["xys"][i]
                    )
                    got = stats.compare(mc, mt, cuped=cuped_on)
                    d_out.append(got.difference)
                    half = (got.ci[1] - got.ci[0]) / 2
                    v_out.append(half * half)
        res["variance_ratio_measured"] = float(np.var(d_adj) / np.var(d_raw))
        res["ci_width_ratio_squared"] = float(np.mean(v_adj) / np.mean(v_raw))
        res["mean_difference_raw"] = float(np.mean(d_raw))
        res["mean_difference_cuped"] = float(np.mean(d_adj))
        res["bias_cuped_in_se"] = float(
            (np.mean(d_adj) - effect) / (np.std(d_adj) / math.sqrt(len(d_adj)))
        )
        # A/A with CUPED on: a look every 100 units up to 100,000.
        first_aa = []
        for step in _chunks(runs, 25):
            c, t = (cumulative(a) for a in covariate_blocks(rng, step, 1000, r, 0.0))
            p = sequential_p(c, t, binary=False, planned_units=10_000, cuped=True)
            first_aa.append(first_rejection(p))
        aa_first = np.concatenate(first_aa)
        res["aa_false_positive_rate"] = _rate(aa_first > 0)
        res["aa_false_positive_rate"]["accept"] = res["aa_false_positive_rate"]["rate"] <= 0.05
        # Units to decision for a 0.05 sd effect, planned_units = N, looks up to N.
        decided: dict[str, list[np.ndarray]] = {"raw": [], "cuped": []}
        blocks = n_effect // BLOCK
        for step in _chunks(runs, max(1, 2_000_000 // (blocks * BLOCK))):
            c, t = (cumulative(a) for a in covariate_blocks(rng, step, blocks, r, effect))
            for key, on in (("raw", False), ("cuped", True)):
                p = sequential_p(c, t, binary=False, planned_units=n_effect, cuped=on)
                decided[key].append(first_rejection(p))
        for key, parts in decided.items():
            units = np.concatenate(parts)
            hit = units > 0
            res[f"effect_{key}"] = {
                "power_by_N": float(hit.mean()),
                "median_units_to_decision_all": float(np.median(np.where(hit, units, n_effect))),
                "median_units_to_decision_rejections": float(np.median(units[hit]))
                if hit.any()
                else None,
            }
        res["seconds"] = time.perf_counter() - t0
        out[f"r_{r}"] = res
        print(
            f"cuped r={r}: variance ratio {res['variance_ratio_measured']:.3f} "
            f"(theory {1 - r * r:.3f}), A/A {res['aa_false_positive_rate']['rate']:.4f}, "
            f"median units {res['effect_raw']['median_units_to_decision_all']:.0f} -> "
            f"{res['effect_cuped']['median_units_to_decision_all']:.0f} "
            f"[{res['seconds']:.0f} s]",
            flush=True,
        )
    return out


# --------------------------------------------------------------------------------------------
# Over real HTTP


@functools.cache
def _digits() -> tuple[Any, pathlib.Path]:
    """The digits example and its INT8 version from compress (the chosen one when it is INT8,
    else the best INT8 candidate that passed); built once per run, shared by the sections."""
    import tempfile

    from modelscale.compress import CompressOptions
    from modelscale.examples.build import build_example
    from modelscale.workflow.example import compress_example

    work = pathlib.Path(tempfile.mkdtemp(prefix="bench-experiment-digits-"))
    ex = build_example("digits", out_dir=work / "digits")
    kept = work / "candidates"
    got = compress_example(
        ex,
        options=CompressOptions(
            out=work / "compressed",
            max_drop=0.01,
            candidates=("int8-dynamic", "int8-static-pct"),
            keep_candidates=kept,
        ),
    )
    if got.chosen_path and "int8" in got.chosen:
        return ex, pathlib.Path(got.chosen_path)
    passed = [t for t in got.trials if "int8" in t.name and t.passed]
    if not passed:
        raise SystemExit("compress found no INT8 version of digits within 1 point of accuracy")
    return ex, kept / f"{passed[0].name}.onnx"


def _rewire(model_path: pathlib.Path, out: pathlib.Path, *, wrong: bool, slow: int) -> pathlib.Path:
    """digits with its logits' columns rolled (``wrong``) or with ``slow`` 384x384 matrix
    products per batch whose result is multiplied by zero (same answers, more time)."""
    import onnx
    from onnx import helper, numpy_helper

    m = onnx.load(str(model_path))
    g = m.graph
    out_name = g.output[0].name
    for node in g.node:
        node.output[:] = [f"{o}_raw" if o == out_name else o for o in node.output]
    raw = f"{out_name}_raw"
    if wrong:
        order = np.roll(np.arange(10), 1).astype(np.int64)
        g.initializer.append(numpy_helper.from_array(order, "rolled"))
        g.node.append(helper.make_node("Gather", [raw, "rolled"], [out_name], axis=1))
    else:
        d = 384
        rng = np.random.default_rng(0)
        g.initializer.append(numpy_helper.from_array(np.zeros((1,), np.float32), "zero"))
        g.initializer.append(
            numpy_helper.from_array((rng.standard_normal((d, d)) / d).astype(np.float32), "k0")
        )
        g.node.append(helper.make_node("ReduceMean", [g.input[0].name], ["level"], keepdims=0))
        g.node.append(helper.make_node("Mul", ["k0", "level"], ["h0"]))
        for i in range(slow):
            g.node.append(helper.make_node("MatMul", [f"h{i}", "k0"], [f"m{i}"]))
            g.node.append(helper.make_node("Tanh", [f"m{i}"], [f"h{i + 1}"]))
        g.node.append(helper.make_node("ReduceMean", [f"h{slow}"], ["spent"], keepdims=0))
        g.node.append(helper.make_node("Mul", ["spent", "zero"], ["nothing"]))
        g.node.append(helper.make_node("Add", [raw, "nothing"], [out_name]))
    onnx.checker.check_model(m)
    onnx.save(m, str(out))
    return out


def _ort_ms(path: pathlib.Path, inputs: pathlib.Path) -> float:
    """Median single-row time of one ONNX Runtime session, 1 thread."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    with np.load(inputs) as z:
        x = z[name][:1].astype(np.float32)
    times = []
    for _ in range(60):
        t = time.perf_counter()
        sess.run(None, {name: x})
        times.append(time.perf_counter() - t)
    return float(np.median(times[10:]) * 1000)


def _rollout_row(got: Any) -> dict[str, Any]:
    status = got.status
    events = [e for e in status.get("events", []) if e["event"] in ("rolled back", "promoted")]
    arms = status["arms"]
    return {
        "state": got.state,
        "seconds": got.seconds,
        "requests_sent": got.requests,
        "treatment_requests_before_decision": got.treatment_requests,
        "steps": [{"share": s, "seconds": sec} for s, sec in got.steps],
        "why": events[-1]["detail"] if events else None,
        "control_p50_ms": arms["control"].get("p50_ms"),
        "treatment_p50_ms": arms["treatment"].get("p50_ms"),
        "control_p99_ms": arms["control"].get("p99_ms"),
        "treatment_p99_ms": arms["treatment"].get("p99_ms"),
    }


def canary(args: argparse.Namespace) -> dict[str, Any]:
    """A real canary of INT8 digits, and of a wrong and a 5x slower treatment."""
    import tempfile

    from modelscale.workflow.rollout import canary_rollout

    work = pathlib.Path(tempfile.mkdtemp(prefix="bench-experiment-"))
    ex, int8 = _digits()
    assert ex.eval_path is not None
    out: dict[str, Any] = {"rate": args.canary_rate, "ramp": [5, 25, 50, 100], "replicas": 1}

    def roll(treatment: pathlib.Path) -> dict[str, Any]:
        got = canary_rollout(
            ex.model_path,
            treatment,
            inputs=ex.eval_path,
            rate=args.canary_rate,
            ramp=(5, 25, 50, 100),
            step_min_units=100,
            step_min_s=2,
            min_units=50,
            max_s=120,
        )
        return _rollout_row(got)

    out["int8"] = {"model": int8.name, **roll(int8)}
    print(f"canary int8: {out['int8']['state']} in {out['int8']['seconds']:.1f} s", flush=True)
    wrong = _rewire(ex.model_path, work / "wrong.onnx", wrong=True, slow=0)
    out["wrong_outputs"] = roll(wrong)
    print(
        f"canary wrong outputs: {out['wrong_outputs']['state']} after "
        f"{out['wrong_outputs']['treatment_requests_before_decision']} treatment requests",
        flush=True,
    )
    # 5x slower end to end: the extra compute is 4x the control's median latency at this rate.
    control_p50 = out["int8"]["control_p50_ms"]
    per_step = _ort_ms(
        _rewire(ex.model_path, work / "probe.onnx", wrong=False, slow=20), ex.eval_path
    )
    per_step = max(1e-3, (per_step - _ort_ms(ex.model_path, ex.eval_path)) / 20)
    steps = max(1, round(4 * control_p50 / per_step))
    slow = _rewire(ex.model_path, work / "slow.onnx", wrong=False, slow=steps)
    out["slow"] = {"matmuls": steps, **roll(slow)}
    c50, t50 = out["slow"]["control_p50_ms"], out["slow"]["treatment_p50_ms"]
    out["slow"]["p50_ratio"] = t50 / c50 if c50 and t50 else None
    print(
        f"canary slow (x{out['slow']['p50_ratio'] or 0:.1f} p50): {out['slow']['state']} after "
        f"{out['slow']['treatment_requests_before_decision']} treatment requests",
        flush=True,
    )
    out["accept"] = (
        out["int8"]["state"] == "promoted"
        and out["wrong_outputs"]["state"] == "rolled_back"
        and out["slow"]["state"] == "rolled_back"
    )
    return out


def shadow(args: argparse.Namespace) -> dict[str, Any]:
    """The primary's p99 with a shadow copying every request, against no experiment."""

    from modelscale.config import DeploymentSpec
    from modelscale.loadgen import LoadOptions, run_load
    from modelscale.serve import start_server

    ex, int8 = _digits()

    def spec(with_shadow: bool) -> DeploymentSpec:
        model: dict[str, Any] = {
            "versions": {"1": {"path": str(ex.model_path)}},
            "replicas": 1,
            "batching": {"max_batch": 16, "max_wait_ms": 2},
            "monitor": {"enabled": False},
        }
        if with_shadow:
            model["versions"]["2"] = {"path": str(int8), "weight": 0}
            model["experiment"] = {
                "name": f"shadow-{time.time_ns()}",
                "kind": "shadow",
                "arms": {"control": "1", "treatment": "2"},
            }
        return DeploymentSpec.from_dict(
            {"models": {"digits": model}, "log": {"enabled": False}}, source="bench"
        )

    runs: dict[str, list[dict[str, Any]]] = {"none": [], "shadow": []}
    for pair in range(args.shadow_pairs):
        order = ("none", "shadow") if pair % 2 == 0 else ("shadow", "none")
        for mode in order:
            with start_server(spec(mode == "shadow")) as server:
                got = run_load(
                    server.url,
                    model="digits",
                    options=LoadOptions(
                        rate=args.shadow_rate,
                        duration_s=args.shadow_s,
                        pattern="poisson",
                        inputs=ex.eval_path,
                        warmup_s=2,
                        seed=pair,
                    ),
                )
                row: dict[str, Any] = {
                    "pair": pair,
                    "p50_ms": got.overall.p50_ms,
                    "p99_ms": got.overall.p99_ms,
                    "ok": got.overall.ok,
                    "sent": got.overall.sent,
                }
                if mode == "shadow":
                    with urllib.request.urlopen(
                        f"{server.url}/v2/models/digits/experiment", timeout=10
                    ) as r:
                        sh = json.loads(r.read())["shadow"]
                    row["copies"] = sh
            runs[mode].append(row)
            print(f"shadow pair {pair} {mode}: p99 {row['p99_ms']:.2f} ms", flush=True)
    med = {m: float(np.median([r["p99_ms"] for r in rows])) for m, rows in runs.items()}
    ratio = med["shadow"] / med["none"]
    return {
        "rate": args.shadow_rate,
        "seconds_per_run": args.shadow_s,
        "pairs": args.shadow_pairs,
        "runs": runs,
        "median_p99_ms": med,
        "p99_ratio": ratio,
        "accept": ratio <= 1.05,
    }


def router(args: argparse.Namespace) -> dict[str, Any]:
    """The experiment stage's time per request, called directly (no event loop, no HTTP)."""
    from types import SimpleNamespace

    from modelscale.config import ExperimentSpec
    from modelscale.experiment.assign import UnitReader
    from modelscale.experiment.feature import ExperimentStage, _Live
    from modelscale.experiment.state import Experiment
    from modelscale.serve import Endpoint, Exchange

    spec = ExperimentSpec.model_validate(
        {"kind": "ab", "arms": {"control": "1", "treatment": "2"}, "unit": "header:X-User-Id"}
    )
    exp = Experiment("digits", spec)
    runtime = SimpleNamespace(contract=SimpleNamespace(input_key=("pixels",)))
    live = _Live(exp, UnitReader(spec.unit, required=spec.unit_required), (runtime, runtime))
    stage = ExperimentStage({"digits": live})
    other = ExperimentStage({})
    calls = max(2_000, round(200_000 * args.scale))
    users = [f"user-{i}".encode() for i in range(10_000)]

    def timed(st: ExperimentStage) -> np.ndarray:
        out = np.empty(calls)
        scope = {"type": "http", "method": "POST", "headers": []}
        for i in range(calls):
            ex = Exchange(
                scope, None, Endpoint.INFER, path="/v2/models/digits/infer", model="digits"
            )
            ex.headers[b"x-user-id"] = users[i % len(users)]
            ex.request_id = None
            t0 = time.perf_counter_ns()
            coro = st(ex)
            try:  # noqa: SIM105 (a with-block would be timed too)
                coro.send(None)
            except StopIteration:
                pass
            out[i] = time.perf_counter_ns() - t0
        return out / 1000.0

    timed(stage)  # warm up
    with_exp, without = timed(stage), timed(other)
    res = {
        "calls": calls,
        "with_experiment_us": {
            "p50": float(np.percentile(with_exp, 50)),
            "p99": float(np.percentile(with_exp, 99)),
            "mean": float(with_exp.mean()),
        },
        "no_experiment_us": {
            "p50": float(np.percentile(without, 50)),
            "p99": float(np.percentile(without, 99)),
        },
    }
    res["accept"] = res["with_experiment_us"]["p99"] < 50
    print(
        f"router: p50 {res['with_experiment_us']['p50']:.1f} us, p99 "
        f"{res['with_experiment_us']['p99']:.1f} us (without an experiment p99 "
        f"{res['no_experiment_us']['p99']:.1f} us)",
        flush=True,
    )
    return res


SECTIONS: dict[str, Callable[[argparse.Namespace], dict[str, Any]]] = {
    "aa": aa,
    "power": power,
    "srm": srm,
    "cuped": cuped,
    "canary": canary,
    "shadow": shadow,
    "router": router,
}


def _machine() -> str:
    try:
        for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"{line.split(':', 1)[1].strip()} x {os.cpu_count()}"
    except OSError:
        pass
    return f"{platform.processor() or platform.machine()} x {os.cpu_count()}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--only", default=",".join(SECTIONS))
    p.add_argument("--scale", type=float, default=1.0, help="multiplies every simulation count")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=str(ROOT / "bench" / "results" / "experiment.json"))
    p.add_argument("--canary-rate", type=float, default=300.0)
    p.add_argument("--shadow-rate", type=float, default=200.0)
    p.add_argument("--shadow-s", type=float, default=20.0)
    p.add_argument("--shadow-pairs", type=int, default=3)
    args = p.parse_args(argv)
    names = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = [n for n in names if n not in SECTIONS]
    if unknown:
        p.error(f"unknown section(s) {', '.join(unknown)}; choose from {', '.join(SECTIONS)}")
    out_path = pathlib.Path(args.out)
    results: dict[str, Any] = json.loads(out_path.read_text()) if out_path.exists() else {}
    for name in names:
        print(f"== {name}", flush=True)
        t0 = time.perf_counter()
        got = SECTIONS[name](args)
        got["meta"] = {
            "seconds": time.perf_counter() - t0,
            "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "machine": _machine(),
            "load_avg_at_start": os.getloadavg(),
            "seed": args.seed,
            "scale": args.scale,
        }
        results[name] = got
        out_path.parent.mkdir(parents=True, exist_ok=True)
        out_path.write_text(json.dumps(results, indent=1, default=str))
        print(f"{name}: {got['meta']['seconds']:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
