"""The observe feature of the server: request log, live series, SLO alerts, dashboard routes.

Declared under the entry-point group ``modelscale.serve.features`` (pyproject), so every server
(``modelscale serve``, the Ray ingress) builds it from its deploy.yaml:

- recorders: the ``LogWriter`` (Parquet, when ``log.enabled``) and the ``LiveRecorder`` (series
  for the dashboard, SLO burn rates, alerts);
- routes: ``GET /v2/logs`` and ``GET /v2/observe/live`` (JSON, behind the API key),
  ``GET /dashboard`` and its plotly bundle (public: the page carries no data of its own);
- metrics in ``/metrics``: ``modelscale_log_records_total{result}``,
  ``modelscale_log_dropped_total``, ``modelscale_slo_burn_rate{model, sli, window}``,
  ``modelscale_slo_alert_firing{model, sli, severity, pair}``,
  ``modelscale_alert_deliveries_total{sink, result}``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import importlib.resources
import itertools
import os
import pathlib
import urllib.parse
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, ClassVar

import orjson
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from modelscale.errors import InvalidInput
from modelscale.observe.alerts import AlertDispatcher
from modelscale.observe.live import LiveRecorder, VersionView
from modelscale.observe.query import parse_since, recent_records, rows_to_json, status_range
from modelscale.observe.slo import SloTracker
from modelscale.observe.storage import LogLocation
from modelscale.observe.writer import LogWriter
from modelscale.serve import ApiError, Endpoint, Feature, Route

if TYPE_CHECKING:
    from modelscale.serve import Exchange, StageContext

__all__ = ["build_feature"]

_JSON = (b"content-type", b"application/json")
_HTML = (b"content-type", b"text/html; charset=utf-8")
_JS = (b"content-type", b"text/javascript; charset=utf-8")
_NO_STORE = (b"cache-control", b"no-store")
MAX_WINDOW_S = 3_600
MAX_LOG_LIMIT = 10_000


def _query(ex: Exchange) -> dict[str, str]:
    raw = ex.scope.get("query_string", b"").decode("latin-1")
    out: dict[str, str] = {}
    for key, value in urllib.parse.parse_qsl(raw, keep_blank_values=True):
        out.setdefault(key, value)
    return out


def _int_param(params: dict[str, str], name: str, default: int, lo: int, hi: int) -> int:
    text = params.get(name)
    if text is None:
        return default
    try:
        value = int(text)
    except ValueError:
        raise ApiError(
            400, f"{name} must be a whole number from {lo} to {hi}; got {text!r}.", field=name
        ) from None
    if not lo <= value <= hi:
        raise ApiError(400, f"{name} must be from {lo} to {hi}; got {value}.", field=name)
    return value


@functools.cache
def _asset(name: str) -> bytes:
    if name == "plotly.min.js":
        import plotly

        return (
            pathlib.Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
        ).read_bytes()
    return (importlib.resources.files("modelscale.observe") / "dashboard" / name).read_bytes()


class _Collector(Collector):
    def __init__(
        self,
        writer: LogWriter | None,
        dropped: Any,
        live: LiveRecorder,
        dispatcher: AlertDispatcher,
    ) -> None:
        self.writer, self.dropped, self.live, self.dispatcher = writer, dropped, live, dispatcher

    def collect(self) -> Iterable[Metric]:
        out: list[Metric] = []
        if self.writer is not None:
            st = self.writer.stats()
            records = CounterMetricFamily(
                "modelscale_log_records",
                "Requests by what the request log did with them: written to a file, left out "
                "by log.sample, or dropped after writing kept failing",
                labels=["result"],
            )
            records.add_metric(["written"], st.written)
            records.add_metric(["sampled_out"], st.sampled_out)
            records.add_metric(["failed"], st.failed)
            out.append(records)
            out.append(
                CounterMetricFamily(
                    "modelscale_log_dropped",
                    "Requests never logged: the log's queue was full, or writing kept failing",
                    value=self.dropped() + st.failed,
                )
            )
            out.append(
                CounterMetricFamily(
                    "modelscale_log_write_errors",
                    "Failed attempts to write a log file (retried at the next flush)",
                    value=st.write_errors,
                )
            )
        tracker = self.live.tracker
        if tracker is not None:
            burn = GaugeMetricFamily(
                "modelscale_slo_burn_rate",
                "Error-budget burn rate per model, objective and window (1 = the budget lasts "
                "exactly the SLO period)",
                labels=["model", "sli", "window"],
            )
            firing = GaugeMetricFamily(
                "modelscale_slo_alert_firing",
                "1 while an SLO alert fires",
                labels=["model", "sli", "severity", "pair"],
            )
            for o in self.live.slo_view():
                for window, rate in o["burn_rates"].items():
                    burn.add_metric([o["model"], o["sli"], window], rate)
                for a in o["alerts"]:
                    firing.add_metric(
                        [o["model"], o["sli"], a["severity"], a["pair"]],
                        1.0 if a["state"] == "firing" else 0.0,
                    )
            out += [burn, firing]
        deliveries = CounterMetricFamily(
            "modelscale_alert_deliveries",
            "SLO alert deliveries by sink (log, store, webhook) and result (ok, retried, failed)",
            labels=["sink", "result"],
        )
        for (sink, result), n in sorted(self.dispatcher.deliveries.items()):
            deliveries.add_metric([sink, result], n)
        out.append(deliveries)
        return out


class RequestIdStage:
    """Give every inference request an id (unless it brought one), echoed as ``X-Request-Id``,
    so a client can find its request in the log."""

    name: ClassVar[str] = "request_id"
    endpoints: ClassVar[frozenset[Endpoint]] = frozenset({Endpoint.INFER})

    def __init__(self) -> None:
        self._prefix = os.urandom(6).hex() + "-"
        self._next = itertools.count(1).__next__

    async def __call__(self, ex: Exchange) -> None:
        """Set ``ex.request_id`` when the request has none (a body ``id`` still wins)."""
        if ex.request_id is None:
            ex.request_id = f"{self._prefix}{self._next()}"


class _RequestIds:
    place = ("before", "decode")

    def __call__(self, context: StageContext) -> RequestIdStage:
        return RequestIdStage()


class _Routes:
    def __init__(
        self, writer: LogWriter | None, live: LiveRecorder, dropped: Callable[[], int]
    ) -> None:
        self.writer = writer
        self.live = live
        self.dropped = dropped
        """Records the log's queue could not take."""

    async def live_view(self, ex: Exchange) -> None:
        params = _query(ex)
        window = _int_param(params, "window_s", 300, 1, MAX_WINDOW_S)
        view = self.live.view(window)
        w = self.writer
        view["log"] = (
            None
            if w is None
            else {
                "written": w.written,
                "dropped": self.dropped() + w.failed,
                "failed": w.write_errors,
                "path": w.location.display,
            }
        )
        ex.answer(200, orjson.dumps(view), [_JSON, _NO_STORE])

    async def logs(self, ex: Exchange) -> None:
        if self.writer is None:
            raise ApiError(404, "the request log is off (log.enabled: false in deploy.yaml)")
        params = _query(ex)
        unknown = sorted(set(params) - {"since", "model", "status", "limit"})
        if unknown:
            raise ApiError(
                400,
                f"unknown parameter {unknown[0]!r}; expected since, model, status, limit.",
                field=unknown[0],
            )
        limit = _int_param(params, "limit", 100, 1, MAX_LOG_LIMIT)
        try:
            since = parse_since(params.get("since"))
            status = params.get("status") or None
            if status is not None:
                status_range(status)
        except InvalidInput as exc:
            raise ApiError(400, str(exc), field=exc.field) from None
        model = params.get("model") or None
        # Both lookups (Arrow rows to dicts, listing and reading files) stay off the event loop.
        rows = await asyncio.to_thread(self._lookup, since, model, status, limit)
        ex.answer(200, orjson.dumps({"records": rows, "count": len(rows)}), [_JSON, _NO_STORE])

    def _lookup(
        self, since: dt.datetime | None, model: str | None, status: str | None, limit: int
    ) -> list[dict[str, Any]]:
        """From the rows written last when they hold the answer, else from the files."""
        assert self.writer is not None
        rows = self._from_memory(since, model, status, limit)
        if rows is not None:
            return rows
        return recent_records(
            self.writer.location, after=since, model=model, status=status, limit=limit
        )

    def _from_memory(
        self, since: dt.datetime | None, model: str | None, status: str | None, limit: int
    ) -> list[dict[str, Any]] | None:
        """The answer from the rows written last, or None when they may not hold it all (then
        the files are read)."""
        assert self.writer is not None
        recent = self.writer.recent()
        if not recent:
            return None  # nothing written by this server yet: the files may hold older runs
        lo, hi = status_range(status) if status else (0, 999)
        keep = [
            r
            for r in recent
            if (model is None or r["model"] == model)
            and lo <= r["status"] <= hi
            and (since is None or r["time"] > since)
        ]
        if since is not None:
            return rows_to_json(keep[:limit]) if recent[0]["time"] <= since else None
        return rows_to_json(keep[-limit:]) if len(keep) >= limit else None

    async def page(self, ex: Exchange) -> None:
        ex.answer(200, _asset("index.html"), [_HTML, _NO_STORE])

    async def plotly(self, ex: Exchange) -> None:
        ex.answer(200, _asset("plotly.min.js"), [_JS, (b"cache-control", b"max-age=86400")])


