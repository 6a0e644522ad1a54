"""The monitor feature of the server: drift windows, feedback, accuracy, alerts.

Declared under the entry-point group ``modelscale.serve.features`` (pyproject). For every served
model with ``monitor.enabled`` (the default) it finds the newest baseline of the served version
in the knowledge base (or the one ``monitor.baseline`` names) and adds:

- a recorder (in the event loop, constant work per request) that remembers what each request
  predicted, for feedback to join;
- a recorder (in its own thread, on a one-second clock) that folds answered requests into the
  open window's sketches and closes windows: tests, a run of kind ``drift`` in the knowledge
  base, the window's sketches as a file under ``<log dir>/monitor/`` (``monitor run`` merges the
  files of several servers), alerts (kind ``drift``) through the alert path of the SLOs;
- ``POST /v2/models/{name}/feedback`` and ``GET /v2/monitor`` (behind the API key);
- metrics: ``modelscale_drift_features{model, version}`` (features drifting in the last window),
  ``modelscale_monitor_windows_total{model, verdict}``, ``modelscale_feedback_total{model,
  result}``, ``modelscale_model_accuracy{model, version, source}``.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import functools
import logging
import os
import socket
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy.exc import SQLAlchemyError
from threadpoolctl import ThreadpoolController

from modelscale.config import MonitorSpec
from modelscale.errors import InvalidInput, ModelscaleError
from modelscale.monitor.baseline import Baseline
from modelscale.monitor.domain import DomainTester
from modelscale.monitor.drift import DriftOptions
from modelscale.monitor.feedback import Labels, PendingPredictions, parse_feedback
from modelscale.monitor.summary import predictions_of
from modelscale.monitor.windows import ModelWatch, WindowResult
from modelscale.observe import AlertDispatcher, LogLocation
from modelscale.serve import ApiError, Events, Feature, Route

if TYPE_CHECKING:
    from modelscale.serve import Exchange, RequestRecord, StageContext
    from modelscale.store import Store

__all__ = ["build_feature", "find_baseline"]

log = logging.getLogger("modelscale.monitor")
_JSON = (b"content-type", b"application/json")
_NO_STORE = (b"cache-control", b"no-store")
_CHUNK = 256


def find_baseline(
    store: Store, *, sha256: str, model: str, ref: str | None = None
) -> Baseline | None:
    """The baseline ``ref`` names (a run id or a name), else the newest of the version, else the
    newest of the model's name."""
    runs = store.runs(kind="baseline")
    if ref is not None:
        for r in runs:
            if str(r.id) == ref or r.results.get("name") == ref:
                return Baseline.from_run(r)
        raise InvalidInput(
            f"monitor.baseline of {model}: no baseline run named or numbered {ref!r} in the "
            "knowledge base. Make one with `modelscale monitor baseline MODEL --data ref.npz "
            f"--name {ref}`",
            field="monitor.baseline",
        )
    for r in runs:
        if r.model_version == sha256:
            return Baseline.from_run(r)
    for r in runs:
        if r.model_name == model or r.results.get("model", {}).get("name") == model:
            return Baseline.from_run(r)
    return None


def _feedback_target(rt: Any, base: Baseline | None) -> tuple[str | None, str]:
    """(the output feedback scores, 'classification' | 'regression'); the output is None when
    no output is a class or a value per row (an encoder's embeddings)."""
    if base is not None and base.task in ("classification", "regression"):
        plan = base.feature_plan()
        scores = plan.scores_output()
        if scores is not None:
            return scores, "classification"
        for p in plan.tensors:
            if p.role == "output" and p.mode == "scalar":
                return p.tensor, base.task
    for o in rt.artifact.signature.outputs:
        if not o.is_tensor or o.shape is None or not o.shape:
            continue
        per_row = o.shape[1:]
        k = per_row[0] if len(per_row) == 1 else (1 if not per_row else None)
        if o.dtype and o.dtype.startswith(("int", "uint", "bool")) and k == 1:
            return o.name, "classification"
        if k == 1:
            return o.name, "regression"
        if len(per_row) == 1 and (not isinstance(k, int) or 2 <= k <= 100):
            return o.name, "classification"
    return None, "none"


