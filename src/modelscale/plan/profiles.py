"""Where the performance model's points come from: the knowledge base first, a measurement otherwise.

A stored profile run is used when it profiled the same model file (sha256) with the CPU provider on
this machine (same CPU model and usable cores) at the same symbolic dims (e.g. ``seq=32``) and batch
axes, with ONNX Runtime's thread spinning off as ``serve``'s replicas run it (``profile
--no-spinning``). Without one, the model is profiled now over batch sizes and thread counts and the
profile is recorded, so the next plan reuses it. That profile takes its inputs (whole shapes for
unnamed dims, integer ranges, an inputs file) from the newest stored profile of the model at those
dims and batch axes, from any machine and with spinning on or off: ``plan`` names symbolic dims
only, so a model with unnamed dims is planned after one ``modelscale profile MODEL --shape ...``.

Why spinning matters: a profile taken with spinning on (ORT's default, the fastest alone) was
1.12-1.30x faster than the same model inside a replica here, most with 2 threads, where every
parallel section of a non-spinning session waits for its threads to wake. Planning from it
over-predicted every MiniLM configuration.
"""

from __future__ import annotations

import pathlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from modelscale.errors import InvalidInput
from modelscale.machine import machine_info
from modelscale.model.artifact import ModelArtifact
from modelscale.plan.service import (
    ServiceModel,
    ServicePoint,
    fit_service_model,
    points_from_profile,
)
from modelscale.progress import OnProgress, ProgressEvent
from modelscale.result import RecordRun
from modelscale.store import Store

__all__ = [
    "DEFAULT_BATCHES",
    "ModelProfile",
    "StoredInputs",
    "measure_profile",
    "resolve_model",
    "stored_inputs",
    "stored_profile",
]

DEFAULT_BATCHES = (1, 2, 4, 8, 16, 32)
"""Batch sizes profiled when the knowledge base has no profile of the model here."""

_CPU = "CPUExecutionProvider"
# Without a measured session RSS, a replica is assumed to hold the weights about three times over
# (file, session copy, arena) plus a Python process: a replica with ONNX Runtime imported and the
# digits example's (tiny) session measured 74 MiB here; 100 MiB leaves room for other builds.
_RSS_PER_WEIGHT_BYTE = 3
_PROCESS_BYTES = 100 * 2**20


@dataclass(frozen=True)
class ModelProfile:
    """The fitted performance model and the facts about its source.

    Attributes:
        service: The fitted service-time model.
        run_ids: Knowledge-base profile runs the points came from.
        measured_now: Whether the profile was measured by this plan.
        replica_bytes: Memory one replica needs (measured session RSS where known).
    """

    service: ServiceModel
    run_ids: tuple[int, ...]
    measured_now: bool
    replica_bytes: int


def resolve_model(model: str | pathlib.Path, *, store: Store | None) -> ModelArtifact:
    """Load ``model``: an ONNX file, or a model name / sha256 in the knowledge base."""
    p = pathlib.Path(model).expanduser()
    if p.exists():
        return ModelArtifact.load(p)
    if store is not None:
        mv = store.model(str(model))
        if mv is not None and mv.path and pathlib.Path(mv.path).is_file():
            return ModelArtifact.load(mv.path, name=mv.name)
        if mv is not None:
            raise InvalidInput(
                f"Model {model!r} is in the knowledge base but its file {mv.path} is gone. "
                "Pass the ONNX file instead.",
                field="model",
            )
    raise InvalidInput(
        f"Unknown model {str(model)!r}: it is neither an ONNX file nor a model name or sha256 in "
        "the knowledge base. Pass a path to an .onnx file.",
        field="model",
    )


def _replica_bytes(artifact: ModelArtifact, session_rss: Mapping[str, int] | None) -> int:
    measured = [int(v) for v in (session_rss or {}).values() if v]
    if measured:
        return max(measured) + _PROCESS_BYTES
    return artifact.size_bytes * _RSS_PER_WEIGHT_BYTE + _PROCESS_BYTES


def _same_batch_axes(artifact: ModelArtifact, params: Mapping[str, Any]) -> bool:
    """Whether a stored profile fed the model's inputs along ``artifact``'s batch axes."""
    stored = params.get("batch_axes")
    if stored is None:  # profiled before batch axes were recorded: the defaults
        stored = {s.name: None if s.shape == () else 0 for s in artifact.signature.inputs}
    return dict(stored) == artifact.signature.batch_axes


@dataclass(frozen=True)
class StoredInputs:
    """How a stored profile fed the model: what ``plan`` cannot say with dims alone."""

    run_id: int
    shapes: Mapping[str, Sequence[int]] = field(default_factory=dict)
    int_ranges: Mapping[str, tuple[int, int]] = field(default_factory=dict)
    inputs: str | None = None


