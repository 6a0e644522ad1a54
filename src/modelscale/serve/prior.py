"""Where the SLO batcher's batch time starts: this machine's stored profile of the model file.

``modelscale serve`` fills ``versions.X.batch_time_ms`` of every model served with a p99 objective
from the knowledge base, when it holds a profile of that very file (sha256) measured on a CPU of
the same model at the replicas' thread count: a line ``a + b n`` fitted to the median time per
batch size. The batcher then plans sensible batches from the first request; without one it starts
from its first batch. Either way it keeps learning from every batch (``modelscale.batching``),
so a profile measured at another sequence length only sets where it starts.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from modelscale.config import DeploymentSpec
from modelscale.machine import machine_info
from modelscale.model.artifact import ModelArtifact
from modelscale.store import Store

__all__ = ["fit_batch_time", "stored_batch_time", "with_stored_batch_times"]


def fit_batch_time(points: Iterable[Mapping[str, Any]], threads: int) -> tuple[float, float] | None:
    """(ms per batch, ms per row) fitted to profile sweep points at ``threads``, or None.

    Points are grouped by their symbolic dims; the group with the most batch sizes is fitted
    (at least two sizes).
    """
    groups: dict[tuple[tuple[str, Any], ...], dict[int, float]] = {}
    for p in points:
        try:
            if int(p.get("threads", 0)) != threads:
                continue
            ms = float(p.get("p50_ms") or p.get("mean_ms") or math.nan)
            batch = int(p["batch"])
        except (KeyError, TypeError, ValueError):
            continue
        if not (math.isfinite(ms) and ms > 0 and batch >= 1):
            continue
        key = tuple(sorted((p.get("dims") or {}).items()))
        groups.setdefault(key, {})[batch] = ms
    best = max(groups.values(), key=len, default={})
    if len(best) < 2:
        return None
    x = np.array(sorted(best), dtype=float)
    y = np.array([best[int(n)] for n in x])
    b, a = np.polyfit(x, y, 1, w=1 / y)  # relative errors: small batches count as much
    if b <= 0:
        return None
    if a < 0:
        a, b = 0.0, float(np.sum(x * y / y**2) / np.sum(x * x / y**2))
    return float(a), float(b)


def stored_batch_time(
    store: Store, artifact: ModelArtifact, threads: int
) -> tuple[float, float] | None:
    """The batch time of ``artifact`` at ``threads`` from this machine's newest stored profile."""
    here = machine_info().cpu_model
    for run in store.runs(model=artifact.sha256, kind="profile"):  # newest first
        if run.model_version != artifact.sha256 or run.status != "ok":
            continue
        if (run.machine or {}).get("cpu_model") != here:
            continue
        if (run.results.get("engine") or {}).get("allow_spinning", True):
            continue  # measured with spinning threads: faster than any replica runs
        line = fit_batch_time(run.results.get("points") or [], threads)
        if line is not None:
            return line
    return None


def with_stored_batch_times(spec: DeploymentSpec, store: Store) -> DeploymentSpec:
    """``spec`` with ``batch_time_ms`` filled from ``store`` where a profile gives one.

    Only versions of models with an SLO batcher and no line of their own are filled; a knowledge
    base that cannot be read leaves the spec as it is (the batcher then learns from its first
    batch).
    """
    data = None
    for name, m in spec.models.items():
        if not m.adaptive:
            continue
        for label, v in m.versions.items():
            if v.batch_time_ms is not None:
                continue
            try:
                artifact = ModelArtifact.load(v.path, name=name)
                line = stored_batch_time(store, artifact, m.threads)
            except Exception:  # a knowledge base it cannot read only costs the head start
                continue
            if line is None:
                continue
            if data is None:
                data = spec.model_dump(mode="json")
            data["models"][name]["versions"][label]["batch_time_ms"] = list(line)
    return spec if data is None else DeploymentSpec.from_dict(data, source="serve options")