class _Model:
    """What the feature keeps for one model name: its watches, pending predictions, labels."""

    def __init__(self, name: str, spec: MonitorSpec, task: str, output: str | None) -> None:
        self.name = name
        self.spec = spec
        self.task = task
        self.output = output
        """The output feedback is scored against."""
        self.pending = PendingPredictions(ttl_s=spec.label_ttl_s, capacity=spec.max_pending)
        self.labels = Labels(task=task, keep_s=spec.label_ttl_s)
        self.watches: dict[str, ModelWatch] = {}


class _PredictionIndex:
    """Remembers each answered request's output by id (in the event loop: a dict insert)."""

    name = "monitor_predictions"
    threaded = False

    def __init__(self, models: dict[str, _Model]) -> None:
        self.models = models

    def record(self, records: Sequence[RequestRecord]) -> None:
        """Index the answered requests of watched models."""
        for r in records:
            m = self.models.get(r.model)
            if m is None or r.status != 200 or r.request_id is None or not r.outputs:
                continue
            out = r.outputs.get(m.output) if m.output else None
            if out is not None:
                m.pending.add(r.request_id, r.time, r.version, predictions_of(out, m.task))


class _WindowRecorder:
    """Folds requests into windows and closes them (its own thread, on a clock)."""

    name = "monitor"
    threaded = True
    tick_s = 1.0

    def __init__(
        self,
        models: dict[str, _Model],
        *,
        location: LogLocation | None,
        store_url: str | None,
        dispatcher: AlertDispatcher,
        clock: Any = time.time,
    ) -> None:
        self.models = models
        self.location = location
        self.store_url = store_url
        self.dispatcher = dispatcher
        self.clock = clock
        self.verdicts: Counter[tuple[str, str]] = Counter()
        self.errors = 0
        self._lock = threading.Lock()
        self._server = f"{socket.gethostname()}-{os.getpid()}"
        # BLAS on one thread while folding and testing: a projection's matrix product wakes
        # OpenBLAS's pool, whose threads then spin beside the event loop (measured: 0.8 s of CPU
        # per 12,000 requests at 1,500 req/s on digits, a quarter of the front's own).
        self._threads = ThreadpoolController()
        self._store: Store | None = None
        self._registered: set[str] = set()

    def record(self, records: Sequence[RequestRecord]) -> None:
        """Fold records into their versions' open windows, closing a window at the request that
        fills it (a batch of records may span several windows)."""
        with self._threads.limit(limits=1, user_api="blas"):
            for i in range(0, len(records), _CHUNK):
                self._record(records[i : i + _CHUNK])
                # Let the event loop have the GIL between chunks: a second of records folded in
                # one go would hold it for milliseconds, and requests would wait that long.
                time.sleep(0)

    def _record(self, records: Sequence[RequestRecord]) -> None:
        closed = []
        with self._lock:
            pending: dict[tuple[str, str], list[RequestRecord]] = defaultdict(list)
            for r in records:
                m = self.models.get(r.model)
                w = m.watches.get(r.version) if m is not None else None
                if m is None or w is None:
                    continue
                if r.status == 400:
                    w.rejected(1)
                    continue
                if r.status != 200 or r.request is None or not r.outputs:
                    continue
                batch = pending[r.model, r.version]
                batch.append(r)
                if w.full(len(batch)):
                    self._fold(w, batch)
                    batch.clear()
                    # Closed just after its last request: labels join by request time.
                    end = r.time + 1e-6
                    result, profile = w.close(end, m.labels)
                    closed.append((m, w, result, profile, end))
            for (model, version), batch in pending.items():
                if batch:
                    self._fold(self.models[model].watches[version], batch)
        for m, w, result, profile, end in closed:
            self._closed(m, w, result, profile, end)
        self._tick(final=False)

    @staticmethod
    def _fold(w: ModelWatch, records: Sequence[RequestRecord]) -> None:
        """Fold answered requests in, stacked by the shapes of their tensors."""
        groups: dict[tuple[Any, ...], list[RequestRecord]] = defaultdict(list)
        for r in records:
            assert r.request is not None and r.outputs is not None
            key = tuple(
                (k, a.shape[1:], a.dtype.str)
                for k, a in (*_inputs(r).items(), *r.outputs.items())
                if isinstance(a, np.ndarray) and a.ndim
            )
            groups[key].append(r)
        for rs in groups.values():
            w.fold(
                _stack([_inputs(r) for r in rs if r.request is not None]),
                _stack([r.outputs for r in rs if r.outputs is not None]),
                requests=len(rs),
                times=(rs[0].time, rs[-1].time),
            )

    def views(self) -> list[dict[str, Any]]:
        """Every watched version's windows (JSON-ready)."""
        now = self.clock()
        with self._lock:
            return [w.view(now, m.labels) for m in self.models.values() for w in m.watches.values()]

    def tick(self, *, final: bool = False) -> None:
        """Close the windows that are due (every open one with requests when ``final``)."""
        with self._threads.limit(limits=1, user_api="blas"):
            self._tick(final=final)

    def _tick(self, *, final: bool) -> None:
        now = self.clock()
        due = []
        with self._lock:
            for m in self.models.values():
                for w in m.watches.values():
                    if not (final or w.due(now)):
                        continue
                    if w.window.requests == 0 and w.window.rejected == 0:
                        w.skip(now)
                        continue
                    result, profile = w.close(now, m.labels)
                    due.append((m, w, result, profile))
                m.labels.forget_before(now - m.spec.label_ttl_s - m.spec.window_s)
        for m, w, result, profile in due:
            self._closed(m, w, result, profile, now)

    def _closed(
        self, m: _Model, w: ModelWatch, result: WindowResult, profile: Any, now: float
    ) -> None:
        self.verdicts[m.name, result.verdict] += 1
        log.info("monitor window %s", result.summary())
        self._save(result, profile, m, w)
        self.dispatcher.send(w.alerts(result, now))

    def _save(self, result: WindowResult, profile: Any, m: _Model, w: ModelWatch) -> None:
        if self.location is not None:
            try:
                self._write_file(result, profile, m)
            except (OSError, ValueError) as exc:
                self.errors += 1
                log.warning("monitor window file not written: %s", exc)
        try:
            # One connection for the server's life: opening one (engine, schema check) costs
            # tens of milliseconds of Python, and windows of a few hundred requests close often.
            if self._store is None:
                from modelscale.store import open_store

                self._store = open_store(self.store_url)
            sha = w.sha256
            if sha is not None and sha not in self._registered:
                self._store.register_model(sha, name=m.name)
                self._registered.add(sha)
            self._store.record(result, model_version=sha, note=result.summary())
        except (ModelscaleError, OSError, SQLAlchemyError) as exc:
            self.errors += 1
            log.warning("monitor window not recorded in the knowledge base: %s", exc)
            self.close_store()  # reconnect at the next window

    def close_store(self) -> None:
        """Close the knowledge base connection (the server stops, or it failed)."""
        store, self._store = self._store, None
        if store is not None:
            with contextlib.suppress(Exception):
                store.close()

    def _write_file(self, result: WindowResult, profile: Any, m: _Model) -> None:
        assert self.location is not None
        fs = self.location.filesystem
        folder = f"{self.location.root}/monitor/model={m.name}/version={result.version}"
        stamp = dt.datetime.fromtimestamp(result.start, dt.UTC).strftime("%Y%m%dT%H%M%S.%f")
        name = f"{stamp}-{self._server}.json"
        preds, labels = m.labels.window(result.start, result.end, result.version)
        body = orjson.dumps(
            {
                "model": m.name,
                "version": result.version,
                "start": result.start,
                "end": result.end,
                "baseline_run": result.baseline_run,
                "task": m.task,
                "profile": profile.to_dict(),
                "predictions": preds.tolist(),
                "labels": labels.tolist(),
            },
            option=orjson.OPT_SERIALIZE_NUMPY,
        )
        fs.create_dir(folder, recursive=True)
        tmp = f"{folder}/.{name}.tmp"
        with fs.open_output_stream(tmp) as out:
            out.write(body)
        fs.move(tmp, f"{folder}/{name}")