def stored_inputs(
    artifact: ModelArtifact, store: Store, *, dims: Mapping[str, int] | None = None
) -> StoredInputs | None:
    """The inputs of the newest stored profile of ``artifact`` at ``dims`` and its batch axes.

    Any machine, spinning on or off: the shapes are the model's, not the machine's. None when
    no such profile gave whole shapes, integer ranges or an inputs file that still exists.
    """
    for run in store.runs(model=artifact.sha256, kind="profile"):  # newest first
        params = run.params or {}
        if run.model_version != artifact.sha256 or run.status != "ok":
            continue
        if not _same_batch_axes(artifact, params):
            continue
        if not points_from_profile(run.results.get("points") or [], dims=dims):
            continue
        path = params.get("inputs")
        found = StoredInputs(
            run_id=run.id,
            shapes={k: tuple(v) for k, v in (params.get("shapes") or {}).items()},
            int_ranges={k: (v[0], v[1]) for k, v in (params.get("int_ranges") or {}).items()},
            inputs=path if path and path != "arrays" and pathlib.Path(path).is_file() else None,
        )
        if found.shapes or found.int_ranges or found.inputs:
            return found
    return None


def stored_profile(
    artifact: ModelArtifact, store: Store, *, dims: Mapping[str, int] | None = None
) -> ModelProfile | None:
    """A model profile from this machine's stored profile runs, or None when there is none."""
    here = machine_info()
    points: dict[tuple[int, int], ServicePoint] = {}
    run_ids: list[int] = []
    rss: dict[str, int] = {}
    for run in store.runs(model=artifact.sha256, kind="profile"):  # newest first
        if run.model_version != artifact.sha256 or run.status != "ok":
            continue
        if not _same_batch_axes(artifact, run.params or {}):
            continue
        m = run.machine or {}
        if m.get("cpu_model") != here.cpu_model or m.get("usable_cores") != here.usable_cores:
            continue
        if (run.params or {}).get("provider", _CPU) != _CPU:
            continue
        if (run.results.get("engine") or {}).get("allow_spinning", True):
            continue  # measured with spinning threads: faster than any replica runs
        found = points_from_profile(run.results.get("points") or [], dims=dims)
        new = [p for p in found if (p.batch, p.threads) not in points]
        if not new:
            continue
        for p in new:
            points[(p.batch, p.threads)] = p
        run_ids.append(run.id)
        for k, v in (run.results.get("session_rss_bytes") or {}).items():
            rss.setdefault(str(k), int(v))
    if len({b for b, _ in points}) < 2:
        return None
    service = fit_service_model(
        list(points.values()),
        source=f"knowledge base profile run(s) {', '.join(map(str, run_ids))}",
    )
    return ModelProfile(service, tuple(run_ids), False, _replica_bytes(artifact, rss))


def measure_profile(
    artifact: ModelArtifact,
    *,
    record: RecordRun | None = None,
    dims: Mapping[str, int] | None = None,
    batches: Sequence[int] = DEFAULT_BATCHES,
    threads: Sequence[int] | None = None,
    max_time_s: float = 5.0,
    on_progress: OnProgress | None = None,
    inputs: StoredInputs | None = None,
) -> ModelProfile:
    """Profile ``artifact`` here now, as the replicas run it, and fit the performance model.

    ``record`` stores the profile (the next plan then finds it); progress events are the
    profile's, their stage prefixed with 'profiling: '. ``inputs`` feeds the model as a stored
    profile did (``stored_inputs``); the batch axes are ``artifact``'s.
    """
    from modelscale.profile import MeasureOptions, ProfileOptions, profile_model

    def profiling(e: ProgressEvent) -> None:
        if on_progress is not None:
            on_progress(ProgressEvent(f"profiling: {e.stage}", e.done, e.total, e.detail))

    cores = machine_info().usable_cores
    options = ProfileOptions(
        batches=tuple(batches),
        threads=tuple(threads) if threads else tuple(sorted({1, cores})),
        dims={k: [v] for k, v in (dims or {}).items()},
        shapes=dict(inputs.shapes) if inputs else {},
        int_ranges=dict(inputs.int_ranges) if inputs else {},
        inputs=inputs.inputs if inputs else None,
        allow_spinning=False,  # as the replicas run it
        measure=MeasureOptions(max_time_s=max_time_s),
    )
    result = profile_model(artifact, options=options, on_progress=profiling)
    run_id = record(result) if record is not None else None
    run_ids: tuple[int, ...] = () if run_id is None else (run_id,)
    pts = points_from_profile(result.points, dims=dims)
    where = f"profile run {run_ids[0]}, measured now" if run_ids else "profile measured now"
    if inputs is not None:
        where += f" with the inputs of profile run {inputs.run_id}"
    service = fit_service_model(pts, source=where)
    return ModelProfile(service, run_ids, True, _replica_bytes(artifact, result.session_rss_bytes))
