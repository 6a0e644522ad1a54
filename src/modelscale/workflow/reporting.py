"""What reports and scorecards need from a deployment: its objectives measured over the request
log, and the demo's last step (measure the objectives, audit what the server stored, write down the
decision the demo made, then the report and the scorecard of everything it measured)."""

from __future__ import annotations

import pathlib
import time
from dataclasses import dataclass

from modelscale.config import DeploymentSpec
from modelscale.errors import InvalidInput
from modelscale.model import ModelArtifact
from modelscale.observe import LogLocation, SloCompliance, slo_compliance
from modelscale.progress import OnProgress, report
from modelscale.report import (
    Scorecard,
    build_report,
    gather_evidence,
    make_note,
    write_report,
)
from modelscale.store import Store
from modelscale.workflow.assess import AssessOptions, AssessResult, assess_model
from modelscale.workflow.assess_baseline import find_baseline
from modelscale.workflow.privacy import PrivacyTarget, run_audit
from modelscale.workflow.record import Recorder, record

__all__ = ["ReportStep", "measure_slos", "report_example"]


def measure_slos(
    spec: DeploymentSpec,
    store: Store,
    *,
    model: str | None = None,
    window_days: float | None = None,
) -> list[tuple[SloCompliance, int]]:
    """Measure every objective ``spec`` sets (or ``model``'s) over its window of the request
    log, and record each model's as an ``slo`` run filed under its newest version.

    Raises:
        InvalidInput: the deployment writes no request log, names no such model, or sets no
            objective for it.
    """
    if not spec.log.enabled:
        raise InvalidInput(
            "The deployment writes no request log (log.enabled is false), so "
            "its SLOs cannot be measured.",
            field="deploy",
        )
    names = [model] if model is not None else list(spec.models)
    if model is not None and model not in spec.models:
        raise InvalidInput(
            f"The deployment serves no model {model!r}. Expected one of: {', '.join(spec.models)}.",
            field="model",
        )
    location = LogLocation.of(spec.log.where, field="log")
    out = []
    for name in names:
        slo = spec.models[name].slo
        if slo is None or not slo.objectives():
            if model is not None:
                raise InvalidInput(
                    f"Model {name!r} sets no availability or latency objective "
                    "in deploy.yaml (slo:).",
                    field="slo",
                )
            continue
        version = store.model(name)
        measured = slo_compliance(
            location,
            name,
            slo,
            window_days=window_days,
            model_sha256=version.sha256 if version else None,
        )
        out.append((measured, record(measured, store).run_id))
    return out


@dataclass(frozen=True)
class ReportStep:
    """The audit, the note, the report and the scorecard.

    Attributes:
        slo_run_ids: The model's objectives measured over the request log.
        assessment: The assessment made here (None: none was asked for).
        assess_run_id: Its run.
        audit_run_id: The privacy audit of the model's request log.
        audit_ok: Whether it was clean.
        note_run_id: The note recording the compression decision (None: nothing to note).
        path: The HTML report.
        size_bytes: Its size.
        charts: Its charts.
        seconds: How long building and writing it took.
        scorecard: The scaling checklist for the model.
    """

    slo_run_ids: tuple[int, ...]
    assessment: AssessResult | None
    assess_run_id: int | None
    audit_run_id: int
    audit_ok: bool
    note_run_id: int | None
    path: pathlib.Path
    size_bytes: int
    charts: int
    seconds: float
    scorecard: Scorecard


def report_example(
    model: str,
    spec: DeploymentSpec,
    out: pathlib.Path,
    *,
    recorder: Recorder,
    decision: tuple[int, str] | None = None,
    assess: tuple[pathlib.Path, pathlib.Path] | None = None,
    on_progress: OnProgress | None = None,
) -> ReportStep:
    """Audit ``spec``'s request log, note ``decision`` (a run id and what was decided about it),
    and write ``model``'s report to ``out``.

    Args:
        model: The model's name in the knowledge base.
        spec: The deployment that served it (its log and privacy policies).
        out: The HTML file to write.
        recorder: The knowledge base everything is recorded in.
        decision: A run and the decision taken on it, kept as a note.
        assess: A model file and its eval set to assess here first (the first assessment of a
            model is its baseline; later ones are compared with it).
        on_progress: Progress within the step.
    """
    store = recorder.store
    if store is None:
        raise RuntimeError("the report step needs a knowledge base")
    report(on_progress, "auditing the request log")
    location = LogLocation.of(spec.log.where, field="log") if spec.log.enabled else None
    url = store.url.render_as_string(hide_password=False)
    audit, audit_run = run_audit(PrivacyTarget(spec, location, url))
    slo_runs = (
        [run for _, run in measure_slos(spec, store, model=model)]
        if (model in spec.models and spec.models[model].slo.objectives())
        else []
    )
    assessed = None
    if assess is not None:
        model_path, eval_path = assess
        artifact = ModelArtifact.load(model_path, name=model)
        result = assess_model(
            artifact,
            baseline=find_baseline(store, artifact),
            options=AssessOptions(eval=eval_path),
            on_progress=on_progress,
        )
        recorded_assess = recorder.record(result)
        assessed = (result, recorded_assess.run_id if recorded_assess is not None else None)
    note_run = None
    if decision is not None:
        run_id, text = decision
        recorded = recorder.record(make_note(store, model, text, run=run_id, tags=("decision",)))
        note_run = recorded.run_id if recorded is not None else None
    report(on_progress, "writing the report")
    started = time.perf_counter()
    built = build_report(
        gather_evidence(store, model), source=store.url.render_as_string(hide_password=True)
    )
    path = write_report(built, out)
    seconds = time.perf_counter() - started
    return ReportStep(
        slo_run_ids=tuple(slo_runs),
        assessment=assessed[0] if assessed else None,
        assess_run_id=assessed[1] if assessed else None,
        audit_run_id=audit_run,
        audit_ok=audit.ok,
        note_run_id=note_run,
        path=path,
        size_bytes=path.stat().st_size,
        charts=built.charts,
        seconds=seconds,
        scorecard=built.scorecard,
    )
