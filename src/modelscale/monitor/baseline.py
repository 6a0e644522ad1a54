"""Baselines: what a model's traffic looked like when it was known to be good.

``build_baseline`` runs the model (ONNX Runtime) over reference inputs (an .npz, the eval set
``compress`` used, or any sample of real traffic), decides which features to watch
(``FeaturePlan``), folds inputs and outputs into a ``Profile`` of sketches and, when the reference
has labels, measures the model's metric on it and fits the confidence calibration that the
label-free accuracy estimate uses. The result is a run of kind ``baseline`` in the knowledge
base, filed under the model version: the server and ``monitor run`` read it back from there.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from modelscale.errors import InvalidInput
from modelscale.model import ModelArtifact, take_rows
from modelscale.monitor.accuracy import softmax_top
from modelscale.monitor.sketch import Profile
from modelscale.monitor.summary import MIN_REFERENCE_ROWS, FeaturePlan, predictions_of
from modelscale.progress import OnProgress, report
from modelscale.result import ModelVersionInfo, Result, RunLinks
from modelscale.runtime import Engine, EngineOptions

__all__ = [
    "TASKS",
    "Baseline",
    "BaselineOptions",
    "build_baseline",
    "compress_eval_set",
]

TASKS = ("auto", "classification", "regression")
_CHUNK = 512


@dataclass(frozen=True)
class BaselineOptions:
    """How a baseline is made."""

    name: str | None = None
    """A name to find it by (``monitor.baseline`` in deploy.yaml); default: the data file's."""
    task: str = "auto"
    """'classification', 'regression' or 'auto' (from the labels, else the output's shape)."""
    metric: str | None = None
    """accuracy, f1 or mae; default: accuracy for classifiers, mae for regression."""
    seed: int = 0

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise InvalidInput(
                f"The 'task' of a baseline must be one of {', '.join(TASKS)}. Got {self.task!r}.",
                field="task",
            )
        if self.metric is not None and self.metric not in ("accuracy", "f1", "mae"):
            raise InvalidInput(
                f"The 'metric' of a baseline must be accuracy, f1 or mae. Got {self.metric!r}.",
                field="metric",
            )


@dataclass(frozen=True)
class Baseline(Result):
    """A reference profile of a model version's inputs and outputs, with its accuracy."""

    kind: ClassVar[str] = "baseline"

    model: dict[str, Any]
    name: str
    rows: int
    task: str
    """'classification', 'regression' or 'none' (no labels and no classifier output)."""
    plan: dict[str, Any]
    profile: dict[str, Any]
    features: dict[str, str]
    """Feature name -> kind (what the profile watches)."""
    metric: str | None = None
    reference_metric: dict[str, Any] | None = None
    """The metric on the labelled reference rows, with its bootstrap interval."""
    calibration: dict[str, Any] | None = None
    """Confidence -> P(correct), for the label-free estimate (classifiers with labels)."""
    params: dict[str, Any] = dataclasses.field(default_factory=dict)
    run_id: int | None = None
    """Set when read back from the knowledge base."""

    def links(self) -> RunLinks:
        """Filed under the model version it profiles."""
        return RunLinks(
            model_version=self.model["sha256"], models=(ModelVersionInfo.of(self.model),)
        )

    def results_dict(self) -> dict[str, Any]:
        """Stored fields (not the run id, which the store gives)."""
        out = super().results_dict()
        out.pop("run_id", None)
        return out

    def feature_plan(self) -> FeaturePlan:
        """The features watched."""
        return FeaturePlan.from_dict(self.plan)

    def reference(self) -> Profile:
        """The reference profile (a fresh copy each call)."""
        return Profile.from_dict(self.profile)

    @classmethod
    def from_run(cls, run: Any) -> Baseline:
        """Read a ``baseline`` run of the knowledge base."""
        r = run.results
        return cls(
            model=r["model"],
            name=r["name"],
            rows=int(r["rows"]),
            task=r["task"],
            plan=r["plan"],
            profile=r["profile"],
            features=r["features"],
            metric=r.get("metric"),
            reference_metric=r.get("reference_metric"),
            calibration=r.get("calibration"),
            params=run.params,
            run_id=run.id,
        )


def _rows(arrays: Mapping[str, np.ndarray], batched: Mapping[str, bool]) -> int:
    sizes = {name: a.shape[0] for name, a in arrays.items() if batched.get(name) and a.ndim}
    if len(set(sizes.values())) > 1:
        detail = ", ".join(f"{k}: {v}" for k, v in sizes.items())
        raise InvalidInput(
            f"the reference arrays have different numbers of rows ({detail}); expected one row "
            "per example in every input",
            field="data",
        )
    return next(iter(sizes.values()), 1)


def _run_model(
    model: ModelArtifact,
    inputs: Mapping[str, np.ndarray],
    rows: int,
    batched: Mapping[str, bool],
    on_progress: OnProgress | None,
) -> dict[str, np.ndarray]:
    engine = Engine(model, EngineOptions(intra_op_threads=1))
    axes = {k: 0 if batched.get(k) and a.ndim else None for k, a in inputs.items()}
    parts: dict[str, list[np.ndarray]] = {}
    for start in range(0, rows, _CHUNK):
        feeds = take_rows(inputs, slice(start, start + _CHUNK), axes)
        outs = engine.run(feeds)
        for name, value in zip(engine.output_names, outs, strict=True):
            if isinstance(value, np.ndarray):
                parts.setdefault(name, []).append(value)
        report(on_progress, "baseline: running the model", min(start + _CHUNK, rows), rows)
    out = {}
    for name, chunks in parts.items():
        if all(
            c.ndim and c.shape[0] == min(_CHUNK, rows - i * _CHUNK) for i, c in enumerate(chunks)
        ):
            out[name] = np.concatenate(chunks)
    return out


