"""Model serving: Open Inference Protocol (KServe V2) over HTTP, dynamic batching, replica processes.

One asyncio front process (Starlette on uvicorn) parses and validates requests, batches them per
model version and routes batches to replica processes, each with its own Engine and a fixed number of
intra-op threads; it also keeps the Prometheus metrics for all of them.

The exports load on first use (PEP 562): a replica process runs ``modelscale.serve.replica`` and
needs none of the front's modules (Starlette, uvicorn, pydantic, prometheus-client), which
importing them here took into every replica.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from modelscale.serve.app import AppState, create_app
    from modelscale.serve.background import ServerProcess, start_server
    from modelscale.serve.metrics import Metrics
    from modelscale.serve.registry import ModelRegistry
    from modelscale.serve.runner import ServeResult, bind_socket, run_server

_EXPORTS = {
    "AppState": "modelscale.serve.app",
    "create_app": "modelscale.serve.app",
    "ServerProcess": "modelscale.serve.background",
    "start_server": "modelscale.serve.background",
    "Metrics": "modelscale.serve.metrics",
    "ModelRegistry": "modelscale.serve.registry",
    "ServeResult": "modelscale.serve.runner",
    "bind_socket": "modelscale.serve.runner",
    "run_server": "modelscale.serve.runner",
}

__all__ = [
    "AppState",
    "Metrics",
    "ModelRegistry",
    "ServeResult",
    "ServerProcess",
    "bind_socket",
    "create_app",
    "run_server",
    "start_server",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})