def _inputs(r: RequestRecord) -> dict[str, Any]:
    """The request's inputs the sketches may see: none that the privacy policy withholds
    (dropped, hashed or masked), and no text (its tokens are what the model gets)."""
    assert r.request is not None
    inputs = r.request.inputs
    withheld = (r.extras or {}).get("privacy", {}).get("withheld")
    if withheld or any(a.dtype.kind == "O" for a in inputs.values()):
        return {
            k: a for k, a in inputs.items() if k not in (withheld or ()) and a.dtype.kind != "O"
        }
    return inputs


def _stack(dicts: list[dict[str, Any]]) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    for name in dicts[0]:
        arrays = [np.asarray(d[name]) for d in dicts if name in d]
        if arrays and arrays[0].ndim:
            out[name] = arrays[0] if len(arrays) == 1 else np.concatenate(arrays)
    return out


class _Collector(Collector):
    def __init__(self, models: dict[str, _Model], windows: _WindowRecorder) -> None:
        self.models, self.windows = models, windows

    def collect(self) -> Iterable[Metric]:
        drifted = GaugeMetricFamily(
            "modelscale_drift_features",
            "Features that drift in the last closed window",
            labels=["model", "version"],
        )
        accuracy = GaugeMetricFamily(
            "modelscale_model_accuracy",
            "The model's metric in the last closed window: realized from feedback, or estimated "
            "from confidences",
            labels=["model", "version", "source"],
        )
        for m in self.models.values():
            for v, w in m.watches.items():
                if not w.closed:
                    continue
                last = w.closed[-1]
                drifted.add_metric([m.name, v], len(last.drift.get("drifted") or []))
                for source in ("realized", "estimate"):
                    got = last.accuracy.get(source)
                    if got:
                        accuracy.add_metric([m.name, v, source], got["value"])
        windows = CounterMetricFamily(
            "modelscale_monitor_windows",
            "Closed monitor windows by verdict (ok, drift, quality, accuracy, too few rows)",
            labels=["model", "verdict"],
        )
        for (model, verdict), n in sorted(self.windows.verdicts.items()):
            windows.add_metric([model, verdict], n)
        feedback = CounterMetricFamily(
            "modelscale_feedback",
            "Feedback labels by result (joined, unknown, expired, invalid, replaced)",
            labels=["model", "result"],
        )
        for m in self.models.values():
            for result in ("joined", "unknown", "expired", "invalid", "replaced"):
                feedback.add_metric([m.name, result], m.labels.counts[result])
        return [drifted, accuracy, windows, feedback]


