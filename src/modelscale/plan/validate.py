"""Predicted vs measured: a planned configuration's max rate next to what a load test found.

``validate_server`` reads the configuration a modelscale server runs from its V2 model metadata,
predicts that configuration's max rate at the p99 bound, runs the load generator's find-max search
against it, and hands the measured rate to ``compare_with_measurement``, which returns the record
stored as a ``plan`` run (linked to the plan run and the load run). ``validate_local`` starts the
server in a planned configuration on this machine first (``plan --validate-local``).

The same record calibrates the serving overheads: ``implied_front_ms`` is the front CPU per request
that would make prediction and measurement agree, and a local validation also measures the CPU the
front, the replicas and the load generator actually spent per request.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import math
import pathlib
import socket
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import urlsplit

import numpy as np
from scipy import optimize

from modelscale.errors import InvalidInput, invalid_parameter
from modelscale.model.artifact import ModelArtifact
from modelscale.model.inputs import InputChoice, batch_dim_names, make_inputs
from modelscale.plan.capacity import max_rate
from modelscale.plan.server import Overheads, ServerConfig
from modelscale.plan.service import ServiceModel
from modelscale.result import Result

if TYPE_CHECKING:
    from modelscale.loadgen import LoadResult, Progress
    from modelscale.store import Store

__all__ = [
    "Validation",
    "ValidationOptions",
    "ValidationResult",
    "check_server",
    "compare_with_measurement",
    "fit_front_costs",
    "implied_front_ms",
    "is_local_url",
    "measured_overheads",
    "server_config",
    "validate_local",
    "validate_server",
]

_WARMUP_S = 2.0
"""Seconds of unrecorded load at the start rate before the search."""

_STALE = 0.15
"""A speed check further than this from the profile calls the profile stale."""

DEFAULT_CLIENT_MS = 0.15
"""CPU per request of the load generator on the server's machine, until measured (this box: 0.15)."""


@dataclass(frozen=True)
class ValidationResult(Result):
    """A planned configuration's predicted and measured max rate at the p99 bound, side by side.

    Attributes:
        model: Name and sha256 of the model.
        config: Replicas, threads and batch policy that ran.
        cores: Cores of the machine it ran on.
        p99_ms: The bound.
        predicted_rps: The plan's max rate at the bound.
        measured_rps: The load test's max rate at the bound.
        error: predicted / measured - 1.
        tolerance: The accepted |error|.
        within_tolerance: Whether |error| <= tolerance.
        method: What produced the prediction.
        implied_front_ms: Front CPU per request that would make the two agree (None if none does).
        load_run_id: The load run the measurement came from.
        plan_run_id: The plan run the prediction came from.
        summary: One line.
        params: The overheads the prediction assumed.
        measured_cpu_ms: CPU per request measured during the load test, by part ('front',
            'replicas', 'client'); empty when the server ran elsewhere.
        measured_handover_ms: Mean time per batch a replica was held beyond its inference (IPC,
            wake-ups), from the server's metrics over the search; None when not available.
        mean_batch: Mean rows per batch over the search (server metrics).
        infer_ratio: Mean inference time per batch in the replicas over the search, divided by
            the profile's time for a batch of ``mean_batch``: how much sharing the cores slowed
            the model itself (the capacity model's slowdown factor predicts it).
        calibrated_rps: The prediction again with the serving overheads measured during the test
            (front CPU and hand-over) in place of the assumed ones (None when neither was
            measured): the queueing model's own error, with the overheads known.
        calibrated_error: calibrated_rps / measured - 1.
        speed_ratio: The model's time in a short re-measurement just before the load test over
            the profile's time (> 1: this machine runs it slower now than when it was profiled);
            None when not checked (a remote server). A diagnostic: the predictions do not use
            it (see ``ValidationOptions.speed_check``).
    """

    kind: ClassVar[str] = "plan"

    model: dict[str, Any]
    config: ServerConfig
    cores: int
    p99_ms: float
    predicted_rps: float
    measured_rps: float
    error: float
    tolerance: float
    within_tolerance: bool
    method: str
    implied_front_ms: float | None
    load_run_id: int | None
    plan_run_id: int | None
    summary: str
    params: dict[str, Any]
    measured_cpu_ms: dict[str, float] = field(default_factory=dict)
    measured_handover_ms: float | None = None
    mean_batch: float | None = None
    infer_ratio: float | None = None
    calibrated_rps: float | None = None
    calibrated_error: float | None = None
    speed_ratio: float | None = None


