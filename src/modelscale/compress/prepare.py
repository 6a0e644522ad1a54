"""Check a search's options and data before minutes of work, and lay out what it will do."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from modelscale.compress.candidates import CandidateSpec, default_specs
from modelscale.compress.data import (
    MIN_CALIBRATION_ROWS,
    MIN_EVAL_ROWS,
    EvalSet,
    check_disjoint,
    check_labels,
    load_eval_set,
    split_for_calibration,
)
from modelscale.compress.evaluate import predict
from modelscale.compress.metrics import get_metric
from modelscale.compress.options import CompressOptions
from modelscale.compress.trials import Judge, Tolerance
from modelscale.errors import InvalidInput
from modelscale.machine import machine_info
from modelscale.model.artifact import ModelArtifact
from modelscale.model.rows import count_rows, take_rows
from modelscale.profile import MeasureOptions
from modelscale.runtime import Engine, EngineOptions

__all__ = ["DEFAULT_MEASURE", "Plan", "plan_search"]

DEFAULT_MEASURE = MeasureOptions(max_time_s=3.0, min_time_s=0.5)
"""Per point: enough runs for a stable median on a busy machine, without minutes per candidate."""

_SENSITIVITY_ROWS = 16
_CLASS_HINTS = ("logit", "prob", "score", "class", "label", "pred")


@dataclass
class Plan:
    """What a search will do, with everything checked."""

    artifact: ModelArtifact
    judge: Judge
    specs: list[CandidateSpec]
    batch: int
    calibration_inputs: Mapping[str, np.ndarray] | None
    sensitivity_inputs: Mapping[str, np.ndarray]
    eval_rows: int
    eval_source: str
    calibration_rows: int | None
    calibration_source: str | None
    max_fallback_steps: int
    params: dict[str, Any]
    notes: list[str] = field(default_factory=list)


def _auto_metric(labels: np.ndarray | None, output_name: str, output: np.ndarray) -> str:
    if labels is not None:
        return "accuracy" if np.issubdtype(labels.dtype, np.integer) else "mae"
    lowered = output_name.lower()
    if output.ndim == 2 and any(h in lowered for h in _CLASS_HINTS):
        return "agreement"
    return "cosine"


def _specs(names: Sequence[str] | None, reduce_range: bool) -> list[CandidateSpec]:
    specs = default_specs(reduce_range=reduce_range)
    if names is None:
        return specs
    known = {s.name: s for s in specs}
    return [known[n] for n in dict.fromkeys(names)]  # the names were checked with the options


def plan_search(
    artifact: ModelArtifact | str | os.PathLike[str],
    eval_source: str | os.PathLike[str] | Mapping[str, np.ndarray] | EvalSet,
    options: CompressOptions,
) -> Plan:
    """Check the model and data against ``options``; evaluate nothing yet but the output's shape."""
    o = options
    max_drop, max_rel_drop = o.max_drop, o.max_rel_drop
    if max_drop is None and max_rel_drop is None:
        max_drop = 0.01
    batch = o.batch
    threads = o.threads if o.threads is not None else machine_info().usable_cores
    metric, higher_is_better, calibration = o.metric, o.higher_is_better, o.calibration
    output, labels_key, candidates = o.output, o.labels_key, o.candidates
    max_calibration_rows, max_fallback_steps = o.max_calibration_rows, o.max_fallback_steps
    reduce_range, resamples, seed, measure = o.reduce_range, o.resamples, o.seed, o.measure
    if reduce_range is None:
        reduce_range = not machine_info().has_vnni
    specs = _specs(candidates, bool(reduce_range))

    art = (
        artifact if isinstance(artifact, ModelArtifact) else ModelArtifact.load(os.fspath(artifact))
    ).with_batch_axes(o.batch_axes)
    sig = art.signature
    axes = sig.batch_axes
    out_name = output or sig.outputs[0].name
    if out_name not in sig.output_names:
        raise InvalidInput(
            f"Unknown output {out_name!r}; the model's outputs are {', '.join(sig.output_names)}.",
            field="output",
        )
    if not sig.outputs[sig.output_names.index(out_name)].is_tensor:
        raise InvalidInput(
            f"Output {out_name!r} is {sig.outputs[sig.output_names.index(out_name)].onnx_type}, "
            "not a tensor; choose a tensor output in 'output'.",
            field="output",
        )
    full = load_eval_set(eval_source, sig, labels_key=labels_key)
    notes: list[str] = []
    needs_calibration = any(s.method == "static" for s in specs)
    calib_set: EvalSet | None = None
    evals = full
    if calibration is not None:
        calib_set = load_eval_set(calibration, sig, labels_key=labels_key, what="calibration")
        check_disjoint(full, calib_set)
    elif needs_calibration:
        evals, calib_set = split_for_calibration(full, seed=seed)
        notes.append(
            f"No calibration set given: split the {full.rows} eval rows at random into "
            f"{evals.rows} for evaluation and {calib_set.rows} for calibration."
        )
    if calib_set is not None and calib_set.rows < MIN_CALIBRATION_ROWS:
        hint = "" if calibration is not None else " (half of the eval rows)"
        raise InvalidInput(
            f"The calibration set {calib_set.source}{hint} has {calib_set.rows} rows; static "
            f"quantization needs at least {MIN_CALIBRATION_ROWS}. Give a larger 'calibration' set.",
            field="calibration",
        )
    if evals.rows < MIN_EVAL_ROWS:
        raise InvalidInput(
            f"The eval set {evals.source} has {evals.rows} rows; at least {MIN_EVAL_ROWS} are needed "
            "for a metric with a confidence interval.",
            field="eval",
        )
    engine_options = EngineOptions(intra_op_threads=threads)
    # Two rows are enough to learn the output's shape and check labels before any real work.
    probe_rows = take_rows(evals.inputs, slice(0, 2), axes)
    probe = predict(Engine(art, engine_options), probe_rows, out_name, signature=sig)
    probe = np.broadcast_to(probe[:1], (evals.rows, *probe.shape[1:]))
    name = metric if isinstance(metric, str) else None
    chosen_metric = get_metric(
        metric if metric is not None else _auto_metric(evals.labels, out_name, probe),
        higher_is_better=higher_is_better,
    )
    target = None
    if chosen_metric.task in ("classification", "regression", "custom"):
        if evals.labels is None and chosen_metric.task != "custom":
            raise InvalidInput(
                f"The {chosen_metric.name} metric needs labels, but {full.source} has no "
                f"{labels_key!r} array. Add labels, or set 'metric' to cosine or agreement to "
                "compare against the original model's outputs.",
                field=labels_key,
            )
        target = evals.labels
        if target is not None and chosen_metric.task != "custom":
            check_labels(chosen_metric, target, probe, key=labels_key)
    calib_inputs = None
    if calib_set is not None:
        rows = min(calib_set.rows, max_calibration_rows)
        calib_inputs = take_rows(calib_set.inputs, slice(0, rows), axes)
    sensitivity_source = calib_inputs if calib_inputs is not None else evals.inputs
    judge = Judge(
        signature=sig,
        output=out_name,
        metric=chosen_metric,
        inputs=evals.inputs,
        target=target,
        tolerance=Tolerance(max_drop=max_drop, max_rel_drop=max_rel_drop),
        batches=tuple(dict.fromkeys((1, batch))),
        engine_options=engine_options,
        measure=measure or DEFAULT_MEASURE,
        resamples=resamples,
        seed=seed,
    )
    params: dict[str, Any] = {
        "metric": name or chosen_metric.name,
        "max_drop": max_drop,
        "max_rel_drop": max_rel_drop,
        "batch": batch,
        "threads": threads,
        "output": out_name,
        "labels_key": labels_key,
        "candidates": [s.name for s in specs],
        "reduce_range": bool(reduce_range),
        "has_vnni": machine_info().has_vnni,
        "max_calibration_rows": max_calibration_rows,
        "max_fallback_steps": max_fallback_steps,
        "resamples": resamples,
        "seed": seed,
        "eval": full.source,
        "calibration": calib_set.source if calib_set else None,
        "batch_axes": axes,
    }
    if metric is None:
        notes.append(f"Metric: {chosen_metric.name} (chosen from the data; set it with --metric).")
    return Plan(
        artifact=art,
        judge=judge,
        specs=specs,
        batch=batch,
        calibration_inputs=calib_inputs,
        sensitivity_inputs=take_rows(sensitivity_source, slice(0, _SENSITIVITY_ROWS), axes),
        eval_rows=evals.rows,
        eval_source=evals.source,
        calibration_rows=None if calib_inputs is None else count_rows(calib_inputs, axes),
        calibration_source=calib_set.source if calib_set else None,
        max_fallback_steps=max_fallback_steps,
        params=params,
        notes=notes,
    )
