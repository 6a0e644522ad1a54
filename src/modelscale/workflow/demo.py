"""The demo: the main job end to end on the built-in digits example, one step at a time.

``run_demo`` builds the example, profiles it, compresses it within an accuracy tolerance, serves
it with two replica processes and load-tests the server, watches it for drift (a baseline, clean
then shifted traffic), then plans capacity and cost for a target rate and validates the plan
with a load test of the planned configuration, and last serves the MiniLM example with text input
and redacted payload logging, then audits what the server stored; everything is recorded in the
knowledge base. Then it trains the digits CNN at four widths on four shares of its data and fits
a scaling law to those runs, and the last step turns everything into the scaling checklist's
scorecard and one HTML report. It yields each step's outcome as the step finishes, so a caller
shows one step before the next one starts.
"""

from __future__ import annotations

import pathlib
from collections.abc import Iterator
from dataclasses import dataclass

from modelscale.compress import CompressOptions, CompressResult
from modelscale.config import DeploymentSpec
from modelscale.examples import ExampleBuild, build_example
from modelscale.loadgen import LoadOptions, LoadResult, run_load
from modelscale.model import ModelArtifact
from modelscale.observe import LogStats, log_stats
from modelscale.plan import PlanResult, emit, plan_model
from modelscale.profile import (
    MeasureOptions,
    ProfileOptions,
    ProfileResult,
    plot_profile,
    profile_model,
)
from modelscale.progress import OnProgress, report
from modelscale.serve import start_server
from modelscale.store import Store, open_store
from modelscale.workflow.example import compress_example
from modelscale.workflow.record import Recorded, Recorder
from modelscale.workflow.reporting import ReportStep, report_example
from modelscale.workflow.rollout import RolloutStep, canary_rollout
from modelscale.workflow.scaling import LawsStep, laws_example
from modelscale.workflow.text import TextStep, text_privacy_example
from modelscale.workflow.validate import Validation, ValidationOptions, validate_plan
from modelscale.workflow.watch import WatchStep, watch_example

__all__ = [
    "DEMO_STEPS",
    "PLAN_P99_MS",
    "PLAN_RPS",
    "CompressStep",
    "DemoStep",
    "ExampleStep",
    "LawsStep",
    "LoadStep",
    "PlanStep",
    "ProfileStep",
    "ReportStep",
    "RolloutStep",
    "TextStep",
    "WatchStep",
    "run_demo",
]

PLAN_RPS = 500.0
"""The target rate the demo plans for."""
PLAN_P99_MS = 25.0
"""The p99 bound the demo plans for."""

DEMO_STEPS = (
    "1. the model: a small CNN trained on scikit-learn's digits, exported to ONNX",
    "2. profile: what it costs to run here, per batch size and thread count",
    "3. compress: the smallest, fastest model within 1 accuracy point",
    "4. serve with 2 replica processes (KServe V2) and load-test it, open loop",
    "5. monitor: a baseline, then clean and shifted traffic; the server's windows flag drift",
    "6. rollout: the compressed model as a canary beside the original, under load",
    f"7. plan: machines, replicas and cost for {PLAN_RPS:g} req/s at p99 <= {PLAN_P99_MS:g} ms, "
    "then validate it here",
    "8. text and privacy: MiniLM takes strings; personal data is redacted before the log",
    "9. laws: a scaling law fitted to 16 trainings of the digits CNN (4 widths x 4 data sizes)",
    "10. report: the scaling checklist and one offline HTML report of everything above",
)
"""The steps' titles, in the order ``run_demo`` yields them."""


@dataclass(frozen=True)
class ExampleStep:
    """Step 1: the example built (or found in the cache) and loaded."""

    example: ExampleBuild
    artifact: ModelArtifact


@dataclass(frozen=True)
class ProfileStep:
    """Step 2: the profile, its run and its plot."""

    result: ProfileResult
    run_id: int
    plot: pathlib.Path


@dataclass(frozen=True)
class CompressStep:
    """Step 3: the compress search and where it was recorded (trials as children)."""

    result: CompressResult
    recorded: Recorded


@dataclass(frozen=True)
class LoadStep:
    """Step 4: the server that ran, how, and the load test against it."""

    url: str
    served: str
    result: LoadResult
    run_id: int
    log_path: pathlib.Path | None = None
    """The server's request log."""
    log_stats: LogStats | None = None
    """Requests, error rate and latency percentiles per version, read back from the log."""


@dataclass(frozen=True)
class PlanStep:
    """Step 5: the plan, the deployment files written, and the validation of its local choice.

    Attributes:
        result: The plan.
        run_id: Its run.
        files: Deployment files written (none when no phase has a recommendation).
        validation: The validation (None when no configuration here meets the bound).
        validation_run_id: The validation's run.
        load_run_id: The validation's load test run.
    """

    result: PlanResult
    run_id: int
    files: tuple[pathlib.Path, ...]
    validation: Validation | None
    validation_run_id: int | None
    load_run_id: int | None


