"""modelscale: take a trained model from one machine to production scale, measuring every step.

The public API is re-exported here; see ``__all__``.
"""

from __future__ import annotations

from modelscale.errors import (
    InvalidInput,
    MissingDependency,
    ModelLoadError,
    ModelscaleError,
    ModelscaleWarning,
    RuntimeFailure,
    ServerError,
    StoreError,
)
from modelscale.machine import MachineInfo, machine_info
from modelscale.result import Result
from modelscale.store import ModelVersion, Run, Store, open_store

__version__ = "0.1.0"

__all__ = [
    "InvalidInput",
    "MachineInfo",
    "MissingDependency",
    "ModelLoadError",
    "ModelVersion",
    "ModelscaleError",
    "ModelscaleWarning",
    "Result",
    "Run",
    "RuntimeFailure",
    "ServerError",
    "Store",
    "StoreError",
    "__version__",
    "machine_info",
    "open_store",
]