def _queued(rt: Any) -> int:
    return int(rt.batcher.queued)


def build_feature(context: StageContext) -> Feature:
    """The observe feature for one server."""
    spec = context.spec
    writer = None
    if spec.log.enabled:
        location = LogLocation.of(spec.log.where)
        location.check_writable()
        writer = LogWriter(
            location,
            sample=spec.log.sample,
            flush_s=spec.log.flush_s,
            capacity=spec.log.queue,
            payloads=spec.log.payloads,
        )
    views = []
    for rt in context.registry.runtimes():

        def replicas(rt: Any = rt) -> dict[str, Any]:
            h = rt.backend.health()
            return {
                "ready": h.ready,
                "desired": h.desired,
                "restarts": h.restarts,
                "state": h.state.value,
            }

        views.append(
            VersionView(
                rt.name,
                rt.version,
                queue_depth=functools.partial(_queued, rt),
                replicas=replicas,
            )
        )
    shas: dict[str, str] = {}
    for rt in context.registry.runtimes():
        shas.setdefault(rt.name, rt.artifact.sha256)
    tracker = SloTracker({name: m.slo for name, m in spec.models.items()})
    dispatcher = AlertDispatcher(
        webhooks=spec.alerts.webhooks,
        retries=spec.alerts.retries,
        timeout_s=spec.alerts.timeout_s,
        store_url=spec.store.url,
        model_versions=shas.get,
    )
    live = LiveRecorder(views, tracker=tracker if tracker else None, dispatcher=dispatcher)
    dropped = functools.partial(context.metrics.dropped, "log")
    context.metrics.registry.register(_Collector(writer, dropped, live, dispatcher))
    routes = _Routes(writer, live, dropped)
    return Feature(
        name="observe",
        stages=[_RequestIds()] if writer is not None else [],
        recorders=[r for r in (writer, live) if r is not None],
        routes={
            "/v2/logs": Route(routes.logs, scope="logs:read"),
            "/v2/observe/live": Route(routes.live_view, scope="logs:read"),
            "/dashboard": Route(routes.page, public=True),
            "/dashboard/": Route(routes.page, public=True),
            "/dashboard/plotly.min.js": Route(routes.plotly, public=True),
        },
    )