def compress_eval_set(store: Any, sha256: str) -> tuple[str, str, int] | None:
    """(path, labels key, run id) of the eval set the newest ``compress`` run of this model
    version (or one it made) used, when it was an .npz file that still exists."""
    import pathlib

    for run in store.runs(kind="compress"):
        r = run.results
        made = r.get("chosen_sha256")
        if run.model_version != sha256 and made != sha256:
            continue
        source = str(r.get("eval_source") or "")
        if source.endswith(".npz") and pathlib.Path(source).is_file():
            return source, str(run.params.get("labels_key") or "labels"), run.id
    return None


def _task(labels: np.ndarray | None, plan: FeaturePlan, wanted: str) -> str:
    if wanted != "auto":
        return wanted
    if labels is not None:
        return "classification" if labels.dtype.kind in "iub" else "regression"
    return "classification" if plan.scores_output() is not None else "none"


def build_baseline(
    model: ModelArtifact,
    data: Mapping[str, np.ndarray],
    *,
    labels: np.ndarray | None = None,
    options: BaselineOptions | None = None,
    source: str | None = None,
    on_progress: OnProgress | None = None,
) -> Baseline:
    """Profile ``model`` on reference ``data`` (inputs by name, checked against its signature).

    Raises:
        InvalidInput: too few rows, labels that do not match the rows or hold NaN, or nothing
            numeric to watch.
    """
    from modelscale.monitor.accuracy import ConfidenceCalibration, realized_metric

    opt = options or BaselineOptions()
    batched = {s.name: s.batch_axis == 0 for s in model.signature.inputs}
    rows = _rows(data, batched)
    if rows < MIN_REFERENCE_ROWS:
        raise InvalidInput(
            f"the reference has {rows} rows; a baseline needs at least {MIN_REFERENCE_ROWS} "
            "(more rows make the tests of every window sharper)",
            field="data",
        )
    if labels is not None:
        labels = np.asarray(labels)
        if labels.ndim != 1 or labels.shape[0] != rows:
            raise InvalidInput(
                f"labels have shape {list(labels.shape)}; expected one label per reference row "
                f"([{rows}])",
                field="labels",
            )
        if labels.dtype.kind == "f" and not np.isfinite(labels).all():
            bad = int(np.flatnonzero(~np.isfinite(labels))[0])
            raise InvalidInput(
                f"labels hold NaN or infinity (first at row {bad}); expected a label per row",
                field="labels",
            )
        if labels.dtype.kind not in "iubf":
            raise InvalidInput(
                f"labels are {labels.dtype}; expected integers (classes) or floats (values)",
                field="labels",
            )
    outputs = _run_model(model, data, rows, batched, on_progress)
    inputs = {k: v for k, v in data.items() if batched.get(k)}
    plan = FeaturePlan.build(inputs, outputs, task=opt.task, seed=opt.seed)
    profile = Profile.empty(plan.kinds(), sampled=plan.input_features())
    report(on_progress, "baseline: folding sketches", 0, rows)
    for start in range(0, rows, 65_536):
        part_in = {k: v[start : start + 65_536] for k, v in inputs.items()}
        part_out = {k: v[start : start + 65_536] for k, v in outputs.items()}
        numeric, categorical, n = plan.extract(part_in, part_out)
        profile.update(numeric, categorical, rows=n)
        report(on_progress, "baseline: folding sketches", min(start + 65_536, rows), rows)
    task = _task(labels, plan, opt.task)
    metric = opt.metric or ("accuracy" if task == "classification" else "mae")
    reference_metric = calibration = None
    scores_name = plan.scores_output() if task == "classification" else None
    if scores_name is None and task == "regression":
        scores_name = next(
            (
                p.tensor
                for p in plan.tensors
                if p.role == "output" and p.mode in ("scalar", "columns")
            ),
            None,
        )
    if labels is not None and scores_name is not None and scores_name in outputs:
        if task == "classification" and labels.dtype.kind == "f":
            if not np.all(labels == np.round(labels)):
                raise InvalidInput(
                    "labels are fractional but the model is a classifier; expected whole "
                    "numbers (class indices)",
                    field="labels",
                )
            labels = labels.astype(np.int64)
        preds = predictions_of(outputs[scores_name], task)
        reference_metric = realized_metric(preds, labels, metric=metric).to_dict()
        scores = outputs[scores_name]
        if task == "classification" and scores.ndim >= 2 and scores.shape[1] > 1:
            _, top = softmax_top(scores.reshape(rows, -1))
            calibration = ConfidenceCalibration.fit(top, preds == labels, seed=opt.seed).to_dict()
    return Baseline(
        model=model.to_dict() | {"sha256": model.sha256, "name": model.name},
        name=opt.name or (source or "reference"),
        rows=rows,
        task=task if (labels is not None or task == "classification") else "none",
        plan=plan.to_dict(),
        profile=profile.to_dict(),
        features=plan.kinds(),
        metric=metric if reference_metric is not None else None,
        reference_metric=reference_metric,
        calibration=calibration,
        params={
            "data": source,
            "task": opt.task,
            "metric": opt.metric,
            "seed": opt.seed,
            "name": opt.name,
            "labels": labels is not None,
        },
    )