class _Routes:
    def __init__(
        self, models: dict[str, _Model], windows: _WindowRecorder, events: Events | None = None
    ) -> None:
        self.models, self.windows, self.events = models, windows, events

    def _publish(self, m: _Model, item: Any, pending: Any) -> None:
        """Tell the other features (an experiment's accuracy per arm) what a label scored."""
        assert self.events is not None
        _, version, preds = pending
        labels = np.asarray(item.label)
        score: dict[str, float] = {}
        if m.task == "classification":
            score["correct"] = float(np.mean(np.asarray(preds) == labels))
        else:
            diff = np.asarray(preds, dtype=np.float64) - labels.astype(np.float64)
            score["abs_error"] = float(np.mean(np.abs(diff)))
        self.events.publish(
            "feedback",
            model=m.name,
            version=version,
            id=item.id,
            task=m.task,
            rows=int(labels.shape[0]),
            **score,
        )

    async def feedback(self, ex: Exchange) -> None:
        m = self.models.get(ex.model or "")
        if m is None:
            raise ApiError(
                404,
                f"model {ex.model!r} is not monitored (monitor.enabled: false in deploy.yaml)",
                field="model",
            )
        if m.output is None:
            raise ApiError(
                404,
                f"model {ex.model!r} answers no class or value per row that a label could score "
                "(its outputs are embeddings or sequences)",
                field="model",
            )
        try:
            body = orjson.loads(ex.body or b"")
        except orjson.JSONDecodeError as exc:
            m.labels.counts["invalid"] += 1
            raise ApiError(400, f"the body is not JSON: {exc}", field="body") from None
        try:
            items = parse_feedback(body, task=m.task)
        except InvalidInput as exc:
            m.labels.counts["invalid"] += 1
            raise ApiError(400, str(exc), field=exc.field) from None
        now = time.time()
        found: list[tuple[Any, Any]] = []
        missing: dict[str, list[str]] = {"unknown": [], "expired": []}
        for item in items:
            state, pending = m.pending.take(item.id, now)
            if pending is None:
                missing[state].append(item.id)
            else:
                found.append((item, pending))
        # Check every label against its request before keeping any.
        for item, pending in found:
            rows = int(pending[2].shape[0])
            if len(item.label) != rows:
                m.labels.counts["invalid"] += 1
                raise ApiError(
                    400,
                    f"request {item.id} answered {rows} row(s); feedback gave {len(item.label)} "
                    "label(s). Expected one label per row",
                    field="label",
                )
        publish = self.events is not None and self.events.wanted("feedback")
        for item, pending in found:
            m.labels.join(item, pending)
            if publish:
                self._publish(m, item, pending)
        for state, ids in missing.items():
            m.labels.counts[state] += len(ids)
        if len(items) == 1 and not found:
            state = "expired" if missing["expired"] else "unknown"
            why = (
                f"is older than monitor.label_ttl_s ({m.spec.label_ttl_s:g} s)"
                if state == "expired"
                else "is not one this server answered recently"
            )
            raise ApiError(404, f"request id {items[0].id!r} {why}", field="id")
        answer = {"accepted": len(found), **{k: v for k, v in missing.items() if v}}
        ex.answer(200, orjson.dumps(answer), [_JSON, _NO_STORE])

    async def status(self, ex: Exchange) -> None:
        # Testing the open windows reads every sketch: off the event loop.
        views = await asyncio.to_thread(self.windows.views)
        feedback = {m.name: dict(m.labels.counts) for m in self.models.values()}
        body = {"models": views, "feedback": feedback}
        ex.answer(200, orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY), [_JSON, _NO_STORE])