def implied_front_ms(
    service: ServiceModel,
    config: ServerConfig,
    *,
    cores: int,
    p99_ms: float,
    measured_rps: float,
    overheads: Overheads,
) -> float | None:
    """The front CPU per request (ms) at which the predicted max rate equals the measured one."""

    def gap(front: float) -> float:
        ov = dataclasses.replace(overheads, front_ms=front)
        return (
            max_rate(service, config, cores=cores, p99_ms=p99_ms, overheads=ov).rate_rps
            - measured_rps
        )

    lo, hi = 0.0, 1000.0 / max(measured_rps, 1e-9)  # a front slower than this alone caps below
    try:
        if gap(lo) < 0 or gap(hi) > 0:
            return None
        return float(optimize.brentq(gap, lo, hi, xtol=1e-3, rtol=1e-3))
    except ValueError:
        return None


def compare_with_measurement(
    service: ServiceModel,
    config: ServerConfig,
    *,
    cores: int,
    p99_ms: float,
    measured_rps: float,
    overheads: Overheads | None = None,
    model: dict[str, Any] | None = None,
    tolerance: float = 0.15,
    load_run_id: int | None = None,
    plan_run_id: int | None = None,
    measured_cpu_ms: Mapping[str, float] | None = None,
    measured_handover_ms: float | None = None,
    mean_batch: float | None = None,
    mean_infer_ms: float | None = None,
) -> ValidationResult:
    """Predict ``config``'s max rate at ``p99_ms`` and set it beside ``measured_rps``.

    Args:
        service: The performance model the plan used (measured on this machine).
        config: The configuration the server ran.
        cores: Cores of the machine the server ran on.
        p99_ms: The bound the load test searched under.
        measured_rps: The load test's max rate at that bound.
        overheads: Serving overheads the prediction assumes (a load generator on the same machine
            belongs in ``client_ms``).
        model: Name and sha256 of the model.
        tolerance: Accepted relative error.
        load_run_id: The load run, for the record.
        plan_run_id: The plan run, for the record.
        measured_cpu_ms: CPU per request measured during the load test, by part.
        measured_handover_ms: Hand-over per batch measured during the load test.
        mean_batch: Mean rows per batch during the load test.
        mean_infer_ms: Mean inference time per batch in the replicas during the load test.
    """
    if not (
        isinstance(measured_rps, int | float) and math.isfinite(measured_rps) and measured_rps > 0
    ):
        raise invalid_parameter("measured_rps", "a rate > 0", measured_rps, where="plan validation")
    if not 0 < tolerance < 1:
        raise invalid_parameter(
            "tolerance", "a share in (0, 1)", tolerance, where="plan validation"
        )
    ov = overheads or Overheads()
    est = max_rate(service, config, cores=cores, p99_ms=p99_ms, overheads=ov)
    error = est.rate_rps / measured_rps - 1.0
    within = abs(error) <= tolerance
    front = implied_front_ms(
        service, config, cores=cores, p99_ms=p99_ms, measured_rps=measured_rps, overheads=ov
    )
    cpu = dict(measured_cpu_ms or {})
    calibrated = None
    if cpu.get("front") or measured_handover_ms is not None:
        cal = dataclasses.replace(
            ov,
            # The front's measured CPU per request at this run's batches: per-batch work included.
            front_ms=cpu.get("front") or ov.front_ms,
            front_batch_ms=0.0 if cpu.get("front") else ov.front_batch_ms,
            batch_ms=ov.batch_ms if measured_handover_ms is None else measured_handover_ms,
        )
        calibrated = max_rate(service, config, cores=cores, p99_ms=p99_ms, overheads=cal).rate_rps
    summary = (
        f"{config.label()} on {cores} cores at p99 <= {p99_ms:g} ms: predicted "
        f"{est.rate_rps:,.0f} req/s ({est.method}), measured {measured_rps:,.0f} req/s, error "
        f"{error:+.1%} ({'within' if within else 'outside'} +-{tolerance:.0%})"
        + (
            ""
            if calibrated is None
            else f"; with the overheads measured: predicted {calibrated:,.0f} req/s, error "
            f"{calibrated / measured_rps - 1:+.1%}"
        )
        + "."
    )
    return ValidationResult(
        model=dict(model or {}),
        config=config,
        cores=cores,
        p99_ms=p99_ms,
        predicted_rps=est.rate_rps,
        measured_rps=float(measured_rps),
        error=error,
        tolerance=tolerance,
        within_tolerance=within,
        method=est.method,
        implied_front_ms=front,
        load_run_id=load_run_id,
        plan_run_id=plan_run_id,
        summary=summary,
        params={"overheads": dataclasses.asdict(ov), "tolerance": tolerance},
        measured_cpu_ms=cpu,
        measured_handover_ms=measured_handover_ms,
        mean_batch=mean_batch,
        infer_ratio=None
        if mean_infer_ms is None or mean_batch is None
        else mean_infer_ms / float(service.time_ms(np.asarray(mean_batch), config.threads)),
        calibrated_rps=calibrated,
        calibrated_error=None if calibrated is None else calibrated / measured_rps - 1.0,
    )


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
    """

    duration_s: float = 10.0
    repeats: int = 2
    search_tolerance: float = 0.05
    tolerance: float = 0.15
    rows: int = 64
    outputs: tuple[str, ...] = ()
    api_key: str | None = field(default=None, repr=False)
    speed_check: bool = True

    def __post_init__(self) -> None:
        w = "plan validation"
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
    """What a validation produced: the comparison and the load test behind it (both recordable)."""

    result: ValidationResult
    load: LoadResult

    def record(self, store: Store, *, plan_run_id: int | None = None) -> tuple[int, int]:
        """Store the load test and the comparison linked to it, both children of the plan run.

        Returns (validation run id, load run id).
        """
        sha = str(self.result.model["sha256"])
        load_id = store.record(self.load, model_version=sha, parent_run_id=plan_run_id)
        final = dataclasses.replace(self.result, load_run_id=load_id)
        return store.record(final, model_version=sha, parent_run_id=plan_run_id), load_id


def server_config(meta: Mapping[str, Any], *, url: str) -> ServerConfig:
    """The configuration a modelscale server publishes in its V2 model metadata ``parameters``."""
    params = meta.get("parameters") or {}
    needed = ("replicas", "threads", "max_batch_size", "max_wait_ms")
    missing = [k for k in needed if k not in params]
    if missing:
        raise InvalidInput(
            f"The server at {url} does not say how it runs {meta.get('name', 'the model')!r}: its "
            f"V2 model metadata lacks parameters {', '.join(missing)}. Validation needs a "
            "modelscale server (it publishes replicas, threads and its batch policy there).",
            field="validate",
        )
    try:
        max_batch = max(1, int(params["max_batch_size"]))
        return ServerConfig(
            int(params["replicas"]),
            int(params["threads"]),
            max_batch,
            float(params["max_wait_ms"]) if max_batch > 1 else 0.0,
        )
    except (TypeError, ValueError, InvalidInput) as exc:
        raise InvalidInput(
            f"The server at {url} publishes a configuration that is not valid ({exc}).",
            field="validate",
        ) from None


def check_server(url: str, artifact: ModelArtifact, *, api_key: str | None = None) -> ServerConfig:
    """The configuration the server at ``url`` runs ``artifact`` in (InvalidInput if it does not)."""
    from modelscale.loadgen.payload import fetch_metadata, parse_url

    meta = fetch_metadata(parse_url(url, model=artifact.name), api_key=api_key)
    config = server_config(meta, url=url)
    served = (meta.get("parameters") or {}).get("sha256")
    if served != artifact.sha256:
        raise InvalidInput(
            f"The server at {url} serves {artifact.name!r} as sha256 {str(served)[:12]}, not the "
            f"planned model {artifact.path} (sha256 {artifact.sha256[:12]}). Serve the planned "
            "file (e.g. the deploy.yaml from `plan --emit deploy`) and validate again.",
            field="validate",
        )
    return config


def fit_front_costs(points: Sequence[tuple[float, float]]) -> tuple[float, float]:
    """(front CPU per request, per batch) from (mean batch, front CPU per request) measurements.

    A request costs the front ``front_ms + front_batch_ms / mean_batch``: its own parsing and
    encoding, and its share of handing its batch to a replica and splitting the reply. Fitted by
    non-negative least squares; one batch size alone cannot separate the two, so it all goes to
    ``front_ms`` then.
    """
    pts = [(b, f) for b, f in points if b >= 1 and f > 0]
    if not pts:
        raise invalid_parameter("points", "(mean batch >= 1, front ms > 0) pairs", points)
    inv = np.array([1.0 / b for b, _ in pts])
    front = np.array([f for _, f in pts])
    if np.ptp(inv) < 0.05:
        return float(np.mean(front)), 0.0
    coef, _ = optimize.nnls(np.column_stack([np.ones_like(inv), inv]), front)
    return float(coef[0]), float(coef[1])


def measured_overheads(store: Store, sha256: str, base: Overheads) -> tuple[Overheads, int] | None:
    """``base`` with the serving overheads local validations of this model on this machine
    measured, and the latest such run's id (None: none measured).

    The front's per-request and per-batch costs are fitted over the latest validation of each
    configuration, and the hand-over per batch is their median (it varies by configuration: 0.4 ms
    on one MiniLM replica here, 0.9 ms on two). The load generator's CPU is not carried over: it
    belongs to the test, not to the server.
    """
    from modelscale.machine import machine_info

    here = machine_info()
    latest: dict[str, Any] = {}
    for run in store.runs(model=sha256, kind="plan"):  # newest first
        res = run.results
        front = (res.get("measured_cpu_ms") or {}).get("front")
        m = run.machine or {}
        if (
            run.model_version == sha256
            and front
            and res.get("mean_batch")
            and m.get("cpu_model") == here.cpu_model
            and m.get("usable_cores") == here.usable_cores
        ):
            latest.setdefault(json.dumps(res.get("config"), sort_keys=True), run)
    if not latest:
        return None
    runs = list(latest.values())
    newest = runs[0]
    per_request, per_batch = fit_front_costs(
        [(r.results["mean_batch"], r.results["measured_cpu_ms"]["front"]) for r in runs]
    )
    handovers = [float(h) for r in runs if (h := r.results.get("measured_handover_ms")) is not None]
    return dataclasses.replace(
        base,
        front_ms=per_request,
        front_batch_ms=per_batch,
        batch_ms=float(np.median(handovers)) if handovers else base.batch_ms,
    ), newest.id


_BATCH_SERIES = {
    "modelscale_batch_size_count": "batches",
    "modelscale_batch_size_sum": "rows",
    "modelscale_inference_duration_seconds_sum": "infer_s",
    "modelscale_batch_roundtrip_seconds_sum": "roundtrip_s",
}


def _batch_totals(url: str, model: str, api_key: str | None) -> dict[str, float] | None:
    """Batch counters of ``model`` from the server's /metrics (None if it has none to give)."""
    import http.client

    from prometheus_client.parser import text_string_to_metric_families

    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port or 80, timeout=10)
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    try:
        conn.request("GET", "/metrics", headers=headers)
        resp = conn.getresponse()
        text = resp.read().decode("utf-8", "replace")
    except OSError:
        return None
    finally:
        conn.close()
    if resp.status != 200:
        return None
    totals = dict.fromkeys(_BATCH_SERIES.values(), 0.0)
    try:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                key = _BATCH_SERIES.get(sample.name)
                if key is not None and sample.labels.get("model") == model:
                    totals[key] += float(sample.value)
    except ValueError:
        return None
    return totals


