"""Plan fixtures: synthetic service models, hand-made catalogs, stored synthetic profiles."""

from __future__ import annotations

import dataclasses
import pathlib
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import pytest

from modelscale.machine import MachineInfo, machine_info
from modelscale.plan import ServiceModel, ServicePoint, fit_service_model
from modelscale.result import Result

CATALOG_HEADER = (
    "provider,instance_type,region,vcpus,memory_gib,gpu_model,gpu_count,gpu_memory_gib,"
    "price_per_hour_usd,spot_price_per_hour_usd,source,source_date"
)


def linear_points(
    *,
    fixed: float = 1.0,
    per_item: float = 2.0,
    parallel: float = 0.5,
    batches: Sequence[int] = (1, 2, 4, 8, 16),
    threads: Sequence[int] = (1, 2),
) -> list[ServicePoint]:
    """Exact points of S(n, T) = (fixed + n per_item) x ((1 - parallel) + parallel / T)."""
    out = []
    for t in threads:
        scale = (1 - parallel) + parallel / t
        for b in batches:
            out.append(ServicePoint(b, t, (fixed + b * per_item) * scale))
    return out


@pytest.fixture
def service() -> ServiceModel:
    """A MiniLM-like model: 1 ms + 2 ms per item on one thread, half of it parallel."""
    return fit_service_model(linear_points(), source="synthetic")


@pytest.fixture
def two_core_machine() -> MachineInfo:
    """This machine with two usable cores and x86 flags, whatever runs the tests."""
    return dataclasses.replace(
        machine_info(), usable_cores=2, isa_flags=("avx2",), memory_bytes=16 * 2**30
    )


@pytest.fixture
def write_catalog(tmp_path: pathlib.Path) -> Callable[..., pathlib.Path]:
    """Write a catalog CSV from rows (provider, type, vcpus, memory, price[, gpu_model, gpus])."""

    def write(
        rows: Sequence[Sequence[Any]], *, name: str = "catalog.csv", header: str = CATALOG_HEADER
    ) -> pathlib.Path:
        lines = [header]
        for r in rows:
            provider, kind, vcpus, mem, price, *gpu = r
            gpu_model, gpus = [*gpu, None, None][:2]
            lines.append(
                f"{provider},{kind},r1,{vcpus},{mem},{gpu_model or ''},{gpus or ''},,{price},,test,"
            )
        path = tmp_path / name
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        return path

    return write


@dataclasses.dataclass(frozen=True)
class StoredProfile(Result):
    """A profile-shaped result, to put known points in the knowledge base."""

    kind: ClassVar[str] = "profile"

    points: tuple[dict[str, Any], ...]
    session_rss_bytes: dict[str, int]
    engine: dict[str, Any]
    params: dict[str, Any]


def profile_result(
    points: Sequence[ServicePoint],
    *,
    dims: dict[str, int] | None = None,
    allow_spinning: bool = False,
) -> StoredProfile:
    """The stored form of ``points`` (as profile_model would record them; by default measured as
    the replicas run, with ORT's thread spinning off)."""
    return StoredProfile(
        points=tuple(
            {
                "batch": p.batch,
                "threads": p.threads,
                "dims": dict(dims or {}),
                "mean_ms": p.mean_ms,
                "p50_ms": p.mean_ms,
                "p99_ms": p.mean_ms * 1.05,
            }
            for p in points
        ),
        session_rss_bytes={"1": 50 * 2**20},
        engine={"allow_spinning": allow_spinning},
        params={"provider": "CPUExecutionProvider", "allow_spinning": allow_spinning},
    )
