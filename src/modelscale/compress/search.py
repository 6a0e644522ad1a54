"""``compress``: build every candidate, judge it on the eval set, time it, and choose.

The chosen model is the passing candidate with the highest measured throughput at the search's
batch size (ties: the smaller file). A candidate passes only when its whole drop, at the point
estimate, is within the tolerance; the original always passes, so the search can always fall
back to it.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import time
from collections.abc import Mapping

import numpy as np

from modelscale.compress.atomic import atomic_copy, atomic_write_text, writable_dir
from modelscale.compress.choose import choose, overall_summary
from modelscale.compress.data import EvalSet
from modelscale.compress.options import CompressOptions
from modelscale.compress.prepare import plan_search
from modelscale.compress.results import CompressResult, mark_pareto
from modelscale.compress.runner import Search
from modelscale.compress.workdir import work_dir
from modelscale.model.artifact import ModelArtifact
from modelscale.progress import OnProgress

__all__ = ["SUMMARY_FILE", "compress"]

SUMMARY_FILE = "compress_summary.json"
"""The JSON summary written beside the chosen model."""


def compress(
    artifact: ModelArtifact | str | os.PathLike[str],
    eval_set: str | os.PathLike[str] | Mapping[str, np.ndarray] | EvalSet,
    *,
    options: CompressOptions | None = None,
    on_progress: OnProgress | None = None,
) -> CompressResult:
    """Search for a smaller, faster model that stays within an accuracy tolerance.

    Args:
        artifact: The ONNX model (path or loaded artifact).
        eval_set: An .npz (or mapping, or EvalSet) with one array per model input and optional
            labels under ``options.labels_key``.
        options: Metric, tolerance, candidates, timing and where to write the chosen model
            (default: ``CompressOptions()``, a drop of at most 0.01).
        on_progress: Told as each candidate is built, evaluated and timed.

    Returns:
        Every trial, the Pareto front and the chosen model (written to ``options.out`` when
        given).

    Raises:
        InvalidInput: A bad model, eval set, calibration set or output folder.
    """
    started = time.perf_counter()
    o = options or CompressOptions()
    plan = plan_search(artifact, eval_set, o)
    out, keep_candidates, prune = o.out, o.keep_candidates, o.prune
    out_dir = writable_dir(pathlib.Path(out)) if out is not None else None
    keep = pathlib.Path(keep_candidates) if keep_candidates is not None else None
    with work_dir(keep) as work:
        search = Search(plan, work, on_progress, prune)
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
