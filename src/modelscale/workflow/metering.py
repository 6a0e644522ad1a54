"""What a validation measures beside the load test: CPU per request, other processes' CPU, and
the server's batch counters.

``CpuMeter`` reads the CPU time of this process (the load generator) and of a server's process
tree (its front and replica processes) before and after a test; ``OtherCpuMeter`` measures, for
each probe window, the CPU that every other process on the machine took meanwhile (Linux's
``/proc/stat`` less the two), so a measurement that shared its cores can be called disturbed;
``batch_totals`` scrapes a modelscale server's ``/metrics`` for its batch counters, and
``batch_deltas`` turns two scrapes into the hand-over per batch, the mean batch and the inference
time per batch.
"""

from __future__ import annotations

import ipaddress
import os
import pathlib
import socket
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from urllib.parse import urlsplit

import numpy as np

from modelscale.loadgen import WindowEdge, read_samples
from modelscale.model import InputChoice, ModelArtifact, batch_dim_names, make_inputs
from modelscale.progress import ProgressEvent

__all__ = [
    "CpuMeter",
    "OtherCpu",
    "OtherCpuMeter",
    "batch_deltas",
    "batch_totals",
    "inputs_file",
    "is_local_url",
    "machine_busy_s",
]

_BATCH_SERIES = {
    "modelscale_batch_size_count": "batches",
    "modelscale_batch_size_sum": "rows",
    "modelscale_inference_duration_seconds_sum": "infer_s",
    "modelscale_batch_roundtrip_seconds_sum": "roundtrip_s",
}


def batch_totals(url: str, model: str, api_key: str | None = None) -> dict[str, float] | None:
    """Batch counters of ``model`` from the server's /metrics (None if it has none to give)."""
    parts = urlsplit(url)
    samples = read_samples(parts.hostname or "", parts.port or 80, model=model, api_key=api_key)
    if samples is None:
        return None
    totals = dict.fromkeys(_BATCH_SERIES.values(), 0.0)
    for sample in samples:
        key = _BATCH_SERIES.get(sample.name)
        if key is not None:
            totals[key] += float(sample.value)
    return totals


def batch_deltas(
    before: Mapping[str, float] | None, after: Mapping[str, float] | None
) -> dict[str, float]:
    """Hand-over per batch (ms), mean batch and inference per batch (ms) between two scrapes.

    Empty when either scrape failed or no batch ran in between.
    """
    if before is None or after is None:
        return {}
    d = {k: after[k] - before[k] for k in after}
    if d["batches"] <= 0 or d["roundtrip_s"] <= 0:
        return {}
    return {
        "handover_ms": max(0.0, 1000.0 * (d["roundtrip_s"] - d["infer_s"]) / d["batches"]),
        "mean_batch": d["rows"] / d["batches"],
        "infer_ms": 1000.0 * d["infer_s"] / d["batches"],
    }


def is_local_url(url: str) -> bool:
    """Whether ``url`` names this machine (a loopback address or this host's own name)."""
    host = urlsplit(url).hostname or ""
    if host in ("localhost", socket.gethostname()):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@contextmanager
def inputs_file(artifact: ModelArtifact, dims: Mapping[str, int], rows: int) -> Iterator[str]:
    """A temporary .npz of ``rows`` synthetic request rows for ``artifact`` at ``dims``."""
    sig = artifact.signature
    batch = rows if batch_dim_names(sig) else None  # a fixed batch axis keeps its size
    feeds = make_inputs(sig, batch=batch, choice=InputChoice(dims=dict(dims)))
    with tempfile.TemporaryDirectory(prefix="modelscale-validate-") as tmp:
        path = pathlib.Path(tmp) / "inputs.npz"
        np.savez(path, allow_pickle=False, **feeds)
        yield str(path)