def _close(dispatcher: AlertDispatcher, windows: _WindowRecorder, domain: DomainTester) -> None:
    dispatcher.close()
    windows.close_store()
    domain.close()


def build_feature(context: StageContext) -> Feature | None:
    """The monitor feature for one server (None when no model is monitored)."""
    spec = context.spec
    wanted = {name: m for name, m in spec.models.items() if m.monitor.enabled}
    if not wanted:
        return None
    models: dict[str, _Model] = {}
    now = time.time()
    domain = DomainTester()
    store = None
    try:
        from modelscale.store import open_store

        store = open_store(spec.store.url)
    except (ModelscaleError, OSError) as exc:
        log.warning("monitor: the knowledge base cannot be opened (%s); no drift windows", exc)
    try:
        for rt in context.registry.runtimes():
            mspec = wanted.get(rt.name)
            if mspec is None:
                continue
            base = (
                find_baseline(
                    store, sha256=rt.artifact.sha256, model=rt.name, ref=mspec.monitor.baseline
                )
                if store is not None
                else None
            )
            output, task = _feedback_target(rt, base)
            m = models.get(rt.name) or _Model(rt.name, mspec.monitor, task, output)
            models[rt.name] = m
            if base is None:
                log.info(
                    "monitor: no baseline for %s v%s: feedback only, no drift windows. Make one "
                    "with `modelscale monitor baseline MODEL --data ref.npz`",
                    rt.name,
                    rt.version,
                )
                continue
            mon = mspec.monitor
            m.watches[rt.version] = ModelWatch(
                rt.name,
                rt.version,
                base,
                sha256=rt.artifact.sha256,
                options=DriftOptions(
                    alpha=mon.alpha, min_effect=mon.min_effect, min_rows=mon.min_rows
                ),
                window_s=mon.window_s,
                window_requests=mon.window_requests,
                domain_every_s=mon.domain_every_s,
                domain_runner=domain,
                accuracy_drop=mon.accuracy_drop,
                domain=mon.domain_classifier,
                now=now,
            )
    finally:
        if store is not None:
            store.close()
    location = None
    if spec.log.enabled:
        location = LogLocation.of(spec.log.where)
    dispatcher = AlertDispatcher(
        webhooks=spec.alerts.webhooks,
        retries=spec.alerts.retries,
        timeout_s=spec.alerts.timeout_s,
        store_url=spec.store.url,
    )
    windows = _WindowRecorder(
        models, location=location, store_url=spec.store.url, dispatcher=dispatcher
    )
    context.metrics.registry.register(_Collector(models, windows))
    routes = _Routes(models, windows, context.events)
    return Feature(
        name="monitor",
        recorders=[_PredictionIndex(models), windows],
        routes={"/v2/monitor": Route(routes.status, scope="logs:read")},
        model_routes={"feedback": Route(routes.feedback, methods=("POST",), scope="feedback")},
        close=functools.partial(_close, dispatcher, windows, domain),
    )
