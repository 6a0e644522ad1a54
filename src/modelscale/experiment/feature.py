"""The experiment feature of the server: routing by arm, shadow copies, canary steps, outcomes.

Declared under the entry-point group ``modelscale.serve.features`` (pyproject). For every served
model with an ``experiment`` in deploy.yaml it adds:

- a stage before ``route``: an unversioned request is assigned an arm by its unit (a hash of the
  unit key, ``modelscale.experiment.assign``), goes to that arm's version, and the answer says
  which (``X-Modelscale-Arm``, ``X-Modelscale-Experiment``; a request without an id gets one in
  ``X-Request-Id`` so its outcomes can name it). Requests naming a version bypass it;
- a recorder in the event loop (O(1) per request): the arms' errors and latency, copies of
  requests to the other arm after the answer was sent (shadow; the agreement guardrail), and,
  at most twice a second, the always-valid tests and what they decide (``state.Experiment``);
- ``POST /v2/models/{name}/outcome`` (engagement and business events, joined to the arm),
  ``GET|POST /v2/models/{name}/experiment`` (status; stop, promote, rollback) and
  ``GET /v2/experiments`` (every experiment, for the dashboard), behind the API key;
- events (started, advanced, promoted, rolled back, stopped, a winner, harm, sample-ratio
  mismatch) through observe's alert path: the server log, a run of kind ``experiment`` in the
  knowledge base, webhooks. deploy.yaml is never rewritten: a restarted server resumes the
  experiment from its newest run (same name, kind, arms and unit).
- accuracy per arm from the monitor's feedback (the ``feedback`` notice on ``Events``).

Copies never slow the answered requests: they are sent after the answer, at most
``shadow.max_in_flight`` rows at a time (the rest are dropped and counted), and a copy the
other arm sheds counts as dropped too.
"""

from __future__ import annotations

import functools
import logging
import math
import random
import secrets
import time
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import orjson
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy.exc import SQLAlchemyError

from modelscale.errors import InvalidInput, ModelscaleError
from modelscale.experiment.assign import UnitReader
from modelscale.experiment.outputs import compare_outputs
from modelscale.experiment.state import (
    ARMS,
    CONTROL,
    TREATMENT,
    Experiment,
    State,
    remember,
)
from modelscale.observe import AlertDispatcher
from modelscale.serve import ApiError, Endpoint, Feature, Route

if TYPE_CHECKING:
    import asyncio

    from modelscale.serve import Exchange, RequestRecord, Stage, StageContext

__all__ = ["build_feature"]

log = logging.getLogger("modelscale.experiment")
_JSON = (b"content-type", b"application/json")
_NO_STORE = (b"cache-control", b"no-store")
_EVALUATE_EVERY_S = 0.5
_ARM_HEADER = b"x-modelscale-arm"
_EXPERIMENT_HEADER = b"x-modelscale-experiment"
_MAX_OUTCOMES = 10_000
_LABELLED_KEPT = 1_000_000


class _Live:
    """One model's experiment in this server: its state, unit reader, and the arms' runtimes."""

    def __init__(self, exp: Experiment, reader: UnitReader, runtimes: tuple[Any, Any]) -> None:
        self.exp = exp
        self.reader = reader
        self.runtimes = runtimes  # the arms' VersionRuntime (control, treatment)
        self.arm_values = (ARMS[0].encode(), ARMS[1].encode())
        self.name_value = exp.name.encode("latin-1", "replace")
        control, treatment = runtimes
        self.copy_ok = control.contract.input_key == treatment.contract.input_key
        self.in_flight = 0
        self.sample = exp.spec.shadow.sample
        self.requests: dict[str, tuple[int, int]] = {}
        """Request id -> (arm, step), for feedback to find its arm."""
        self.wants_labels = any(m in exp.metrics for m in ("accuracy", "mae"))

    def copies(self, arm: int) -> bool:
        """Whether an answered request of ``arm`` is copied to the other arm."""
        exp = self.exp
        if not self.copy_ok or exp.state is not State.RUNNING:
            return False
        if exp.kind == "shadow":
            wanted = arm == CONTROL
        else:
            wanted = exp.wants_agreement and arm == TREATMENT
        return wanted and (self.sample >= 1 or random.random() < self.sample)


class _StageFactory:
    def __init__(self, live: dict[str, _Live]) -> None:
        self.live = live
        self.place = ("before", "route")

    def __call__(self, context: StageContext) -> Stage | None:
        return ExperimentStage(self.live)


