"""Validate a plan: start or reach a modelscale server, load-test it to its max rate, compare.

``validate_server`` reads the configuration a modelscale server runs from its V2 model metadata,
predicts that configuration's max rate at the p99 bound, runs the load generator's find-max search
against it while metering CPU and scraping the server's batch counters, and hands the measurement
to ``modelscale.plan.compare_with_measurement``, whose record is stored as a ``plan`` run (linked
to the plan run and the load run). ``validate_local`` starts the server in a planned
configuration on this machine first; ``validate_plan`` picks one of the two for a plan.

On this machine the test shares the cores with whatever else runs: during each probe window the
CPU that other processes take is metered (``OtherCpuMeter``), and past
``ValidationOptions.max_other_cores`` the validation is inconclusive rather than within or
outside the tolerance (a build beside the test moved the measured max rate by 50-180%).
"""

from __future__ import annotations

import dataclasses
import math
import pathlib
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from modelscale.config import DeploymentSpec
from modelscale.errors import InvalidInput, invalid_parameter
from modelscale.loadgen import (
    LoadOptions,
    LoadResult,
    fetch_metadata,
    parse_url,
    run_load,
)
from modelscale.model import ModelArtifact
from modelscale.plan import (
    DEFAULT_CLIENT_MS,
    MAX_OTHER_CORES,
    Overheads,
    PlanResult,
    ServerConfig,
    ServiceModel,
    ValidationResult,
    batch_cap,
    compare_with_measurement,
    max_rate,
    server_config,
)
from modelscale.profile import MeasureOptions, ProfileOptions, profile_model
from modelscale.progress import OnProgress, ProgressEvent
from modelscale.serve import start_server
from modelscale.workflow.metering import (
    CpuMeter,
    OtherCpuMeter,
    batch_deltas,
    batch_totals,
    inputs_file,
    is_local_url,
)

__all__ = [
    "Validation",
    "ValidationOptions",
    "check_server",
    "speed_ratio",
    "validate_local",
    "validate_plan",
    "validate_server",
]

_WARMUP_S = 2.0
"""Seconds of unrecorded load at the start rate before the search."""

_STALE = 0.15
"""A speed check further than this from the profile calls the profile stale."""


@dataclass(frozen=True)
class ValidationOptions:
    """How hard the load test searches.

    Attributes:
        duration_s: Seconds per find-max probe window (>= 30 for figures that matter).
        repeats: Windows per probe; all must pass.
        search_tolerance: The search stops when its bracket is this tight (relative).
        tolerance: The accepted |predicted / measured - 1|.
        rows: Distinct request bodies the load generator cycles through.
        outputs: Outputs each request asks for (empty: all, the V2 default). Encoding outputs is
            much of the front's work: ask for what the clients will.
        api_key: Bearer key for a server that needs one.
        speed_check: Before a local load test, re-time the model at the configuration's threads
            (batch 1 and the batch cap, a second or two each) and record how much slower or
            faster this machine runs it than the profile says: shared and cloud machines drift by
            10% and more within an hour (measured here), as much as the tolerance, and a stale
            profile is then worth re-measuring. Only recorded: scaling the prediction by it was
            tried, and a check this short was as noisy as the drift it measures (1.17x in one
            case that then ran faster than profiled).
        max_other_cores: The cores other processes may keep busy during any probe window of a
            local validation before it is inconclusive (disturbed), not within or outside.
    """

    duration_s: float = 10.0
    repeats: int = 2
    search_tolerance: float = 0.05
    tolerance: float = 0.15
    rows: int = 64
    outputs: tuple[str, ...] = ()
    api_key: str | None = field(default=None, repr=False)
    speed_check: bool = True
    max_other_cores: float = MAX_OTHER_CORES

    def __post_init__(self) -> None:
        w = "plan validation"
        if not (math.isfinite(self.max_other_cores) and self.max_other_cores >= 0):
            raise invalid_parameter(
                "max_other_cores", "a number of cores >= 0", self.max_other_cores, where=w
            )
        if not (self.duration_s > 0 and math.isfinite(self.duration_s)):
            raise invalid_parameter("duration_s", "seconds > 0", self.duration_s, where=w)
        for name in ("repeats", "rows"):
            if getattr(self, name) < 1:
                raise invalid_parameter(name, "an integer >= 1", getattr(self, name), where=w)
        for name in ("search_tolerance", "tolerance"):
            if not 0 < getattr(self, name) < 1:
                raise invalid_parameter(name, "a share in (0, 1)", getattr(self, name), where=w)


@dataclass(frozen=True)
class Validation:
    """What a validation produced: the comparison and the load test behind it.

    ``modelscale.workflow.record`` stores both, as children of the plan run, the comparison
    pointing at the load test.
    """

    result: ValidationResult
    load: LoadResult