DemoStep = (
    ExampleStep
    | ProfileStep
    | CompressStep
    | LoadStep
    | WatchStep
    | RolloutStep
    | PlanStep
    | TextStep
    | LawsStep
    | ReportStep
)
"""One step's outcome."""


def run_demo(
    out: pathlib.Path,
    *,
    store: Store | None = None,
    max_time_s: float = 3.0,
    on_progress: OnProgress | None = None,
) -> Iterator[DemoStep]:
    """Run the demo's steps in order, yielding each one's outcome as it finishes.

    Args:
        out: Where the demo writes its model, plots and deployment files.
        store: The knowledge base every result is recorded in (default: the configured one).
        max_time_s: Seconds at most per profile point.
        on_progress: Progress within each step.
    """
    recorder = Recorder(store or open_store())  # opened first: a bad database fails at once
    example = build_example("digits", out_dir=out / "digits", on_progress=on_progress)
    artifact = ModelArtifact.load(example.model_path, name="digits")
    yield ExampleStep(example, artifact)

    measure = MeasureOptions(max_time_s=max_time_s)
    profiled = profile_model(
        artifact,
        options=ProfileOptions(batches=(1, 8, 32, 128), measure=measure),
        on_progress=on_progress,
    )
    yield ProfileStep(
        profiled, _run(recorder.record(profiled)), plot_profile(profiled, out / "profile.png")
    )

    compressed = compress_example(
        example,
        options=CompressOptions(out=out / "compressed", max_drop=0.01, measure=measure),
        on_progress=on_progress,
    )
    compress_recorded = _recorded(recorder.record(compressed))
    compress_run = compress_recorded.run_id
    yield CompressStep(compressed, compress_recorded)

    log_path = out / "logs"
    spec = DeploymentSpec.from_dict(
        {
            "models": {
                "digits": {
                    "versions": {"1": {"path": str(example.model_path)}},
                    "replicas": 2,
                    "batching": {"max_batch": 16, "max_wait_ms": 2},
                    "slo": {"availability": 0.999, "latency": {"threshold_ms": 100}},
                }
            },
            "log": {"path": str(log_path), "flush_s": 1},
        },
        source="the demo's deployment",
    )
    report(on_progress, "starting the server")
    with start_server(spec) as server:
        loaded = run_load(
            server.url,
            model="digits",
            options=LoadOptions(
                rate=300, duration_s=5, pattern="poisson", inputs=example.eval_path
            ),
            on_progress=on_progress,
        )
    yield LoadStep(
        server.url,
        "2 replicas x 1 thread, batch 16 / 2 ms",
        loaded,
        _run(recorder.record(loaded)),
        log_path,
        log_stats(str(log_path), by=("model", "version")),  # the server has stopped: all flushed
    )

    yield watch_example(example, out / "monitor", recorder=recorder, on_progress=on_progress)

    # The compressed model goes out the way a new version should: a canary that steps up only
    # while its guardrails hold (errors, latency, the p99 objective, agreement with the original).
    candidate = compressed.chosen_path
    if candidate is None or compressed.chosen_is_original:
        candidate = str(example.model_path)  # nothing smaller passed: roll out the original
    yield canary_rollout(
        example.model_path,
        pathlib.Path(candidate),
        inputs=example.eval_path,
        rate=300,
        on_progress=on_progress,
    )

    planned = plan_model(
        artifact,
        rps=PLAN_RPS,
        p99_ms=PLAN_P99_MS,
        store=recorder.store,
        record_profile=recorder.run_id,
    )
    plan_run = _run(recorder.record(planned))
    files: tuple[pathlib.Path, ...] = ()
    if any(phase.recommended is not None for phase in planned.phases):
        files = tuple(emit(planned, kind, out / "deploy") for kind in ("deploy", "k8s", "ray"))
    if planned.local is None:
        yield PlanStep(planned, plan_run, files, None, None, None)
    else:
        report(on_progress, "starting the server")
        checked = validate_plan(
            planned,
            artifact,
            options=ValidationOptions(duration_s=4),
            plan_run_id=plan_run,
            on_progress=on_progress,
        )
        val = _recorded(recorder.record(checked, parent_run_id=plan_run))
        yield PlanStep(planned, plan_run, files, checked, val.run_id, val.children["load"])

    yield text_privacy_example(out / "text", recorder=recorder, on_progress=on_progress)

    yield laws_example(
        out / "scaling", model_sha256=artifact.sha256, recorder=recorder, on_progress=on_progress
    )

    chosen = compressed.chosen or "the original"
    yield report_example(
        "digits",
        spec,
        out / "digits_report.html",
        recorder=recorder,
        assess=(example.model_path, example.eval_path) if example.eval_path else None,
        decision=(
            compress_run,
            f"Serve {chosen}: the compress search's pick within 1 accuracy point, rolled out "
            "through a canary that held its guardrails.",
        ),
        on_progress=on_progress,
    )


def _recorded(recorded: Recorded | None) -> Recorded:
    if recorded is None:  # the demo's recorder always has a store
        raise RuntimeError("the demo's results were not recorded")
    return recorded


def _run(recorded: Recorded | None) -> int:
    return _recorded(recorded).run_id