class CpuMeter:
    """CPU seconds spent by this process (the load generator) and a server's process tree.

    Args:
        server_pid: The server's process id (None: measure this process only).
    """

    def __init__(self, server_pid: int | None) -> None:
        import psutil

        self._psutil = psutil
        self.me = psutil.Process()
        self.server = psutil.Process(server_pid) if server_pid is not None else None
        self.start = self._sample()

    def _sample(self) -> dict[str, float]:
        t = self.me.cpu_times()
        out = {"client": t.user + t.system}
        if self.server is not None:
            try:
                t = self.server.cpu_times()
                out["front"] = t.user + t.system
                kids = self.server.children(recursive=True)
                out["replicas"] = sum(
                    sum(c.cpu_times()[:2]) for c in kids if c.is_running()
                )  # user + system
            except self._psutil.Error:
                pass
        return out

    def per_request_ms(self, requests: int) -> dict[str, float]:
        """CPU ms per request since the meter started, by part ('client', 'front', 'replicas')."""
        end = self._sample()
        return {
            k: 1000.0 * (end[k] - self.start[k]) / max(requests, 1)
            for k in end
            if k in self.start and end[k] >= self.start[k]
        }


_PROC_STAT = pathlib.Path("/proc/stat")


def machine_busy_s(stat: pathlib.Path = _PROC_STAT) -> float | None:
    """CPU seconds all processes on this machine have spent since boot (None: not Linux).

    User, nice, system and steal time (a hypervisor giving our CPUs to another machine disturbs
    a measurement as much as a neighbour process does). Interrupt time is left out: the kernel
    books the network interrupts of the test's own traffic there, not to its processes.
    """
    try:
        with stat.open() as f:
            fields = f.readline().split()
    except OSError:
        return None
    if not fields or fields[0] != "cpu":
        return None
    ticks = [int(x) for x in fields[1:]] + [0] * 8
    user, nice, system, steal = ticks[0], ticks[1], ticks[2], ticks[7]
    return (user + nice + system + steal) / os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class OtherCpu:
    """The CPU other processes took during one probe window.

    Attributes:
        window: The window's number, from 1, in the order they ran.
        label: What ran in it ('probe 3: 1,200 req/s').
        seconds: How long it lasted.
        cores: Other processes' CPU seconds per second of it: the cores they kept busy.
    """

    window: int
    label: str
    seconds: float
    cores: float


class OtherCpuMeter:
    """The CPU that processes other than the load generator and the server took, per window.

    Pass it (or a callback that calls it) as the load test's ``on_progress``: it samples at each
    window's start and end (``WindowEdge`` events). Measures nothing where ``/proc/stat`` is
    missing (``available`` is False).

    Args:
        server_pid: The server's process id; its whole process tree is the server.
    """

    def __init__(self, server_pid: int) -> None:
        import psutil

        self._psutil = psutil
        self.me = psutil.Process()
        self.server = psutil.Process(server_pid)
        self.available = machine_busy_s() is not None
        self.windows: list[OtherCpu] = []
        self._open: dict[int, tuple[float, float, float]] = {}

    def _ours_s(self) -> float:
        t = self.me.cpu_times()
        total = t.user + t.system
        try:
            for p in (self.server, *self.server.children(recursive=True)):
                try:
                    c = p.cpu_times()
                except self._psutil.Error:
                    continue  # a replica that exited meanwhile
                total += c.user + c.system
        except self._psutil.Error:
            pass
        return total

    def _sample(self) -> tuple[float, float, float] | None:
        busy = machine_busy_s()
        if busy is None:
            return None
        return time.monotonic(), busy, self._ours_s()

    def __call__(self, event: ProgressEvent) -> None:
        edge = event.detail
        if not isinstance(edge, WindowEdge) or not self.available:
            return
        sample = self._sample()
        if sample is None:
            return
        if edge.start:
            self._open[edge.index] = sample
            return
        start = self._open.pop(edge.index, None)
        if start is None:
            return
        wall = sample[0] - start[0]
        other = (sample[1] - start[1]) - (sample[2] - start[2])
        if wall > 0:
            self.windows.append(OtherCpu(edge.index, edge.label, wall, max(0.0, other) / wall))
