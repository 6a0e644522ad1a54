"""The instance catalog: cloud machine types with vCPUs, memory, GPUs and hourly list prices.

The bundled catalog (``modelscale/data/instances.csv``, see ``instances.md`` beside it) is a copy
of a public snapshot of AWS, GCP and Azure list prices; users pass their own with ``--catalog``.
A user catalog is checked before anything is planned: a missing column or a price that is not a
number names the file, the row and the column.
"""

from __future__ import annotations

import csv
import importlib.resources
import math
import pathlib
import re
from collections.abc import Mapping
from dataclasses import dataclass

from modelscale.errors import InvalidInput

__all__ = [
    "REQUIRED_COLUMNS",
    "Catalog",
    "InstanceType",
    "default_catalog_path",
    "infer_arch",
    "load_catalog",
]

REQUIRED_COLUMNS = ("provider", "instance_type", "vcpus", "memory_gib", "price_per_hour_usd")
"""Columns every catalog needs."""

_HOURS_PER_MONTH = 730.0

# Arm instance families by name, for catalogs without an ``arch`` column: AWS Graviton (m7g, c7gn,
# t4g, x2gd), GCP Tau T2A and Axion C4A, Azure Ampere/Cobalt (D4ps_v5, E8pds_v6).
_ARM_PATTERNS = (
    re.compile(r"^[a-z]+\d+g[a-z]*\.", re.IGNORECASE),
    re.compile(r"^(t2a|c4a)-", re.IGNORECASE),
    re.compile(r"^standard_[a-z]+\d+[a-z]*p[a-z]*_v\d+$", re.IGNORECASE),
)


def infer_arch(instance_type: str) -> str:
    """'arm64' for known Arm instance families, else 'x86_64'."""
    return "arm64" if any(p.match(instance_type) for p in _ARM_PATTERNS) else "x86_64"


@dataclass(frozen=True)
class InstanceType:
    """One machine type a provider rents.

    Attributes:
        provider: 'aws', 'gcp', 'azure', or anything a user catalog says.
        name: The provider's instance type name.
        region: Where the price applies.
        vcpus: Virtual CPUs.
        memory_gib: Memory.
        price_per_hour: On-demand list price, USD per hour.
        spot_price_per_hour: Spot list price, USD per hour, when known.
        gpu_model: GPU model, None for CPU machines.
        gpu_count: GPUs.
        gpu_memory_gib: Memory per GPU.
        arch: 'x86_64' or 'arm64'.
        source: Where the row came from.
        source_date: When the price was read, when known.
    """

    provider: str
    name: str
    region: str | None
    vcpus: int
    memory_gib: float
    price_per_hour: float
    spot_price_per_hour: float | None = None
    gpu_model: str | None = None
    gpu_count: int = 0
    gpu_memory_gib: float | None = None
    arch: str = "x86_64"
    source: str | None = None
    source_date: str | None = None

    @property
    def is_gpu(self) -> bool:
        """Whether the machine has GPUs."""
        return self.gpu_count > 0 or bool(self.gpu_model)

    def price(self, *, spot: bool = False) -> float:
        """USD per hour, on demand or (when known) spot."""
        if spot and self.spot_price_per_hour is not None:
            return self.spot_price_per_hour
        return self.price_per_hour

    def monthly(self, *, spot: bool = False) -> float:
        """USD per month (730 hours)."""
        return self.price(spot=spot) * _HOURS_PER_MONTH


@dataclass(frozen=True)
class Catalog:
    """Instance types read from one CSV file.

    Attributes:
        path: The file.
        instances: The usable rows.
        flagged: Rows skipped because their ``flag_reason`` is set, as 'provider/type: reason'.
        bundled: Whether this is the catalog shipped with modelscale.
    """

    path: str
    instances: tuple[InstanceType, ...]
    flagged: tuple[str, ...] = ()
    bundled: bool = False

    def find(self, name: str) -> InstanceType:
        """The instance type called ``name`` (case-insensitive)."""
        for inst in self.instances:
            if inst.name.lower() == name.lower():
                return inst
        raise InvalidInput(
            f"Unknown machine type {name!r}: it is not in the catalog {self.path}. Expected "
            "'local' or an instance_type from the catalog (e.g. "
            f"{', '.join(i.name for i in self.instances[:3])}).",
            field="machine",
        )


