"""What a modelscale server says it did during a load test: its batches, read from /metrics.

Scraped before and after the test; the difference is the test's own, its warm-up included (for a
server with other traffic, theirs too). Another server (no such series, no /metrics) gives nothing and
the load test goes on as it would: this is a reading beside the test, never a condition of it.
"""

from __future__ import annotations

import http.client
from typing import TYPE_CHECKING, Any

from modelscale.loadgen.payload import Target

if TYPE_CHECKING:
    from prometheus_client.samples import Sample

__all__ = ["batching_delta", "describe", "read_samples", "scrape_batching"]

_SUMS = {
    "modelscale_batch_size_count": "batches",
    "modelscale_batch_size_sum": "rows",
    "modelscale_batch_wait_seconds_count": "dispatches",
    "modelscale_batch_wait_seconds_sum": "wait_s",
    "modelscale_latency_prediction_ratio_count": "predicted",
}
_RATIO = "modelscale_latency_prediction_ratio_bucket"


def read_samples(
    host: str, port: int, *, model: str, api_key: str | None = None
) -> list[Sample] | None:
    """The samples of ``model`` in a server's /metrics (None: no /metrics to read)."""
    from prometheus_client.parser import text_string_to_metric_families

    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    conn = http.client.HTTPConnection(host, port, timeout=10)
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
    try:
        return [
            s
            for family in text_string_to_metric_families(text)
            for s in family.samples
            if s.labels.get("model") == model
        ]
    except ValueError:
        return None


def scrape_batching(target: Target, *, api_key: str | None = None) -> dict[str, float] | None:
    """The batch counters of ``target``'s model from its server's /metrics (None: none to read)."""
    samples = read_samples(target.host, target.port, model=target.model, api_key=api_key)
    if samples is None:
        return None
    out: dict[str, float] = {}
    for s in samples:
        if target.version is not None and s.labels.get("version") != target.version:
            continue
        key = _SUMS.get(s.name)
        if key is None and s.name == _RATIO:
            key = f"ratio_le_{s.labels.get('le')}"
        if key is not None:
            out[key] = out.get(key, 0.0) + float(s.value)
    return out if "batches" in out else None


def batching_delta(
    before: dict[str, float] | None, after: dict[str, float] | None
) -> dict[str, Any]:
    """Mean batch, wait per batch and prediction accuracy between two scrapes ({} if unknown)."""
    if before is None or after is None:
        return {}
    d = {k: v - before.get(k, 0.0) for k, v in after.items()}
    if d.get("batches", 0.0) <= 0:
        return {}
    out: dict[str, Any] = {"batches": int(d["batches"]), "mean_batch": d["rows"] / d["batches"]}
    if d.get("dispatches", 0.0) > 0:
        out["mean_wait_ms"] = 1000.0 * d["wait_s"] / d["dispatches"]
    n = d.get("predicted", 0.0)
    if n > 0 and "ratio_le_1.1" in d and "ratio_le_0.9" in d:
        out["within_10pct"] = (d["ratio_le_1.1"] - d["ratio_le_0.9"]) / n
        out["over_25pct"] = 1.0 - d.get("ratio_le_1.25", n) / n
    return out


def describe(server: dict[str, Any]) -> str:
    """One sentence for the load summary ('' when the server said nothing)."""
    if not server:
        return ""
    parts = [f"mean batch {server['mean_batch']:.1f}"]
    if "mean_wait_ms" in server:
        parts.append(f"{server['mean_wait_ms']:.2f} ms waited per batch")
    if "within_10pct" in server:
        parts.append(
            f"{server['within_10pct']:.0%} of requests within 10% of their predicted latency, "
            f"{server['over_25pct']:.0%} over 25% later"
        )
    return " Server: " + "; ".join(parts) + "."