def check_server(url: str, artifact: ModelArtifact, *, api_key: str | None = None) -> ServerConfig:
    """The configuration the server at ``url`` runs ``artifact`` in (InvalidInput if it does not)."""
    meta = fetch_metadata(parse_url(url, model=artifact.name), api_key=api_key)
    config = server_config(meta, url=url)
    served = (meta.get("parameters") or {}).get("sha256")
    if served != artifact.sha256:
        raise InvalidInput(
            f"The server at {url} serves {artifact.name!r} as sha256 {str(served)[:12]}, not the "
            f"planned model {artifact.path} (sha256 {artifact.sha256[:12]}). Serve the planned "
            "file (e.g. the deploy.yaml from `plan --emit deploy`) and validate again.",
            field="url",
        )
    return config


def validate_server(
    url: str,
    *,
    artifact: ModelArtifact,
    service: ServiceModel,
    p99_ms: float,
    dims: Mapping[str, int] | None = None,
    cores: int,
    overheads: Overheads | None = None,
    options: ValidationOptions | None = None,
    same_machine: bool | None = None,
    server_pid: int | None = None,
    plan_run_id: int | None = None,
    on_progress: OnProgress | None = None,
) -> Validation:
    """Load-test the modelscale server at ``url`` up to its max rate at ``p99_ms``; compare.

    The prediction is for the configuration the server publishes, on a machine like this one
    (``cores`` cores, the per-core speed ``service`` was measured at). When the server runs on this
    machine (``same_machine``; default: the URL is a loopback address) the load generator shares
    its cores: its measured CPU per request is part of the prediction, as ``client_ms``, and
    with ``server_pid`` the CPU other processes take during each probe window is metered: past
    ``options.max_other_cores`` the result is inconclusive.

    Args:
        url: Base URL of the server.
        artifact: The planned model: the server must serve this exact file (same sha256).
        service: The performance model the plan used.
        p99_ms: The bound.
        dims: Symbolic dim values the model runs at (shape of the load's requests).
        cores: Cores of the server's machine.
        overheads: Serving overheads the prediction assumes.
        options: Probe length, repeats, tolerances.
        same_machine: Whether the server runs on this machine (None: judge from the URL).
        server_pid: The server's process id, to measure its CPU per request.
        plan_run_id: The plan run, for the record.
        on_progress: Load generator progress.
    """
    o = options or ValidationOptions()
    ov = overheads or Overheads()
    local = is_local_url(url) if same_machine is None else same_machine
    config = check_server(url, artifact, api_key=o.api_key)
    if local and ov.client_ms == 0:
        ov = dataclasses.replace(ov, client_ms=DEFAULT_CLIENT_MS)
    if config.objective_ms is not None:
        # The server publishes its bound (64 rows by default); its policy sends at most the
        # batch within half its objective, which is what is simulated.
        config = dataclasses.replace(
            config,
            max_batch=batch_cap(service, config.threads, config.objective_ms, ov, config.max_batch),
        )
    guess = max_rate(service, config, cores=cores, p99_ms=p99_ms, overheads=ov).rate_rps
    start = max(1.0, 0.9 * guess)  # just under the prediction: the search brackets it quickly
    with inputs_file(artifact, dims or {}, o.rows) as npz:
        load_options = LoadOptions(
            rate=start,
            find_max=True,
            p99_ms=p99_ms,
            pattern="poisson",
            duration_s=o.duration_s,
            repeats=o.repeats,
            tolerance=o.search_tolerance,
            warmup_s=_WARMUP_S,
            inputs=pathlib.Path(npz),
            outputs=tuple(o.outputs),
            api_key=o.api_key,
        )
        meter = CpuMeter(server_pid if local else None)
        others = OtherCpuMeter(server_pid) if local and server_pid is not None else None

        def progress(event: ProgressEvent) -> None:
            if others is not None:
                others(event)
            if on_progress is not None:
                on_progress(event)

        before = batch_totals(url, artifact.name, o.api_key)
        t0 = time.perf_counter()
        load = run_load(url, model=artifact.name, options=load_options, on_progress=progress)
        wall = time.perf_counter() - t0
        batches = batch_deltas(before, batch_totals(url, artifact.name, o.api_key))
    # The warm-up's requests (sent at the start rate) are counted in the CPU meters too.
    sent = sum(int(w["stats"].sent) for w in load.windows) + int(start * _WARMUP_S)
    cpu = meter.per_request_ms(sent) if local else {}
    if local and "client" in cpu:
        ov = dataclasses.replace(ov, client_ms=cpu["client"])
    if load.max_rate_rps is None:
        busy = max((w.cores for w in others.windows), default=0.0) if others else 0.0
        why = (
            f" Other processes kept up to {busy:.1f} cores busy meanwhile: try again on a quiet "
            "machine."
            if busy > o.max_other_cores
            else " Is the bound below what one request takes there?"
        )
        raise InvalidInput(
            f"No rate kept p99 <= {p99_ms:g} ms at the server at {url} (the search ran "
            f"{wall:.0f} s); there is nothing to compare the prediction with.{why}",
            field="url",
        )
    result = compare_with_measurement(
        service,
        config,
        cores=cores,
        p99_ms=p99_ms,
        measured_rps=load.max_rate_rps,
        overheads=ov,
        model={"name": artifact.name, "sha256": artifact.sha256, "url": url},
        tolerance=o.tolerance,
        plan_run_id=plan_run_id,
        measured_cpu_ms=cpu,
        measured_handover_ms=batches.get("handover_ms"),
        mean_batch=batches.get("mean_batch"),
        mean_infer_ms=batches.get("infer_ms"),
        other_cpu_cores=[w.cores for w in others.windows] if others is not None else (),
        max_other_cores=o.max_other_cores,
    )
    return Validation(result, load)