class ExperimentStage:
    """Assign an unversioned request of a model with an experiment to an arm's version."""

    name: ClassVar[str] = "experiment"
    endpoints: ClassVar[frozenset[Endpoint]] = frozenset({Endpoint.INFER})

    def __init__(self, live: dict[str, _Live]) -> None:
        self.live = live

    async def __call__(self, ex: Exchange) -> None:
        """Set ``ex.version`` to the arm's version; leave the arm for the recorders."""
        if ex.version is not None:
            return
        live = self.live.get(ex.model or "")
        if live is None:
            return
        exp = live.exp
        key = live.reader.read(ex)
        running = exp.state is State.RUNNING
        if running:
            if key is None and live.reader.kind != "request":
                exp.missing_unit += 1
            if ex.request_id is None:
                ex.request_id = secrets.token_hex(8)
        arm = exp.assign(key, ex.request_id)
        ex.version = exp.versions[arm]
        extras = ex.extras
        if extras is None:
            extras = ex.extras = {}
        extras["arm"] = ARMS[arm]
        extras["experiment"] = exp.name
        extras["step"] = exp.step_index if running else -1
        ex.add_header(_ARM_HEADER, live.arm_values[arm])
        ex.add_header(_EXPERIMENT_HEADER, live.name_value)


class _Recorder:
    """The arms' outcomes per request, copies to the other arm, and the decisions (event loop)."""

    name = "experiment"
    threaded = False

    def __init__(self, live: dict[str, _Live], dispatcher: AlertDispatcher) -> None:
        self.live = live
        self.dispatcher = dispatcher
        self._last = 0.0

    def record(self, records: Sequence[RequestRecord]) -> None:
        """Count each experiment request for its arm; copy those that are copied."""
        for r in records:
            extras = r.extras
            if not extras or "experiment" not in extras:
                continue
            live = self.live.get(r.model)
            step = extras.get("step", -1)
            if live is None or step < 0 or extras["experiment"] != live.exp.name:
                continue
            exp = live.exp
            arm = TREATMENT if extras.get("arm") == ARMS[1] else CONTROL
            latency = r.latency_s
            if exp.kind == "shadow" and r.queue_s is not None and r.roundtrip_s is not None:
                # Compared with its copies' time in the other arm's queue and replicas.
                latency = r.queue_s + r.roundtrip_s
            service = None
            if exp.kind != "shadow" and r.batch_wait_s is not None:
                service = max(0.0, latency - r.batch_wait_s)
            exp.served(arm, step, r.status, latency, service)
            if live.wants_labels and r.request_id is not None and r.status == 200:
                remember(live.requests, r.request_id, (arm, step), _LABELLED_KEPT)
            if r.status == 200 and r.request is not None and r.outputs and live.copies(arm):
                self._copy(live, r, arm, step)
        self.evaluate()

    def _copy(self, live: _Live, r: RequestRecord, arm: int, step: int) -> None:
        exp = live.exp
        assert r.request is not None and r.outputs is not None
        rows = r.request.rows
        cap = exp.spec.shadow.max_in_flight
        if live.in_flight + rows > cap:
            exp.shadow["dropped"] += 1
            return
        target = live.runtimes[1 - arm]
        try:
            fut = target.submit(r.request)
        except ApiError:
            exp.shadow["dropped"] += 1  # the other arm sheds or is not ready: never retried
            return
        live.in_flight += rows
        exp.shadow["sent"] += 1
        fut.add_done_callback(functools.partial(self._copied, live, r.outputs, arm, step, rows))

    @staticmethod
    def _copied(
        live: _Live,
        primary: dict[str, Any],
        arm: int,
        step: int,
        rows: int,
        fut: asyncio.Future[Any],
    ) -> None:
        live.in_flight -= rows
        exp = live.exp
        if fut.cancelled() or fut.exception() is not None:
            exp.compared(step, None, latency_s=None, ok=False)
            return
        reply = fut.result()
        # The control's answer is the reference whichever arm was copied.
        ref, cand = (primary, reply.outputs) if arm == CONTROL else (reply.outputs, primary)
        agreement = compare_outputs(
            ref, cand, cosine=exp.spec.agreement_cosine, names=exp.spec.compare
        )
        exp.compared(step, agreement, latency_s=reply.queue_s + reply.roundtrip_s, ok=True)

    def evaluate(self, *, force: bool = False) -> None:
        """Run the tests (at most twice a second) and hand new events to the alert path."""
        now = time.monotonic()
        if not force and now - self._last < _EVALUATE_EVERY_S:
            return
        self._last = now
        for live in self.live.values():
            try:
                live.exp.evaluate()
            except Exception:
                log.exception("experiment %s: the tests failed", live.exp.name)
            self.flush(live)

    def flush(self, live: _Live) -> None:
        """Send the experiment's new events."""
        out, live.exp.outbox = live.exp.outbox, []
        if out:
            self.dispatcher.send(out)

    def labelled(self, **notice: Any) -> None:
        """The monitor joined a label to a request: score it for its arm."""
        live = self.live.get(str(notice.get("model")))
        if live is None or not live.wants_labels:
            return
        seen = live.requests.get(str(notice.get("id")))
        if seen is None:
            return
        arm, step = seen
        live.exp.labelled(
            str(notice["id"]),
            arm,
            step,
            correct=notice.get("correct"),
            abs_error=notice.get("abs_error"),
        )


