"""Watching a served example for drift: a baseline, clean traffic, shifted traffic, the verdicts.

``watch_example`` is the demo's monitor step and its end-to-end test: it profiles the digits
model on one half of its labelled held-out split (the baseline, with the reference accuracy and
the confidence calibration), serves it with small count-closed windows, sends clean traffic (the
other half: images neither the model nor the baseline has seen) and then shifted traffic (the
same images with lower contrast and sensor noise) through the open-loop load generator, and
reads back every window and alert the server recorded in the knowledge base.
"""

from __future__ import annotations

import pathlib
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from modelscale.config import DeploymentSpec
from modelscale.examples import ExampleBuild
from modelscale.loadgen import LoadOptions, LoadResult, run_load
from modelscale.model import ModelArtifact, load_npz
from modelscale.monitor import Baseline, BaselineOptions, build_baseline
from modelscale.progress import OnProgress, report
from modelscale.serve import start_server
from modelscale.workflow.record import Recorder

__all__ = ["WatchStep", "shift_digits", "watch_example"]


@dataclass(frozen=True)
class WatchStep:
    """What watching the example found.

    Attributes:
        baseline: The baseline (with its run id).
        clean: The load test of clean traffic.
        shifted: The load test of shifted traffic.
        clean_path: The clean inputs (an .npz for ``modelscale load --inputs``).
        shifted_path: The shifted inputs.
        shift_at: Unix time the shifted traffic started.
        windows: The windows the server closed, oldest first (runs of kind ``drift``).
        alerts: The alerts the server recorded (runs of kind ``drift``), oldest first.
        flagged_after: Windows holding shifted traffic up to and including the first one that
            flagged drift (1: the first such window did); None when none did.
    """

    baseline: Baseline
    clean: LoadResult
    shifted: LoadResult
    clean_path: pathlib.Path
    shifted_path: pathlib.Path
    shift_at: float
    windows: tuple[dict[str, Any], ...]
    alerts: tuple[dict[str, Any], ...]
    flagged_after: int | None


def shift_digits(pixels: np.ndarray, *, seed: int = 0) -> np.ndarray:
    """Digits as a worse camera sees them: half the contrast, plus sensor noise."""
    rng = np.random.default_rng(seed)
    shifted = 0.5 + (pixels - 0.5) * 0.5 + rng.normal(0.0, 0.15, pixels.shape)
    return np.clip(shifted, 0.0, 1.0).astype(pixels.dtype)


def _halves(path: pathlib.Path) -> tuple[np.ndarray, np.ndarray]:
    """Row indices of two halves of a labelled split, each with every class's share."""
    with np.load(path, allow_pickle=False) as npz:
        labels = np.asarray(npz["labels"])
    order = np.argsort(labels, kind="stable")
    return np.sort(order[0::2]), np.sort(order[1::2])


def watch_example(
    example: ExampleBuild,
    out: pathlib.Path,
    *,
    recorder: Recorder,
    rate: float = 200.0,
    window_requests: int = 200,
    on_progress: OnProgress | None = None,
) -> WatchStep:
    """Baseline, serve, send clean then shifted traffic, and read back windows and alerts."""
    if example.eval_path is None:
        raise ValueError(f"the {example.name} example has no labelled split to watch against")
    store = recorder.store
    if store is None:
        raise ValueError("watching needs a knowledge base (the server records windows there)")
    artifact = ModelArtifact.load(example.model_path, name="digits")
    report(on_progress, "baseline", 0, None)
    held_out = load_npz(example.eval_path, artifact.signature)
    with np.load(example.eval_path, allow_pickle=False) as npz:
        labels = np.asarray(npz["labels"])
    ref, live = _halves(example.eval_path)
    baseline = build_baseline(
        artifact,
        {k: v[ref] for k, v in held_out.items()},
        labels=labels[ref],
        options=BaselineOptions(name="digits-eval-half"),
        source=f"{example.eval_path.name} (half)",
        on_progress=on_progress,
    )
    baseline_run = recorder.run_id(baseline)
    out.mkdir(parents=True, exist_ok=True)
    clean_path, shifted_path = out / "digits_clean.npz", out / "digits_shifted.npz"
    np.savez(clean_path, pixels=held_out["pixels"][live])
    np.savez(shifted_path, pixels=shift_digits(held_out["pixels"][live]))
    spec = DeploymentSpec.from_dict(
        {
            "models": {
                "digits": {
                    "versions": {"1": {"path": str(example.model_path)}},
                    "batching": {"max_batch": 16, "max_wait_ms": 2},
                    "monitor": {"window_s": 3600, "window_requests": window_requests},
                }
            },
            "log": {"path": str(out / "logs"), "flush_s": 1},
            "store": {"url": store.url.render_as_string(hide_password=False)},
        },
        source="the demo's monitored deployment",
    )
    seconds = window_requests / rate
    report(on_progress, "starting the server", 0, None)
    with start_server(spec) as server:
        clean_load = run_load(
            server.url,
            model="digits",
            options=LoadOptions(rate=rate, duration_s=seconds * 1.25, inputs=clean_path),
            on_progress=on_progress,
        )
        shift_at = time.time()
        shifted_load = run_load(
            server.url,
            model="digits",
            options=LoadOptions(rate=rate, duration_s=seconds * 2.5, inputs=shifted_path),
            on_progress=on_progress,
        )
    # The server has stopped: its last window is closed and its alerts delivered.
    recorder.record(clean_load)
    recorder.record(shifted_load)
    windows, alerts = [], []
    for run in reversed(store.runs(model=artifact.sha256, kind="drift")):
        if baseline_run is not None and run.id < baseline_run:
            continue
        if "verdict" in run.results:
            windows.append(run.results | {"run_id": run.id})
        elif "alert" in run.results:
            alerts.append(run.results["alert"] | {"run_id": run.id})
    flagged_after = None
    seen = 0
    for w in windows:
        if w["end"] <= shift_at:
            continue
        seen += 1
        if w["verdict"] == "drift":
            flagged_after = seen
            break
    return WatchStep(
        baseline=Baseline.from_run(store.run(baseline_run)) if baseline_run else baseline,
        clean=clean_load,
        shifted=shifted_load,
        clean_path=clean_path,
        shifted_path=shifted_path,
        shift_at=shift_at,
        windows=tuple(windows),
        alerts=tuple(alerts),
        flagged_after=flagged_after,
    )
