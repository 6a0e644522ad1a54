"""``compress``: build every candidate, judge it on the eval set, time it, and choose.

The chosen model is the passing candidate with the highest measured throughput at the search's
batch size (ties: the smaller file). A candidate passes only when its whole drop, at the point
estimate, is within the tolerance; the original always passes, so the search can always fall
back to it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import pathlib
import shutil
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence

import numpy as np

from modelscale.compress.atomic import atomic_copy, atomic_write_text, writable_dir
from modelscale.compress.choose import choose, overall_summary
from modelscale.compress.data import EvalSet
from modelscale.compress.metrics import Metric, MetricFn
from modelscale.compress.prepare import plan_search
from modelscale.compress.prune import PruneSpec
from modelscale.compress.results import CompressResult, mark_pareto
from modelscale.compress.runner import ProgressCallback, Search
from modelscale.model.artifact import ModelArtifact
from modelscale.profile.sweep import MeasureOptions

__all__ = ["SUMMARY_FILE", "ProgressCallback", "compress"]

SUMMARY_FILE = "compress_summary.json"
"""The JSON summary written beside the chosen model."""


@contextlib.contextmanager
def _work_dir(keep: pathlib.Path | None) -> Iterator[pathlib.Path]:
    if keep is not None:
        yield writable_dir(keep, option="--keep-candidates")
        return
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="modelscale-compress-"))
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def compress(
    artifact: ModelArtifact | str | os.PathLike[str],
    eval_set: str | os.PathLike[str] | Mapping[str, np.ndarray] | EvalSet,
    *,
    metric: str | MetricFn | Metric | None = None,
    higher_is_better: bool = True,
    max_drop: float | None = None,
    max_rel_drop: float | None = None,
    calibration: str | os.PathLike[str] | Mapping[str, np.ndarray] | EvalSet | None = None,
    batch: int = 8,
    out: str | os.PathLike[str] | None = None,
    output: str | None = None,
    labels_key: str = "labels",
    threads: int | None = None,
    candidates: Sequence[str] | None = None,
    max_calibration_rows: int = 128,
    max_fallback_steps: int = 8,
    reduce_range: bool | None = None,
    resamples: int = 1000,
    seed: int = 0,
    measure: MeasureOptions | None = None,
    keep_candidates: str | os.PathLike[str] | None = None,
    prune: PruneSpec | None = None,
    progress: ProgressCallback | None = None,
) -> CompressResult:
    """Search for a smaller, faster model that stays within an accuracy tolerance.

    Args:
        artifact: The ONNX model (path or loaded artifact).
        eval_set: An .npz (or mapping, or EvalSet) with one array per model input and optional
            labels under ``labels_key``.
        metric: A name in ``METRICS`` or a callable ``fn(outputs, target)`` giving a number or
            one score per example. Default: accuracy with integer labels, MAE with other labels,
            and without labels fidelity to the original (agreement for class scores, else cosine).
        higher_is_better: The direction of a callable metric.
        max_drop: The largest acceptable drop of the metric, in [0, 1] (default 0.01).
        max_rel_drop: Or the largest drop relative to the original's metric, in [0, 1].
        calibration: Inputs for static quantization, disjoint from the eval set. Default: half of
            the eval rows (the other half is then the eval set).
        batch: The batch size that throughput is measured and compared at (and batch 1).
        out: Folder to write the chosen model and ``compress_summary.json`` into.
        output: The model output to evaluate (default: the first).
        labels_key: The key of the labels in the eval set.
        threads: Intra-op threads for every measurement (default: all usable cores).
        candidates: Names of candidates to try (default: all of ``default_specs``).
        max_calibration_rows: Calibrate on at most this many rows (memory grows with them).
        max_fallback_steps: Nodes the accuracy-guarded fallback may keep in float (0: off).
        reduce_range: 7-bit weights; default: on only when the CPU lacks VNNI.
        resamples: Paired bootstrap resamples for the CI of each change.
        seed: Seed for the split, the bootstrap and nothing else.
        measure: When to stop timing each point (default: at most 3 s per point).
        keep_candidates: Keep every candidate's file in this folder instead of a temporary one.
        prune: A PyTorch module (the one ``artifact`` was exported from) to prune at the given
            ratios; each ratio becomes a candidate, judged like the others.
        progress: Called as ``progress(step, done, total)`` as the search moves on.

    Returns:
        Every trial, the Pareto front and the chosen model (written to ``out`` when given).

    Raises:
        InvalidInput: A bad model, eval set, calibration set, option or output folder.
    """
    started = time.perf_counter()
    plan = plan_search(
        artifact,
        eval_set,
        metric=metric,
        higher_is_better=higher_is_better,
        max_drop=max_drop,
        max_rel_drop=max_rel_drop,
        calibration=calibration,
        batch=batch,
        output=output,
        labels_key=labels_key,
        threads=threads,
        candidates=candidates,
        max_calibration_rows=max_calibration_rows,
        max_fallback_steps=max_fallback_steps,
        reduce_range=reduce_range,
        resamples=resamples,
        seed=seed,
        measure=measure,
    )
    out_dir = writable_dir(pathlib.Path(out)) if out is not None else None
    keep = pathlib.Path(keep_candidates) if keep_candidates is not None else None
    with _work_dir(keep) as work:
        search = Search(plan, work, progress, prune)
        search.run()
        trials = mark_pareto(search.trials)
        chosen, reason = choose(trials, plan.judge.metric.name)
        chosen_path = None
        if out_dir is not None:
            source = search.paths.get(chosen.name, plan.artifact.path)
            dest = out_dir / f"{plan.artifact.name}.{chosen.name}.onnx"
            chosen_path = str(atomic_copy(source, dest))
    result = CompressResult(
        model={
            "name": plan.artifact.name,
            "path": str(plan.artifact.path),
            "sha256": plan.artifact.sha256,
            "size_bytes": plan.artifact.size_bytes,
        },
        metric=plan.judge.metric.name,
        metric_task=plan.judge.metric.task,
        output=plan.judge.output,
        tolerance=plan.judge.tolerance.to_dict(plan.judge.original_metric),
        eval_rows=plan.eval_rows,
        eval_source=plan.eval_source,
        calibration_rows=plan.calibration_rows,
        calibration_source=plan.calibration_source,
        trials=trials,
        pareto=tuple(t.name for t in trials if t.pareto),
        chosen=chosen.name,
        chosen_path=chosen_path,
        chosen_sha256=chosen.sha256 or plan.artifact.sha256,
        chosen_is_original=chosen.name == "original",
        reason=reason,
        notes=tuple(plan.notes),
        seconds=time.perf_counter() - started,
        summary="",
        params=plan.params,
    )
    result = dataclasses.replace(result, summary=overall_summary(result))
    if out_dir is not None:
        atomic_write_text(out_dir / SUMMARY_FILE, json.dumps(result.to_dict(), indent=2) + "\n")
    return result