def speed_ratio(
    artifact: ModelArtifact,
    service: ServiceModel,
    config: ServerConfig,
    *,
    dims: Mapping[str, int] | None = None,
    max_time_s: float = 2.0,
) -> float:
    """How much slower (> 1) this machine runs the model now than ``service`` says it does.

    Times batch 1 and the configuration's batch cap at its thread count, as the replicas run it
    (a fresh process, ONNX Runtime spinning off), and returns the median ratio of the measured
    mean to the model's time.
    """
    batches = sorted({1, config.max_batch})
    options = ProfileOptions(
        batches=batches,
        threads=[config.threads],
        dims={k: [v] for k, v in (dims or {}).items()},
        allow_spinning=False,
        measure=MeasureOptions(min_time_s=min(1.0, max_time_s), max_time_s=max_time_s),
    )
    result = profile_model(artifact, options=options)
    ratios = [
        p.mean_ms / float(service.time_ms(np.asarray(float(p.batch)), p.threads))
        for p in result.points
    ]
    return float(np.median(ratios))


def validate_local(
    artifact: ModelArtifact,
    config: ServerConfig,
    *,
    service: ServiceModel,
    p99_ms: float,
    dims: Mapping[str, int] | None = None,
    cores: int,
    overheads: Overheads | None = None,
    options: ValidationOptions | None = None,
    plan_run_id: int | None = None,
    on_progress: OnProgress | None = None,
) -> Validation:
    """Start ``modelscale serve`` with ``config`` on this machine, then ``validate_server`` it."""
    # Batches from the objective are served as plan emits them: only the objective (the server
    # finds its batches up to its default bound and sheds what it predicts late, as simulated).
    # A fixed policy gets no SLO: with one the server would choose its own batches instead.
    adaptive = config.objective_ms is not None
    spec = DeploymentSpec.single(
        artifact.path,
        name=artifact.name,
        replicas=config.replicas,
        threads=config.threads,
        max_batch=None if adaptive else config.max_batch,
        max_wait_ms=None if adaptive else config.max_wait_ms,
        p99_ms=config.objective_ms,
        monitor=False,
    )
    o = options or ValidationOptions()
    ratio = speed_ratio(artifact, service, config, dims=dims) if o.speed_check else None
    with start_server(spec) as server:
        v = validate_server(
            server.url,
            artifact=artifact,
            service=service,
            p99_ms=p99_ms,
            dims=dims,
            cores=cores,
            overheads=overheads,
            options=options,
            same_machine=True,
            server_pid=server.pid,
            plan_run_id=plan_run_id,
            on_progress=on_progress,
        )
    if ratio is None:
        return v
    res = v.result
    return Validation(
        dataclasses.replace(
            res,
            speed_ratio=ratio,
            summary=f"{res.summary} The model ran {ratio:.2f}x its profiled time just before "
            "the test"
            + (
                "; the profile may be stale: re-profile with `modelscale profile --no-spinning`."
                if abs(ratio - 1.0) > _STALE
                else "."
            ),
        ),
        v.load,
    )


def validate_plan(
    plan: PlanResult,
    artifact: ModelArtifact,
    *,
    url: str | None = None,
    options: ValidationOptions | None = None,
    plan_run_id: int | None = None,
    on_progress: OnProgress | None = None,
) -> Validation:
    """Run the load test ``plan`` is checked against, predicting with the overheads it used.

    Against the server at ``url``, or, without one, a server started here in the plan's best
    configuration on this machine.
    """
    dims = {str(k): int(v) for k, v in (plan.model.get("dims") or {}).items()}
    cores = int(plan.machine["usable_cores"])
    planned_overheads = plan.params["overheads"]  # calibrated by earlier validations, if it was
    p99 = float(plan.target["p99_ms"])
    if url is not None:
        return validate_server(
            url, artifact=artifact, service=plan.service, p99_ms=p99, dims=dims, cores=cores,
            overheads=planned_overheads, options=options, plan_run_id=plan_run_id,
            on_progress=on_progress,
        )  # fmt: skip
    if plan.local is None:
        raise InvalidInput(
            f"No configuration on this machine keeps p99 <= {p99:g} ms, so there is nothing to "
            "start and validate. Raise the bound ('p99_ms') or validate a server that runs "
            "elsewhere ('url').",
            field="p99_ms",
        )
    return validate_local(
        artifact, plan.local.config, service=plan.service, p99_ms=p99, dims=dims, cores=cores,
        overheads=planned_overheads, options=options, plan_run_id=plan_run_id,
        on_progress=on_progress,
    )  # fmt: skip
