"""What a validation measures beside the load test: CPU per request and the server's batch counters.

``CpuMeter`` reads the CPU time of this process (the load generator) and of a server's process
tree (its front and replica processes) before and after a test; ``batch_totals`` scrapes a
modelscale server's ``/metrics`` for its batch counters, and ``batch_deltas`` turns two scrapes
into the hand-over per batch, the mean batch and the inference time per batch.
"""

from __future__ import annotations

import http.client
import ipaddress
import pathlib
import socket
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from urllib.parse import urlsplit

import numpy as np

from modelscale.model import InputChoice, ModelArtifact, batch_dim_names, make_inputs

__all__ = ["CpuMeter", "batch_deltas", "batch_totals", "inputs_file", "is_local_url"]

_BATCH_SERIES = {
    "modelscale_batch_size_count": "batches",
    "modelscale_batch_size_sum": "rows",
    "modelscale_inference_duration_seconds_sum": "infer_s",
    "modelscale_batch_roundtrip_seconds_sum": "roundtrip_s",
}


def batch_totals(url: str, model: str, api_key: str | None = None) -> dict[str, float] | None:
    """Batch counters of ``model`` from the server's /metrics (None if it has none to give)."""
    from prometheus_client.parser import text_string_to_metric_families

    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port or 80, timeout=10)
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    try:
        conn.request("GET", "/metrics", headers=headers)
        resp = conn.getresponse()
        text = resp.read().decode("utf-8", "replace")
    except OSError:
        return None
    finally:
        conn.close()
    if resp.status != 200:
        return None
    totals = dict.fromkeys(_BATCH_SERIES.values(), 0.0)
    try:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                key = _BATCH_SERIES.get(sample.name)
                if key is not None and sample.labels.get("model") == model:
                    totals[key] += float(sample.value)
    except ValueError:
        return None
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