def _handover(before: dict[str, float] | None, after: dict[str, float] | None) -> dict[str, float]:
    if before is None or after is None:
        return {}
    d = {k: after[k] - before[k] for k in after}
    if d["batches"] <= 0 or d["roundtrip_s"] <= 0:
        return {}
    return {
        "handover_ms": max(0.0, 1000.0 * (d["roundtrip_s"] - d["infer_s"]) / d["batches"]),
        "mean_batch": d["rows"] / d["batches"],
        "infer_ms": 1000.0 * d["infer_s"] / d["batches"],
    }


def is_local_url(url: str) -> bool:
    """Whether ``url`` names this machine (a loopback address or this host's own name)."""
    host = urlsplit(url).hostname or ""
    if host in ("localhost", socket.gethostname()):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@contextmanager
def _inputs_file(artifact: ModelArtifact, dims: Mapping[str, int], rows: int) -> Iterator[str]:
    sig = artifact.signature
    batch = rows if batch_dim_names(sig) else None  # a fixed batch axis keeps its size
    feeds = make_inputs(sig, batch=batch, choice=InputChoice(dims=dict(dims)))
    with tempfile.TemporaryDirectory(prefix="modelscale-validate-") as tmp:
        path = pathlib.Path(tmp) / "inputs.npz"
        np.savez(path, allow_pickle=False, **feeds)
        yield str(path)


