"""``plan_model``: from a model file and an SLO to a capacity and cost plan, in one call.

Inputs are checked first (rates, bound, headroom, catalog, machine type), so bad input fails before
any profiling; then the performance model comes from the knowledge base or a fresh profile; then the
planner searches configurations and machines.
"""

from __future__ import annotations

import dataclasses
import pathlib
from collections.abc import Mapping

from modelscale.errors import InvalidInput, RuntimeFailure
from modelscale.model.artifact import ModelArtifact
from modelscale.plan.calibration import measured_overheads
from modelscale.plan.catalog import Catalog, load_catalog
from modelscale.plan.planner import PlanOptions, check_targets, plan_capacity
from modelscale.plan.profiles import (
    measure_profile,
    resolve_model,
    stored_inputs,
    stored_profile,
)
from modelscale.plan.results import PlanResult
from modelscale.plan.service import ServiceModel
from modelscale.progress import OnProgress
from modelscale.result import RecordRun
from modelscale.store import Store

__all__ = ["plan_model"]

_FROM_STORED = (
    "plan then profiles the model with that stored profile's inputs, or uses its measurements "
    "if it was taken with --no-spinning on this machine."
)


def plan_model(
    model: ModelArtifact | str | pathlib.Path,
    *,
    rps: float,
    p99_ms: float,
    dims: Mapping[str, int] | None = None,
    batch_axes: Mapping[str, int | None] | None = None,
    catalog: Catalog | str | pathlib.Path | None = None,
    options: PlanOptions | None = None,
    store: Store | None = None,
    record_profile: RecordRun | None = None,
    gpu_services: Mapping[str, ServiceModel] | None = None,
    max_time_s: float = 5.0,
    on_progress: OnProgress | None = None,
    calibrate: bool = True,
) -> PlanResult:
    """Plan serving ``model`` at ``rps`` requests/s with p99 latency <= ``p99_ms``.

    Args:
        model: An ONNX file, a loaded ModelArtifact, or a model name / sha256 in the store.
        rps: Target rate now (requests/s).
        p99_ms: p99 latency bound (ms).
        dims: Symbolic dim values the model runs at (e.g. ``{"seq": 32}``).
        batch_axes: The batch axis of inputs whose batch axis is not axis 0 (``{"state": 1}``),
            or None for an input that is not batched; 0-d inputs never are. Stored profiles are
            used only when they were taken with the same batch axes.
        catalog: Instance catalog (a Catalog or CSV path; None: the bundled one).
        options: Headroom, phases, core factor, machine restriction, overheads, batch policies.
        store: Knowledge base to read stored profiles from (None: always measure).
        record_profile: Stores a profile measured now (e.g. ``Recorder.run_id``), so the next
            plan finds it in ``store``; None: not stored.
        gpu_services: Performance models measured on GPUs, by GPU model name.
        max_time_s: Seconds at most per profile point when the model has to be profiled.
        on_progress: Progress: the profile's steps when the model has to be profiled (stages
            'profiling: ...'), then each machine size searched ('searching configurations: ...').
        calibrate: Use the front CPU per request and the hand-over per batch that the latest
            validation of this model on this machine measured (``plan --validate-local``) instead
            of the assumed ones.
    """
    opts = options or PlanOptions()
    opts.check()
    check_targets(rps, p99_ms)
    cat: Catalog | None
    if isinstance(catalog, Catalog):
        cat = catalog
    elif opts.machine == "local" and catalog is None:
        cat = None
    else:
        cat = load_catalog(catalog)  # a user catalog is checked even when unused
    if cat is not None and opts.machine not in (None, "local"):
        cat.find(opts.machine)
    artifact = model if isinstance(model, ModelArtifact) else resolve_model(model, store=store)
    artifact = artifact.with_batch_axes(batch_axes)
    if calibrate and store is not None:
        found = measured_overheads(store, artifact.sha256, opts.overheads)
        if found is not None:
            overheads, run_id = found
            opts = dataclasses.replace(
                opts,
                overheads=overheads,
                overheads_source=f"front CPU and hand-over measured by validation run {run_id}",
            )
    profile = stored_profile(artifact, store, dims=dims) if store is not None else None
    inputs = None
    if profile is None:
        inputs = stored_inputs(artifact, store, dims=dims) if store is not None else None
        try:
            profile = measure_profile(
                artifact,
                record=record_profile,
                dims=dims,
                max_time_s=max_time_s,
                on_progress=on_progress,
                inputs=inputs,
            )
        except InvalidInput as exc:
            if exc.field not in ("dims", "shapes") or inputs is not None:
                raise
            # The shape errors speak profile's options; plan names symbolic dims only.
            raise InvalidInput(
                f"{exc} (plan takes 'dims' only: for shapes it cannot name, profile the model with "
                "its input shapes first, e.g. `modelscale profile MODEL --shape INPUT=D0,D1,...`; "
                f"{_FROM_STORED})",
                field=exc.field,
            ) from None
        except RuntimeFailure as exc:
            if "'int_ranges'" not in str(exc) or inputs is not None:
                raise
            raise RuntimeFailure(
                f"{exc} Plan takes integer ranges from a stored profile: profile the model first, "
                f"e.g. `modelscale profile MODEL --int-range NAME=LO,HI`; {_FROM_STORED}"
            ) from None
    plan = plan_capacity(
        profile.service,
        rps=rps,
        p99_ms=p99_ms,
        catalog=None if opts.machine == "local" else cat,
        options=opts,
        model={
            "name": artifact.name,
            "sha256": artifact.sha256,
            "path": str(artifact.path),
            "dims": dict(dims or {}),
            "batch_axes": artifact.signature.batch_axes,
            "inputs_from_run": inputs.run_id if inputs is not None else None,
            "profile_run_ids": list(profile.run_ids),
            "profiled_now": profile.measured_now,
        },
        replica_bytes=profile.replica_bytes,
        gpu_services=gpu_services,
        on_progress=on_progress,
    )
    return plan