def _number(value: Any, field: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidInput(
            f"{field} must be a number. Got {type(value).__name__} {str(value)[:40]!r}.",
            field=field,
        )
    v = float(value)
    if not math.isfinite(v):
        raise InvalidInput(f"{field} must be a finite number. Got {value!r}.", field=field)
    return v


def parse_outcomes(body: Any) -> list[dict[str, Any]]:
    """The outcome items of a request body (``{"id"|"unit", "metric", "value"[, "pre"]}`` or
    ``{"items": [...]}``), every one checked before any is kept."""
    if isinstance(body, dict) and "items" in body:
        items = body["items"]
        if not isinstance(items, list) or not items:
            raise InvalidInput("items must be a non-empty list of outcomes.", field="items")
        if len(items) > _MAX_OUTCOMES:
            raise InvalidInput(
                f"at most {_MAX_OUTCOMES} outcomes per request. Got {len(items)}.", field="items"
            )
        prefix = "items[{}]."
    else:
        items, prefix = [body], ""
    out = []
    for i, item in enumerate(items):
        where = prefix.format(i)
        if not isinstance(item, dict):
            raise InvalidInput(
                f"{where or 'the body '}must be an object like "
                '{"id": "REQUEST_ID", "metric": "click", "value": 1}.',
                field=f"{where}body" if where else "body",
            )
        unknown = set(item) - {"id", "unit", "metric", "value", "pre"}
        if unknown:
            raise InvalidInput(
                f"{where}{sorted(unknown)[0]} is not an outcome field; expected id or unit, "
                "metric, value, and optionally pre (the unit's pre-period value, for CUPED).",
                field=f"{where}{sorted(unknown)[0]}",
            )
        rid, unit = item.get("id"), item.get("unit")
        if (rid is None) == (unit is None):
            raise InvalidInput(
                f"{where}: give one of id (the request id) or unit (the unit key).",
                field=f"{where}id",
            )
        for name, v in (("id", rid), ("unit", unit)):
            if v is not None and (not isinstance(v, str | int) or isinstance(v, bool) or v == ""):
                raise InvalidInput(
                    f"{where}{name} must be a non-empty string. Got {v!r}.", field=f"{where}{name}"
                )
        metric = item.get("metric")
        if not isinstance(metric, str) or not metric:
            raise InvalidInput(
                f"{where}metric must be the name of an outcome metric. Got {metric!r}.",
                field=f"{where}metric",
            )
        if "value" not in item:
            raise InvalidInput(f"{where}value is missing.", field=f"{where}value")
        value = _number(item["value"], f"{where}value")
        pre = _number(item["pre"], f"{where}pre") if item.get("pre") is not None else None
        out.append(
            {
                "id": None if rid is None else str(rid),
                "unit": None if unit is None else str(unit),
                "metric": metric,
                "value": value,
                "pre": pre,
            }
        )
    return out


class _Routes:
    def __init__(self, live: dict[str, _Live], recorder: _Recorder) -> None:
        self.live, self.recorder = live, recorder

    def _find(self, ex: Exchange) -> _Live:
        live = self.live.get(ex.model or "")
        if live is None:
            raise ApiError(
                404,
                f"model {ex.model!r} runs no experiment (experiment: in deploy.yaml)",
                field="model",
            )
        return live

    async def outcome(self, ex: Exchange) -> None:
        live = self._find(ex)
        exp = live.exp
        try:
            items = parse_outcomes(orjson.loads(ex.body or b""))
            for item in items:  # every metric known before any outcome is kept
                if item["metric"] not in exp.outcome_index:
                    exp.outcome(
                        request_id=None, unit=None, metric=item["metric"], value=0.0
                    )  # raises InvalidInput naming the declared metrics
        except orjson.JSONDecodeError as exc:
            exp.outcome_counts["invalid"] += 1
            raise ApiError(400, f"the body is not JSON: {exc}", field="body") from None
        except InvalidInput as exc:
            if "is not an outcome metric" not in str(exc):
                exp.outcome_counts["invalid"] += 1
            raise ApiError(400, str(exc), field=exc.field) from None
        result: dict[str, list[str]] = {"unknown": [], "expired": []}
        accepted = 0
        for item in items:
            got = exp.outcome(
                request_id=item["id"],
                unit=item["unit"],
                metric=item["metric"],
                value=item["value"],
                pre=item["pre"],
            )
            if got == "accepted":
                accepted += 1
            else:
                result[got].append(item["id"] or item["unit"])
        if len(items) == 1 and not accepted:
            which = "request id" if items[0]["id"] is not None else "unit"
            why = (
                f"was exposed longer ago than experiment.outcome_ttl_s "
                f"({exp.spec.outcome_ttl_s:g} s)"
                if result["expired"]
                else f"is not one this server assigned in experiment {exp.name}"
            )
            raise ApiError(
                404,
                f"{which} {(items[0]['id'] or items[0]['unit'])!r} {why}",
                field="id" if which == "request id" else "unit",
            )
        body = {"accepted": accepted, **{k: v for k, v in result.items() if v}}
        ex.answer(200, orjson.dumps(body), [_JSON, _NO_STORE])

    async def experiment(self, ex: Exchange) -> None:
        live = self._find(ex)
        if ex.method == "POST":
            try:
                body = orjson.loads(ex.body or b"")
            except orjson.JSONDecodeError as exc:
                raise ApiError(400, f"the body is not JSON: {exc}", field="body") from None
            action = body.get("action") if isinstance(body, dict) else None
            try:
                live.exp.act(str(action) if action is not None else "", by=ex.key_id)
            except InvalidInput as exc:
                status = 409 if "has finished" in str(exc) else 400
                raise ApiError(status, str(exc), field="action") from None
            self.recorder.flush(live)
        else:
            live.exp.evaluate()
            self.recorder.flush(live)
        ex.answer(200, _dumps(live.exp.status()), [_JSON, _NO_STORE])

    async def all(self, ex: Exchange) -> None:
        views = []
        for live in self.live.values():
            live.exp.evaluate()
            self.recorder.flush(live)
            views.append(live.exp.status())
        ex.answer(200, _dumps({"experiments": views}), [_JSON, _NO_STORE])


def _dumps(obj: Any) -> bytes:
    # orjson writes nan and infinities as null (JSON has neither), numpy scalars included.
    return orjson.dumps(obj, option=orjson.OPT_SERIALIZE_NUMPY)


class _Collector(Collector):
    def __init__(self, live: dict[str, _Live]) -> None:
        self.live = live

    def collect(self) -> Iterable[Metric]:
        labels = ["model", "experiment"]
        requests = CounterMetricFamily(
            "modelscale_experiment_requests",
            "Answered requests of each experiment arm",
            labels=[*labels, "arm"],
        )
        share = GaugeMetricFamily(
            "modelscale_experiment_treatment_share",
            "The treatment's share of units now (a canary's step; 0 after a rollback)",
            labels=labels,
        )
        running = GaugeMetricFamily(
            "modelscale_experiment_running", "1 while the experiment runs, else 0", labels=labels
        )
        missing = CounterMetricFamily(
            "modelscale_experiment_missing_unit",
            "Requests without the unit key, assigned by request instead",
            labels=labels,
        )
        copies = CounterMetricFamily(
            "modelscale_experiment_copies",
            "Requests copied to the other arm (shadow, agreement) by result",
            labels=[*labels, "result"],
        )
        outcomes = CounterMetricFamily(
            "modelscale_experiment_outcomes",
            "Outcome events by result (accepted, unknown, expired, invalid)",
            labels=[*labels, "result"],
        )
        for model, live in self.live.items():
            exp = live.exp
            base = [model, exp.name]
            for a in (0, 1):
                requests.add_metric([*base, ARMS[a]], exp.requests[a])
            share.add_metric(base, exp.share())
            running.add_metric(base, 1.0 if exp.state is State.RUNNING else 0.0)
            missing.add_metric(base, exp.missing_unit)
            for k in ("sent", "dropped", "failed"):
                copies.add_metric([*base, k], exp.shadow[k])
            for k, v in exp.outcome_counts.items():
                outcomes.add_metric([*base, k], v)
        return [requests, share, running, missing, copies, outcomes]


def _resume(exp: Experiment, store_url: str | None) -> bool:
    """Continue ``exp`` from its newest run in the knowledge base; whether one was found."""
    try:
        from modelscale.store import open_store

        store = open_store(store_url)
    except (ModelscaleError, OSError, SQLAlchemyError) as exc:
        log.warning("experiment %s: the knowledge base cannot be opened (%s)", exp.name, exc)
        return False
    try:
        for run in store.runs(kind="experiment", limit=10_000):
            status = run.results.get("status") or {}
            if status.get("identity") == exp.identity:
                exp.resume(status)
                return True
    except (ModelscaleError, SQLAlchemyError) as exc:
        log.warning("experiment %s: its runs cannot be read (%s)", exp.name, exc)
    finally:
        store.close()
    return False


def _close(recorder: _Recorder, dispatcher: AlertDispatcher) -> None:
    recorder.evaluate(force=True)
    dispatcher.close()


async def _no_experiments(ex: Exchange) -> None:
    ex.answer(200, b'{"experiments":[]}', [_JSON, _NO_STORE])


def build_feature(context: StageContext) -> Feature | None:
    """The experiment feature for one server (only ``GET /v2/experiments``, answering an empty
    list, when no model runs an experiment)."""
    spec = context.spec
    live: dict[str, _Live] = {}
    for name, mspec in spec.models.items():
        espec = mspec.experiment
        if espec is None:
            continue
        entry = context.registry.models[name]
        control = entry.versions[espec.arms["control"]]
        treatment = entry.versions[espec.arms["treatment"]]
        p99 = mspec.slo.p99_ms
        if p99 is None and mspec.slo.latency is not None:
            p99 = mspec.slo.latency.threshold_ms
        unknown = [o for o in espec.compare or () if o not in control.contract.output_names]
        if unknown:
            raise InvalidInput(
                f"experiment.compare of model {name!r} names {', '.join(map(repr, unknown))}, "
                f"which version {espec.arms['control']} does not output; its outputs are: "
                f"{', '.join(control.contract.output_names)}.",
                field=f"models.{name}.experiment.compare",
            )
        exp = Experiment(name, espec, p99_ms=p99, sha256=treatment.artifact.sha256)
        live[name] = _Live(
            exp, UnitReader(espec.unit, required=espec.unit_required), (control, treatment)
        )
        if not live[name].copy_ok and exp.wants_agreement:
            log.warning(
                "experiment %s: versions %s and %s take different inputs; no copies are "
                "compared (no output agreement)",
                exp.name,
                *exp.versions,
            )
        if not _resume(exp, spec.store.url):
            exp.started()
    if not live:
        # Only the list, empty: the dashboard (and a script) can ask any server.
        return Feature(
            name="experiment", routes={"/v2/experiments": Route(_no_experiments, scope="logs:read")}
        )
    dispatcher = AlertDispatcher(
        webhooks=spec.alerts.webhooks,
        retries=spec.alerts.retries,
        timeout_s=spec.alerts.timeout_s,
        store_url=spec.store.url,
    )
    recorder = _Recorder(live, dispatcher)
    for item in live.values():
        recorder.flush(item)
    context.events.subscribe("feedback", recorder.labelled)
    context.metrics.registry.register(_Collector(live))
    routes = _Routes(live, recorder)
    return Feature(
        name="experiment",
        stages=[_StageFactory(live)],
        recorders=[recorder],
        routes={"/v2/experiments": Route(routes.all, scope="logs:read")},
        model_routes={
            "outcome": Route(routes.outcome, methods=("POST",), scope="feedback"),
            "experiment": Route(
                routes.experiment,
                methods=("GET", "POST"),
                scope={"GET": "logs:read", "POST": "admin"},
            ),
        },
        close=functools.partial(_close, recorder, dispatcher),
    )
