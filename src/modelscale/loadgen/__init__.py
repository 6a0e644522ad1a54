"""Open-loop load generation against V2 model servers, with coordinated-omission-free latencies.

``run_load`` is the load test; ``Shooter`` and ``build_request`` are its client, for measuring
other servers the same way; ``parse_url`` and ``fetch_metadata`` read a server's V2 model metadata,
and ``request_shapes`` settles the shapes of synthetic requests (``RequestShapes``).
``TrivialServer`` is a trivial V2 endpoint for calibrating the load generator.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from modelscale.loadgen.api import LoadOptions, LoadResult, WindowEdge, run_load
from modelscale.loadgen.client import Outcome, Shooter, build_request
from modelscale.loadgen.findmax import Probe, find_max_rate
from modelscale.loadgen.payload import Target, fetch_metadata, parse_url
from modelscale.loadgen.schedule import Pattern, parse_pattern, schedule
from modelscale.loadgen.server_side import read_samples
from modelscale.loadgen.shapes import RequestShapes, request_shapes
from modelscale.loadgen.stats import LoadStats, summarize

if TYPE_CHECKING:
    from modelscale.loadgen.trivial import TrivialServer

__all__ = [
    "LoadOptions",
    "LoadResult",
    "LoadStats",
    "Outcome",
    "Pattern",
    "Probe",
    "RequestShapes",
    "Shooter",
    "Target",
    "TrivialServer",
    "WindowEdge",
    "build_request",
    "fetch_metadata",
    "find_max_rate",
    "parse_pattern",
    "parse_url",
    "read_samples",
    "request_shapes",
    "run_load",
    "schedule",
    "summarize",
]


def __getattr__(name: str) -> Any:
    # Loaded on first use: ``python -m modelscale.loadgen.trivial`` must not find its own module
    # already imported by this package (runpy warns about that).
    if name == "TrivialServer":
        from modelscale.loadgen.trivial import TrivialServer

        return TrivialServer
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
