"""Model serving: Open Inference Protocol (KServe V2) over HTTP, dynamic batching, replicas.

One asyncio front (an ASGI app on uvicorn, or the ingress of a Ray Serve application) runs every
request through a pipeline of stages (auth, decode, route, batch and dispatch, answer, record),
batches per model version, and hands whole batches to a backend: replica processes on this machine,
each with its own Engine and a fixed number of intra-op threads, or Ray Serve deployments on a
cluster. It also keeps the Prometheus metrics for all of them.

The exports load on first use (PEP 562): a replica process runs ``modelscale.serve.replica`` and
needs none of the front's modules (Starlette, uvicorn, pydantic, prometheus-client), which
importing them here took into every replica.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from modelscale.lazy import lazy_exports

if TYPE_CHECKING:
    from modelscale.serve.backend import (
        Backend,
        BackendHealth,
        BackendState,
        Batch,
        BatchOutcome,
        ReplicaSettings,
        ReplicaStats,
    )
    from modelscale.serve.background import ServerProcess, start_server
    from modelscale.serve.codec import DecodedRequest, decode_request, encode_response
    from modelscale.serve.contract import ModelContract
    from modelscale.serve.features import (
        DEFAULT_ROUTE_BODY,
        Events,
        Feature,
        FeatureFactory,
        Route,
    )
    from modelscale.serve.front import Front, build_front
    from modelscale.serve.metrics import Metrics
    from modelscale.serve.pipeline import (
        Endpoint,
        Exchange,
        Stage,
        StageContext,
        StageFactory,
    )
    from modelscale.serve.protocol import ApiError
    from modelscale.serve.records import Recorder, RequestRecord
    from modelscale.serve.registry import ModelRegistry
    from modelscale.serve.runner import ServeResult, bind_socket, run_server
    from modelscale.serve.stages import read_route_body

_EXPORTS = {
    "DEFAULT_ROUTE_BODY": "modelscale.serve.features",
    "ApiError": "modelscale.serve.protocol",
    "Events": "modelscale.serve.features",
    "Feature": "modelscale.serve.features",
    "FeatureFactory": "modelscale.serve.features",
    "Route": "modelscale.serve.features",
    "Backend": "modelscale.serve.backend",
    "BackendHealth": "modelscale.serve.backend",
    "BackendState": "modelscale.serve.backend",
    "Batch": "modelscale.serve.backend",
    "BatchOutcome": "modelscale.serve.backend",
    "ReplicaSettings": "modelscale.serve.backend",
    "ReplicaStats": "modelscale.serve.backend",
    "Front": "modelscale.serve.front",
    "build_front": "modelscale.serve.front",
    "Endpoint": "modelscale.serve.pipeline",
    "Exchange": "modelscale.serve.pipeline",
    "Recorder": "modelscale.serve.records",
    "RequestRecord": "modelscale.serve.records",
    "Stage": "modelscale.serve.pipeline",
    "StageContext": "modelscale.serve.pipeline",
    "StageFactory": "modelscale.serve.pipeline",
    "DecodedRequest": "modelscale.serve.codec",
    "decode_request": "modelscale.serve.codec",
    "encode_response": "modelscale.serve.codec",
    "ModelContract": "modelscale.serve.contract",
    "ServerProcess": "modelscale.serve.background",
    "start_server": "modelscale.serve.background",
    "Metrics": "modelscale.serve.metrics",
    "ModelRegistry": "modelscale.serve.registry",
    "ServeResult": "modelscale.serve.runner",
    "bind_socket": "modelscale.serve.runner",
    "run_server": "modelscale.serve.runner",
    "read_route_body": "modelscale.serve.stages",
}

__all__ = [
    "DEFAULT_ROUTE_BODY",
    "ApiError",
    "Backend",
    "BackendHealth",
    "BackendState",
    "Batch",
    "BatchOutcome",
    "DecodedRequest",
    "Endpoint",
    "Events",
    "Exchange",
    "Feature",
    "FeatureFactory",
    "Front",
    "Metrics",
    "ModelContract",
    "ModelRegistry",
    "Recorder",
    "ReplicaSettings",
    "ReplicaStats",
    "RequestRecord",
    "Route",
    "ServeResult",
    "ServerProcess",
    "Stage",
    "StageContext",
    "StageFactory",
    "bind_socket",
    "build_front",
    "decode_request",
    "encode_response",
    "read_route_body",
    "run_server",
    "start_server",
]


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
