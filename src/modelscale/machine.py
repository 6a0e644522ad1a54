"""What machine a measurement was taken on: numbers that depend on the machine carry it."""

from __future__ import annotations

import functools
import os
import platform
import sys
from dataclasses import dataclass
from typing import Any

import psutil

from modelscale.result import jsonable

__all__ = ["MachineInfo", "machine_info"]

# ISA flags that change what ONNX Runtime can do fast (INT8 needs VNNI to be quick and exact).
_INTERESTING_FLAGS = (
    "avx",
    "avx2",
    "fma",
    "f16c",
    "avx512f",
    "avx512bw",
    "avx512vl",
    "avx512_vnni",
    "avx512_bf16",
    "avx512_fp16",
    "avx_vnni",
    "amx_tile",
    "amx_int8",
    "amx_bf16",
    "asimd",
    "sve",
    "i8mm",
    "bf16",
)


@dataclass(frozen=True)
class MachineInfo:
    """The facts about a machine that a measured number depends on."""

    cpu_model: str
    isa_flags: tuple[str, ...]
    physical_cores: int | None
    logical_cores: int
    usable_cores: int
    memory_bytes: int
    os: str
    python: str
    libraries: dict[str, str]

    @property
    def has_vnni(self) -> bool:
        """Whether the CPU has VNNI (fast, exact u8s8/s8s8 INT8 dot products)."""
        return any(f in self.isa_flags for f in ("avx512_vnni", "avx_vnni", "amx_int8"))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, as stored with every run."""
        out = jsonable(self)
        out["has_vnni"] = self.has_vnni
        return out


def _cpuinfo() -> tuple[str, tuple[str, ...]]:
    model, flags = platform.processor() or platform.machine(), set()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip().lower()
                if key in ("model name", "cpu model") and model in ("", platform.machine()):
                    model = value.strip()
                elif key in ("flags", "features"):
                    flags.update(value.split())
    except OSError:
        pass
    return model, tuple(f for f in _INTERESTING_FLAGS if f in flags)


def _versions() -> dict[str, str]:
    from importlib import metadata

    out = {}
    for name in ("onnxruntime", "onnx", "numpy", "torch", "transformers", "modelscale"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


@functools.cache
def machine_info() -> MachineInfo:
    """Describe this machine (read once per process)."""
    model, flags = _cpuinfo()
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        usable = os.cpu_count() or 1
    return MachineInfo(
        cpu_model=model,
        isa_flags=flags,
        physical_cores=psutil.cpu_count(logical=False),
        logical_cores=psutil.cpu_count(logical=True) or 1,
        usable_cores=usable,
        memory_bytes=psutil.virtual_memory().total,
        os=f"{platform.system()} {platform.release()}",
        python=sys.version.split()[0],
        libraries=_versions(),
    )