def default_catalog_path() -> pathlib.Path:
    """Where the bundled catalog is installed."""
    return pathlib.Path(str(importlib.resources.files("modelscale") / "data" / "instances.csv"))


def _number(
    row: Mapping[str, str],
    column: str,
    line: int,
    path: str,
    *,
    integer: bool = False,
    optional: bool = False,
) -> float | None:
    raw = (row.get(column) or "").strip()
    if raw == "" and optional:
        return None
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    ok = math.isfinite(value) and value >= 0 and (not integer or value == int(value))
    if integer and ok and not optional:
        ok = value >= 1
    if not ok:
        kind = "a whole number >= 1" if integer and not optional else "a number >= 0"
        raise InvalidInput(
            f"Catalog {path}, row {line} ({row.get('instance_type') or '?'}): column '{column}' "
            f"must be {kind}. Got {raw!r} instead.",
            field=column,
        )
    return value


def load_catalog(path: str | pathlib.Path | None = None) -> Catalog:
    """Read and check an instance catalog (the bundled one when ``path`` is None).

    Raises:
        InvalidInput: The file is missing, lacks a required column, or a number is not a number.
    """
    bundled = path is None
    p = default_catalog_path() if path is None else pathlib.Path(path).expanduser()
    if not p.is_file():
        raise InvalidInput(f"Catalog {p} does not exist. Expected a CSV file.", field="catalog")
    try:
        text = p.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise InvalidInput(f"Catalog {p} is not UTF-8 text.", field="catalog") from None
    reader = csv.DictReader(text.splitlines())
    columns = [c.strip() for c in reader.fieldnames or []]
    missing = [c for c in REQUIRED_COLUMNS if c not in columns]
    if missing:
        raise InvalidInput(
            f"Catalog {p} lacks the column(s) {', '.join(missing)}. Expected at least: "
            f"{', '.join(REQUIRED_COLUMNS)}.",
            field=missing[0],
        )
    instances: list[InstanceType] = []
    flagged: list[str] = []
    seen: set[tuple[str, str, str]] = set()
    for line, raw_row in enumerate(reader, start=2):
        row = {(k or "").strip(): (v or "").strip() for k, v in raw_row.items()}
        provider, name = row.get("provider", ""), row.get("instance_type", "")
        if not provider or not name:
            raise InvalidInput(
                f"Catalog {p}, row {line}: 'provider' and 'instance_type' must not be empty.",
                field="instance_type" if provider else "provider",
            )
        if row.get("flag_reason"):
            flagged.append(f"{provider}/{name}: {row['flag_reason']}")
            continue
        key = (provider.lower(), name.lower(), row.get("region", "").lower())
        if key in seen:
            raise InvalidInput(
                f"Catalog {p}, row {line}: {provider}/{name} in region "
                f"{row.get('region') or '(none)'} appears twice. Expected one row per type.",
                field="instance_type",
            )
        seen.add(key)
        vcpus = _number(row, "vcpus", line, str(p), integer=True)
        memory = _number(row, "memory_gib", line, str(p))
        price = _number(row, "price_per_hour_usd", line, str(p))
        spot = _number(row, "spot_price_per_hour_usd", line, str(p), optional=True)
        gpus = _number(row, "gpu_count", line, str(p), integer=True, optional=True)
        gpu_mem = _number(row, "gpu_memory_gib", line, str(p), optional=True)
        arch = row.get("arch") or infer_arch(name)
        assert vcpus is not None and memory is not None and price is not None  # required above
        instances.append(
            InstanceType(
                provider=provider,
                name=name,
                region=row.get("region") or None,
                vcpus=int(vcpus),
                memory_gib=memory,
                price_per_hour=price,
                spot_price_per_hour=spot,
                gpu_model=row.get("gpu_model") or None,
                gpu_count=int(gpus or 0),
                gpu_memory_gib=gpu_mem,
                arch=arch,
                source=row.get("source") or None,
                source_date=row.get("source_date") or None,
            )
        )
    if not instances:
        raise InvalidInput(f"Catalog {p} has no usable rows.", field="catalog")
    return Catalog(path=str(p), instances=tuple(instances), flagged=tuple(flagged), bundled=bundled)
