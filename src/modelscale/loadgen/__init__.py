"""Open-loop load generation against V2 model servers, with coordinated-omission-free latencies.

``modelscale.loadgen.trivial`` has a trivial V2 endpoint for calibrating the load generator.
"""

from __future__ import annotations

from modelscale.loadgen.api import LoadOptions, LoadResult, Progress, run_load
from modelscale.loadgen.findmax import Probe, find_max_rate
from modelscale.loadgen.schedule import Pattern, parse_pattern, schedule
from modelscale.loadgen.stats import LoadStats, summarize

__all__ = [
    "LoadOptions",
    "LoadResult",
    "LoadStats",
    "Pattern",
    "Probe",
    "Progress",
    "find_max_rate",
    "parse_pattern",
    "run_load",
    "schedule",
    "summarize",
]
