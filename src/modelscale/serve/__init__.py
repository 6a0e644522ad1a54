"""Model serving: Open Inference Protocol (KServe V2) over HTTP, dynamic batching, replica processes.

One asyncio front process (Starlette on uvicorn) parses and validates requests, batches them per
model version and routes batches to replica processes, each with its own Engine and a fixed number of
intra-op threads; it also keeps the Prometheus metrics for all of them.
"""

from __future__ import annotations

from modelscale.serve.app import AppState, create_app
from modelscale.serve.background import ServerProcess, start_server
from modelscale.serve.metrics import Metrics
from modelscale.serve.registry import ModelRegistry
from modelscale.serve.runner import ServeResult, bind_socket, run_server

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
