"""Assess a model on this machine against a baseline: latency, accuracy and max rate, each with a
confidence interval on the difference, regressions flagged only past noise and a minimum effect.

    store = open_store()
    artifact = ModelArtifact.load("digits.onnx")
    baseline = find_baseline(store, artifact)          # None: this assessment becomes it
    result = assess_model(artifact, baseline=baseline, options=AssessOptions(eval="eval.npz"))
    record(result, store)
    if result.regressed: ...

An assessment re-times the baseline's profile points (batch x threads) in short blocks, predicts
the stored eval set row by row, and saturates a local server in short windows. Each run keeps
its raw evidence (block medians, per-row hits, per-window rates), so any run can be the baseline
of later ones. When the baseline's model file is still there and differs from the assessed
model, that model is measured again now, side by side in alternating blocks and windows: the
comparison then does not depend on how fast the machine happens to be today. Otherwise (the same
model re-checked on a schedule, or a baseline file that is gone) the comparison is with the
stored measurements, where the thresholds and the CPU meter guard against a machine that is
slower, or busier, than on the baseline's day. See docs/assess.md.
"""

from __future__ import annotations

import dataclasses
import math
import pathlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from modelscale.compress import load_eval_set
from modelscale.errors import InvalidInput, invalid_parameter
from modelscale.model import ModelArtifact, file_sha256
from modelscale.progress import OnProgress, report
from modelscale.result import ModelVersionInfo, Result, RunLinks
from modelscale.store import Run
from modelscale.workflow.assess_baseline import machine_change
from modelscale.workflow.assess_checks import Check, build_checks
from modelscale.workflow.assess_measure import (
    OthersMeter,
    correct_rows,
    load_windows,
    serving,
    time_blocks,
)
from modelscale.workflow.assess_stats import Verdict
from modelscale.workflow.metering import inputs_file

__all__ = ["AssessOptions", "AssessResult", "assess_model"]

_WHERE = "assess"
_DEFAULT_BATCHES = (1, 8)
_DEFAULT_THREADS = (1,)
_NOW, _BASE = "now", "baseline"


def _positive_ints(name: str, values: Sequence[int] | None) -> tuple[int, ...] | None:
    if values is None:
        return None
    out = tuple(values)
    if not out or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in out):
        raise invalid_parameter(name, "a non-empty list of integers >= 1", list(out), where=_WHERE)
    return tuple(sorted(set(out)))