class _CpuMeter:
    """CPU seconds spent by this process (the load generator) and a server's process tree."""

    def __init__(self, server_pid: int | None) -> None:
        import psutil

        self._psutil = psutil
        self.me = psutil.Process()
        self.server = psutil.Process(server_pid) if server_pid is not None else None
        self.start = self._sample()

    def _sample(self) -> dict[str, float]:
        t = self.me.cpu_times()
        out = {"client": t.user + t.system}
        if self.server is not None:
            try:
                t = self.server.cpu_times()
                out["front"] = t.user + t.system
                kids = self.server.children(recursive=True)
                out["replicas"] = sum(
                    sum(c.cpu_times()[:2]) for c in kids if c.is_running()
                )  # user + system
            except self._psutil.Error:
                pass
        return out

    def per_request_ms(self, requests: int) -> dict[str, float]:
        end = self._sample()
        return {
            k: 1000.0 * (end[k] - self.start[k]) / max(requests, 1)
            for k in end
            if k in self.start and end[k] >= self.start[k]
        }


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
    on_progress: Callable[[Progress], None] | None = None,
) -> Validation:
    """Load-test the modelscale server at ``url`` up to its max rate at ``p99_ms``; compare.

    The prediction is for the configuration the server publishes, on a machine like this one
    (``cores`` cores, the per-core speed ``service`` was measured at). When the server runs on this
    machine (``same_machine``; default: the URL is a loopback address) the load generator shares
    its cores: its measured CPU per request is part of the prediction, as ``client_ms``.

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
    from modelscale.loadgen import LoadOptions, run_load

    o = options or ValidationOptions()
    ov = overheads or Overheads()
    local = is_local_url(url) if same_machine is None else same_machine
    config = check_server(url, artifact, api_key=o.api_key)
    if local and ov.client_ms == 0:
        ov = dataclasses.replace(ov, client_ms=DEFAULT_CLIENT_MS)
    guess = max_rate(service, config, cores=cores, p99_ms=p99_ms, overheads=ov).rate_rps
    start = max(1.0, 0.9 * guess)  # just under the prediction: the search brackets it quickly
    with _inputs_file(artifact, dims or {}, o.rows) as npz:
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
        meter = _CpuMeter(server_pid if local else None)
        before = _batch_totals(url, artifact.name, o.api_key)
        t0 = time.perf_counter()
        load = run_load(url, model=artifact.name, options=load_options, on_progress=on_progress)
        wall = time.perf_counter() - t0
        batches = _handover(before, _batch_totals(url, artifact.name, o.api_key))
    # The warm-up's requests (sent at the start rate) are counted in the CPU meters too.
    sent = sum(int(w["stats"].sent) for w in load.windows) + int(start * _WARMUP_S)
    cpu = meter.per_request_ms(sent) if local else {}
    if local and "client" in cpu:
        ov = dataclasses.replace(ov, client_ms=cpu["client"])
    if load.max_rate_rps is None:
        raise InvalidInput(
            f"No rate kept p99 <= {p99_ms:g} ms at the server at {url} (the search ran "
            f"{wall:.0f} s); there is nothing to compare the prediction with. Is the bound below "
            "what one request takes there?",
            field="validate",
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
    from modelscale.profile import MeasureOptions, profile_model

    batches = sorted({1, config.max_batch})
    result = profile_model(
        artifact,
        batches=batches,
        threads=[config.threads],
        dims={k: [v] for k, v in (dims or {}).items()},
        allow_spinning=False,
        measure=MeasureOptions(min_time_s=min(1.0, max_time_s), max_time_s=max_time_s),
    )
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
    on_progress: Callable[[Progress], None] | None = None,
) -> Validation:
    """Start ``modelscale serve`` with ``config`` on this machine, then ``validate_server`` it."""
    from modelscale.config import DeploymentSpec
    from modelscale.serve import start_server

    spec = DeploymentSpec.single(
        artifact.path,
        name=artifact.name,
        replicas=config.replicas,
        threads=config.threads,
        max_batch=config.max_batch,
        max_wait_ms=config.max_wait_ms,
        # No SLO in the spec: with one the server sheds requests it predicts would wait past half
        # the bound (503s), which the capacity model does not model and the search counts as errors.
        p99_ms=None,
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
