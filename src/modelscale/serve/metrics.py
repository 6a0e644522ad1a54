"""Prometheus metrics of the server, kept in the front and so aggregated over replicas.

Replicas report each batch's inference time with its outcome, so the front sees every request, batch
and queue whatever the backend; no multi-process file directory is needed (the pitfall of
prometheus_client's multiprocess mode: one worker per scrape, or files left behind). Requests are
counted by a recorder of the pipeline, off the request path; gauges such as queue depth, replicas
ready and records dropped are read at scrape time by a collector.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from modelscale.config import DEFAULT_LATENCY_BUCKETS_MS
from modelscale.serve.backend import BackendHealth

if TYPE_CHECKING:
    from modelscale.serve.records import RecordQueue, RequestRecord

__all__ = ["BATCH_BUCKETS", "CONTENT_TYPE", "GaugeSource", "Metrics", "MetricsRecorder"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096)
SERVER_ERRORS = ("500", "503", "504")
"""The 5xx statuses the server answers (internal error, unavailable or full, timed out)."""
_INFER_BUCKETS_S = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


@dataclass(frozen=True)
class GaugeSource:
    """Live values of one model version, read at scrape time."""

    model: str
    version: str
    queue_depth: Callable[[], int]
    health: Callable[[], BackendHealth]
    batch_limit: Callable[[], int] | None = None
    """With a p99 objective: the largest batch the objective allows now."""
    service: Callable[[], tuple[float, float, float]] | None = None
    """With a p99 objective: the learned batch time (seconds per batch, per row, tail factor)."""


class _Live(Collector):
    def __init__(self) -> None:
        self.sources: list[GaugeSource] = []
        self.queues: list[RecordQueue] = []

    def collect(self) -> Iterable[Metric]:
        labels = ["model", "version"]
        depth = GaugeMetricFamily(
            "modelscale_queue_depth", "Requests waiting to join a batch", labels=labels
        )
        ready = GaugeMetricFamily(
            "modelscale_replicas_ready", "Replica processes loaded and serving", labels=labels
        )
        desired = GaugeMetricFamily(
            "modelscale_replicas_desired", "Replica processes configured", labels=labels
        )
        restarts = GaugeMetricFamily(
            "modelscale_replica_restarts", "Replica processes restarted after dying", labels=labels
        )
        dropped = CounterMetricFamily(
            "modelscale_records_dropped",
            "Finished requests a recorder's full queue could not take (never recorded)",
            labels=["recorder"],
        )
        limit = GaugeMetricFamily(
            "modelscale_batch_limit",
            "The largest batch the p99 objective allows now (versions with an objective)",
            labels=labels,
        )
        service = GaugeMetricFamily(
            "modelscale_batch_service_seconds",
            "With a p99 objective: the batch time the server has learned, a + b x rows at the "
            "mean, times tail at the 95th percentile (part: fixed = a, per_row = b, tail)",
            labels=[*labels, "part"],
        )
        for s in self.sources:
            values = [s.model, s.version]
            health = s.health()
            depth.add_metric(values, s.queue_depth())
            if s.batch_limit is not None:
                limit.add_metric(values, s.batch_limit())
            if s.service is not None:
                for part, v in zip(("fixed", "per_row", "tail"), s.service(), strict=True):
                    service.add_metric([*values, part], v)
            ready.add_metric(values, health.ready)
            desired.add_metric(values, health.desired)
            restarts.add_metric(values, health.restarts)
        for q in self.queues:
            dropped.add_metric([q.name], q.dropped)
        return [depth, ready, desired, restarts, dropped, limit, service]


class Metrics:
    """The server's registry and the instruments the front updates."""

    def __init__(self, *, latency_buckets_ms: Sequence[float] = DEFAULT_LATENCY_BUCKETS_MS) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        labels = ["model", "version"]
        self.requests = Counter(
            "modelscale_requests",
            "Inference requests by model, version and HTTP status",
            [*labels, "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "modelscale_request_duration_seconds",
            "Inference request latency in the server, arrival to reply",
            labels,
            buckets=[b / 1000 for b in latency_buckets_ms],
            registry=self.registry,
        )
        self.queue_time = Histogram(
            "modelscale_queue_duration_seconds",
            "Time a request waited before its batch was sent to a replica",
            labels,
            buckets=[b / 1000 for b in latency_buckets_ms],
            registry=self.registry,
        )
        self.batch_size = Histogram(
            "modelscale_batch_size",
            "Rows per batch run by a replica",
            labels,
            buckets=BATCH_BUCKETS,
            registry=self.registry,
        )
        self.inference_time = Histogram(
            "modelscale_inference_duration_seconds",
            "Time a replica spent running one batch",
            labels,
            buckets=_INFER_BUCKETS_S,
            registry=self.registry,
        )
        self.roundtrip_time = Histogram(
            "modelscale_batch_roundtrip_seconds",
            "Time from sending a batch to a replica to reading its reply in the front: inference "
            "plus the hand-over (IPC, process wake-ups), during which the replica takes no other "
            "batch",
            labels,
            buckets=_INFER_BUCKETS_S,
            registry=self.registry,
        )
        self.batch_wait = Histogram(
            "modelscale_batch_wait_seconds",
            "With a p99 objective: how long each batch waited for more rows while a replica was "
            "free (0: sent at once)",
            labels,
            buckets=(0.0, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25),
            registry=self.registry,
        )
        self.prediction = Histogram(
            "modelscale_latency_prediction_ratio",
            "With a p99 objective: each request's observed latency in the batcher (arrival to "
            "outcome) over the latency predicted when its batch was sent",
            labels,
            buckets=(0.5, 0.8, 0.9, 0.95, 1.0, 1.05, 1.1, 1.25, 1.5, 2.0, 3.0),
            registry=self.registry,
        )
        self.predicted = Histogram(
            "modelscale_predicted_latency_seconds",
            "With a p99 objective: each request's latency in the batcher as predicted when its "
            "batch was sent",
            labels,
            buckets=[b / 1000 for b in latency_buckets_ms],
            registry=self.registry,
        )
        self.refused = Counter(
            "modelscale_http_refused",
            "Connections and requests the server refused before the app saw them, by reason: "
            "head_too_large (431), head_timeout and body_timeout (408), idle, decode_budget (503)",
            ["reason"],
            registry=self.registry,
        )
        self._live = _Live()
        self.registry.register(self._live)
        self._children: dict[tuple[str, str, int], tuple[Any, Any, Any]] = {}

    def add_source(self, source: GaugeSource) -> None:
        """Report queue depth and replica counts of a model version.

        Its 5xx request counters are created now, at 0: a counter series that first appears
        with a value is one whose first increase Prometheus' ``rate()`` cannot see, so an
        outage's first errors would reach the SLO rules a scrape late."""
        self._live.sources.append(source)
        for status in SERVER_ERRORS:
            self.requests.labels(source.model, source.version, status)

    def watch_records(self, queues: Sequence[RecordQueue]) -> None:
        """Export how many records the recorders' queues dropped."""
        self._live.queues.extend(queues)

    def dropped(self, recorder: str) -> int:
        """Records the named recorder's queue dropped (0 for a recorder it does not have)."""
        return sum(q.dropped for q in self._live.queues if q.name == recorder)

    def batch_observer(self, model: str, version: str) -> Callable[[int, float, float], None]:
        """A callback recording one batch's size, inference and round-trip time (its labels bound)."""
        size = self.batch_size.labels(model, version)
        infer = self.inference_time.labels(model, version)
        roundtrip = self.roundtrip_time.labels(model, version)

        def observe(rows: int, infer_s: float, roundtrip_s: float) -> None:
            size.observe(rows)
            infer.observe(infer_s)
            roundtrip.observe(roundtrip_s)

        return observe

    def dispatch_observer(self, model: str, version: str) -> Callable[[int, float], None]:
        """A callback recording how long each batch the SLO policy sent waited for more rows."""
        wait = self.batch_wait.labels(model, version)

        def observe(rows: int, waited_s: float) -> None:
            wait.observe(waited_s)

        return observe

    def prediction_observer(self, model: str, version: str) -> Callable[[float, float], None]:
        """A callback recording a request's predicted and observed latency in the batcher."""
        ratio = self.prediction.labels(model, version)
        predicted = self.predicted.labels(model, version)

        def observe(predicted_s: float, observed_s: float) -> None:
            predicted.observe(predicted_s)
            if predicted_s > 0:
                ratio.observe(observed_s / predicted_s)

        return observe

    def observe_request(
        self, model: str, version: str, status: int, latency_s: float, queue_s: float | None
    ) -> None:
        """Record one finished request (latency of 4xx answers is not the model's, so not kept)."""
        key = (model, version, status)
        children = self._children.get(key)
        if children is None:  # labels() costs a lock and a dict walk per call; cache the children
            children = (
                self.requests.labels(model, version, str(status)),
                self.latency.labels(model, version),
                self.queue_time.labels(model, version),
            )
            self._children[key] = children
        children[0].inc()
        if status < 400 or status >= 500:
            children[1].observe(latency_s)
        if queue_s is not None:
            children[2].observe(queue_s)

    def count_refused(self, reason: str) -> None:
        """Count one refused connection or request."""
        self.refused.labels(reason).inc()

    def render(self) -> bytes:
        """The Prometheus text exposition."""
        return generate_latest(self.registry)


class MetricsRecorder:
    """The pipeline's recorder that counts requests and observes their latency."""

    name = "metrics"
    threaded = False

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def record(self, records: Sequence[RequestRecord]) -> None:
        """Count each finished request."""
        observe = self.metrics.observe_request
        for r in records:
            observe(r.model, r.version, r.status, r.latency_s, r.queue_s)