@dataclass(frozen=True)
class AssessOptions:
    """What an assessment measures and when a change counts; every value is checked here.

    Attributes:
        batches: Batch sizes to time (default: the baseline's, else 1 and 8).
        threads: Intra-op thread counts to time (default: the baseline's, else 1).
        latency: Time the model.
        accuracy: Evaluate it on the eval set.
        load: Load-test it on a local server.
        eval: The labelled eval set (.npz); default: the baseline's.
        output: The output holding class scores (default: the baseline's, else the first).
        blocks: Timed blocks per point and model; the blocks are the CI's samples.
        block_s: Seconds per block.
        windows: Load-test windows per model; the windows are the CI's samples.
        window_s: Seconds per load-test window.
        concurrency: Requests in flight during the load test (default: the baseline's, else 16).
        serve_threads: Threads of the server's replica (default: the baseline's, else 1).
        max_batch: The server's batch cap (default: the baseline's, else 8).
        paired: Measure the baseline's model side by side when its file is still there.
        confidence: Level of every interval.
        max_slowdown: A latency ratio (now / baseline) whose whole CI is above this is a
            regression; below ``1 / max_slowdown``, an improvement.
        max_accuracy_drop: An accuracy drop (a share: 0.005 is half a point) whose whole CI is
            past this is a regression.
        max_rate_drop: A max-rate ratio whose whole CI is below ``1 - max_rate_drop`` is a
            regression.
        max_other_cores: Cores other processes may keep busy while a measurement runs before
            a regression against stored measurements is called inconclusive instead.
        seed: Seed of the bootstrap.
    """

    batches: Sequence[int] | None = None
    threads: Sequence[int] | None = None
    latency: bool = True
    accuracy: bool = True
    load: bool = True
    eval: str | pathlib.Path | None = None
    output: str | None = None
    blocks: int = 8
    block_s: float = 0.25
    windows: int = 5
    window_s: float = 1.5
    concurrency: int | None = None
    serve_threads: int | None = None
    max_batch: int | None = None
    paired: bool = True
    confidence: float = 0.95
    max_slowdown: float = 1.10
    max_accuracy_drop: float = 0.005
    max_rate_drop: float = 0.10
    max_other_cores: float = 0.25
    seed: int = 0

    def __post_init__(self) -> None:
        _positive_ints("batches", self.batches)
        _positive_ints("threads", self.threads)
        for name in ("blocks", "windows"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 2:
                raise invalid_parameter(name, "an integer >= 2", v, where=_WHERE)
        for name in ("concurrency", "serve_threads", "max_batch"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
                raise invalid_parameter(name, "an integer >= 1", v, where=_WHERE)
        checks = {
            "block_s": (lambda v: 0 < v <= 60, "a number of seconds in (0, 60]"),
            "window_s": (lambda v: 0 < v <= 600, "a number of seconds in (0, 600]"),
            "confidence": (lambda v: 0.5 <= v < 1, "a level in [0.5, 1)"),
            "max_slowdown": (lambda v: v >= 1, "a ratio >= 1 (1.10: 10% slower)"),
            "max_accuracy_drop": (lambda v: 0 <= v < 1, "a share in [0, 1) (0.005: half a point)"),
            "max_rate_drop": (lambda v: 0 <= v < 1, "a share in [0, 1) (0.10: 10% lower)"),
            "max_other_cores": (lambda v: v >= 0, "a number of cores >= 0"),
        }
        for name, (ok, expected) in checks.items():
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
                raise invalid_parameter(name, expected, v, where=_WHERE)
            if not ok(v):
                raise invalid_parameter(name, expected, v, where=_WHERE)
        if not (self.latency or self.accuracy or self.load):
            raise InvalidInput(
                "Every check of assess is turned off. Keep at least one of latency, accuracy "
                "and load.",
                field="latency",
            )


@dataclass(frozen=True)
class AssessResult(Result):
    """An assessment: the checks against the baseline, and the evidence a later one needs.

    Attributes:
        model: The assessed model (name, path, sha256, size).
        baseline_run_id: The assess run compared with (None: this one is the baseline).
        baseline_model: The baseline's model (name, path, sha256), when there is a baseline.
        evidence: What was measured of the model: ``latency`` (per point, block medians),
            ``accuracy`` (eval set, its sha256, per-row hits as a '0'/'1' string) and ``load``
            (server setup, per-window rates); a part not measured is None.
        side_by_side: The same measurements of the baseline's model, taken now beside the
            model's (empty when compared with stored measurements).
        checks: One per comparison, with its interval and verdict.
        other_cores: Cores other processes kept busy, per part ('latency', 'load').
        notes: What the reader should know (a skipped check, a disturbed measurement).
        summary: One line.
        params: The options, resolved.
    """

    kind: ClassVar[str] = "assess"

    model: dict[str, Any]
    baseline_run_id: int | None
    baseline_model: dict[str, Any] | None
    evidence: dict[str, Any]
    side_by_side: dict[str, Any]
    checks: tuple[Check, ...]
    other_cores: dict[str, float | None]
    notes: tuple[str, ...]
    summary: str
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def regressed(self) -> bool:
        """Whether any check is a regression."""
        return any(c.verdict == Verdict.REGRESSION for c in self.checks)

    def links(self) -> RunLinks:
        """Filed under the assessed model's version, which is registered first."""
        return RunLinks(self.model["sha256"], models=(ModelVersionInfo.of(self.model),))


def _paired_model(
    artifact: ModelArtifact, base_model: Mapping[str, Any] | None, notes: list[str]
) -> ModelArtifact | None:
    if not base_model or base_model.get("sha256") == artifact.sha256:
        return None
    path = pathlib.Path(str(base_model.get("path") or ""))
    if not path.is_file() or file_sha256(path) != base_model["sha256"]:
        notes.append(
            f"The baseline's model file {path} is gone or changed: compared with the stored "
            "measurements instead of side by side."
        )
        return None
    return ModelArtifact.load(path, name=str(base_model.get("name") or path.stem))


def _eval_part(
    o: AssessOptions, artifact: ModelArtifact, base_acc: Mapping[str, Any] | None, notes: list[str]
) -> dict[str, Any] | None:
    path = o.eval if o.eval is not None else (base_acc or {}).get("eval")
    if path is None:
        notes.append("No eval set (give one with 'eval'): accuracy was not checked.")
        return None
    p = pathlib.Path(path).expanduser()
    eval_set = load_eval_set(p, artifact.signature)
    sha = file_sha256(p)
    if base_acc and base_acc.get("eval_sha256") not in (None, sha):
        raise InvalidInput(
            f"The 'eval' parameter of assess must be the baseline's eval set (sha256 "
            f"{str(base_acc['eval_sha256'])[:12]}, {base_acc.get('eval')}): accuracy is compared "
            f"row by row. Got {str(p)!r} instead (sha256 {sha[:12]}). Pass the baseline's file, "
            "or start a new baseline.",
            field="eval",
        )
    output = o.output or (base_acc or {}).get("output") or artifact.signature.outputs[0].name
    if output not in {s.name for s in artifact.signature.outputs}:
        names = ", ".join(s.name for s in artifact.signature.outputs)
        raise invalid_parameter(
            "output", f"one of the model's outputs ({names})", output, where=_WHERE
        )
    hits = correct_rows(artifact, eval_set, output)
    return {
        "eval": str(p.resolve()),
        "eval_sha256": sha,
        "output": output,
        "rows": len(hits),
        "accuracy": float(hits.mean()) if len(hits) else math.nan,
        "hits": "".join("1" if h else "0" for h in hits),
        "_inputs": eval_set.inputs,
    }


def assess_model(
    model: ModelArtifact | str | pathlib.Path,
    *,
    baseline: Run | None = None,
    options: AssessOptions | None = None,
    on_progress: OnProgress | None = None,
) -> AssessResult:
    """Measure ``model`` here and compare it with ``baseline`` (an assess run; see ``find_baseline``).

    Args:
        model: An ONNX file or a loaded ModelArtifact.
        baseline: The assess run to compare with; None makes this assessment the baseline.
        options: What to measure and the thresholds (default: ``AssessOptions()``).
        on_progress: Told each stage ('latency batch 8 x 1 thr', 'accuracy', 'load test') and
            each block or window done.
    """
    o = options or AssessOptions()
    artifact = model if isinstance(model, ModelArtifact) else ModelArtifact.load(model)
    base_ev: dict[str, Any] = dict(baseline.results.get("evidence") or {}) if baseline else {}
    base_model = baseline.results.get("model") if baseline else None
    notes: list[str] = []
    pair = _paired_model(artifact, base_model, notes) if o.paired else None
    models = {_NOW: artifact, **({_BASE: pair} if pair is not None else {})}
    evidence: dict[str, Any] = {"latency": None, "accuracy": None, "load": None}
    side: dict[str, Any] = {}
    others: dict[str, float | None] = {}

    if o.accuracy:
        report(on_progress, "accuracy")
    accuracy = _eval_part(o, artifact, base_ev.get("accuracy"), notes) if o.accuracy else None
    data = accuracy.pop("_inputs") if accuracy else None
    evidence["accuracy"] = accuracy

    base_points = base_ev.get("latency") or []
    batches = _positive_ints("batches", o.batches) or tuple(
        sorted({int(p["batch"]) for p in base_points})
    )
    threads = _positive_ints("threads", o.threads) or tuple(
        sorted({int(p["threads"]) for p in base_points})
    )
    batches, threads = batches or _DEFAULT_BATCHES, threads or _DEFAULT_THREADS
    if o.latency:
        points: dict[str, list[dict[str, Any]]] = {k: [] for k in models}
        with OthersMeter() as meter:
            for t in threads:
                for b in batches:
                    stage = f"latency batch {b} x {t} thr"
                    report(on_progress, stage, 0, o.blocks)
                    got = time_blocks(
                        models, batch=b, threads=t, data=data, blocks=o.blocks, block_s=o.block_s,
                        on_block=_ticker(on_progress, stage, o.blocks),
                    )  # fmt: skip
                    for k, v in got.items():
                        points[k].append(v)
        others["latency"] = meter.cores
        evidence["latency"] = points[_NOW]
        if _BASE in points:
            side["latency"] = points[_BASE]

    base_load = base_ev.get("load") or {}
    serve_threads = o.serve_threads or int(base_load.get("serve_threads") or 1)
    max_batch = o.max_batch or int(base_load.get("max_batch") or 8)
    concurrency = o.concurrency or int(base_load.get("concurrency") or 16)
    setup: dict[str, Any] = {
        "serve_threads": serve_threads,
        "max_batch": max_batch,
        "concurrency": concurrency,
        "window_s": o.window_s,
    }
    if o.load:
        report(on_progress, "starting the server" + ("s" if len(models) > 1 else ""))
        with (
            serving(models, threads=serve_threads, max_batch=max_batch) as urls,
            inputs_file(artifact, {}, 64) as npz,
            OthersMeter() as meter,
        ):
            report(on_progress, "load test", 0, o.windows)
            got = load_windows(
                {k: (urls[k], models[k].name) for k in models},
                inputs=pathlib.Path(npz), windows=o.windows, window_s=o.window_s,
                concurrency=concurrency,
                on_window=_ticker(on_progress, "load test", o.windows),
            )  # fmt: skip
        others["load"] = meter.cores
        evidence["load"] = {**setup, **got[_NOW]}
        if _BASE in got:
            side["load"] = {**setup, **got[_BASE]}

    machine_note = machine_change(baseline)
    if machine_note:
        notes.append(machine_note)
    evidence["other_cores"] = others
    checks = build_checks(base_ev, evidence, side, options=o, other_machine=bool(machine_note))
    if baseline is None:
        notes.append("No earlier assessment: this one is the baseline later ones compare with.")
        busy = {k: v for k, v in others.items() if v is not None and v > o.max_other_cores}
        if busy:
            parts = ", ".join(f"{v:.2f} cores during the {k} part" for k, v in busy.items())
            notes.append(
                f"Other processes kept cores busy while this baseline was measured ({parts}): "
                "its speeds may be low. Measure the baseline again on a quiet machine."
            )
    elif any(c.note for c in checks):
        notes.extend(c.note for c in checks if c.note)
    params = {
        **{f.name: getattr(o, f.name) for f in dataclasses.fields(o)},
        "batches": list(batches),
        "threads": list(threads),
        "eval": (accuracy or {}).get("eval"),
        "output": (accuracy or {}).get("output"),
        **setup,
        "baseline_run_id": baseline.id if baseline else None,
    }
    return AssessResult(
        model=artifact.to_dict(),
        baseline_run_id=baseline.id if baseline else None,
        baseline_model=dict(base_model) if base_model else None,
        evidence=evidence,
        side_by_side=side,
        checks=tuple(checks),
        other_cores=others,
        notes=tuple(notes),
        summary=_summary(artifact, baseline, checks),
        params=params,
    )


def _ticker(on_progress: OnProgress | None, stage: str, total: int) -> Callable[[int], None]:
    def tick(done: int) -> None:
        report(on_progress, stage, done, total)

    return tick


def _summary(artifact: ModelArtifact, baseline: Run | None, checks: Sequence[Check]) -> str:
    if baseline is None:
        return (
            f"{artifact.name}: first assessment, stored as the baseline ({len(checks)} "
            "measurements kept for later comparisons)."
        )
    counts: dict[str, int] = {}
    for c in checks:
        counts[c.verdict.value] = counts.get(c.verdict.value, 0) + 1
    worst = [c for c in checks if c.verdict == Verdict.REGRESSION]
    head = ", ".join(f"{n} {v}" for v, n in counts.items())
    tail = "; ".join(f"{c.name} {c.effect_text()}" for c in worst)
    return f"{artifact.name} against run {baseline.id}: {head}" + (f" ({tail})." if tail else ".")
