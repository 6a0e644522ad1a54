"""The privacy feature of the server: policies applied before any other feature sees the data.

Declared under the entry-point group ``modelscale.serve.features``; the redaction stages are
built when a deployment logs payloads (``log.payloads``) or gives a model a privacy policy:

- ``redact``, right after ``decode`` (before the tokenizer, the experiment router and every
  recorder): request parameters and the headers a policy lists are rewritten in place, so that
  the experiment's units, the request log and the monitor only ever see the policy's output;
  when payloads are logged, the request's inputs under their policies go to
  ``extras["payload"]`` (the model itself still gets the original inputs);
- ``redact_outputs``, right after ``dispatch``, when a policy keeps or hashes outputs;
- ``redact_bodies``, before the feature routes: outcome and feedback bodies are rewritten under
  the model's ``outcomes`` policy before the experiment or the monitor parse them;
- ``audit``, before the feature routes: reads of the stored request log and admin actions are
  appended to the knowledge base's hash-chained audit log before they run.

Its recorder purges what is past retention every ``privacy.retention.purge_every``.

``extras["privacy"]`` tells recorders what was found (kinds and counts) and which inputs the
policy withholds from sketches (``withheld``). ``modelscale_privacy_findings_total{kind}`` counts
findings in ``/metrics``.
"""

from __future__ import annotations

import dataclasses
import logging
import pathlib
from collections import Counter
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

import orjson
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from modelscale.config import DeploymentSpec, ModelPrivacySpec, get_settings
from modelscale.errors import InvalidInput
from modelscale.privacy.policy import DROP
from modelscale.privacy.upkeep import AuditStage, Purger
from modelscale.secret import derive, read_secret
from modelscale.serve import (
    DEFAULT_ROUTE_BODY,
    Endpoint,
    Exchange,
    Feature,
    StageContext,
    read_route_body,
)

if TYPE_CHECKING:
    from collections.abc import Iterable

    from modelscale.privacy.policy import Redactor

__all__ = ["HASH_PURPOSE", "build_feature", "secret_path"]

log = logging.getLogger("modelscale.privacy")

HASH_PURPOSE = "privacy-hash"
"""The purpose the ``hash`` policy's key is derived from the server secret for."""

_DROP = DROP
_BODY_ROUTES = frozenset({"outcome", "feedback"})
_WITHHELD = frozenset({"drop", "hash", "mask"})


def secret_path(spec: DeploymentSpec) -> pathlib.Path | None:
    """Where the server secret is: server.secret_file, else MODELSCALE_SECRET_FILE, else the
    file ``secret`` beside auth.keys_file (where ``modelscale keys create`` puts it)."""
    if spec.server.secret_file is not None:
        return spec.server.secret_file
    if get_settings().secret_file is not None:
        return get_settings().secret_file
    keys = getattr(spec.auth, "keys_file", None)
    if keys is not None and (pathlib.Path(keys).parent / "secret").is_file():
        return pathlib.Path(keys).parent / "secret"
    return None


def _uses_hash(policies: Iterable[ModelPrivacySpec]) -> str | None:
    for p in policies:
        for group in ("inputs", "outputs", "parameters", "headers", "outcomes"):
            for name, action in getattr(p, group).items():
                if action == "hash":
                    return f"{group}.{name}"
    return None


def _hash_key(spec: DeploymentSpec) -> bytes | None:
    path = secret_path(spec)
    used = _uses_hash(m.privacy for m in spec.models.values())
    if path is None:
        if used is not None:
            model = next(n for n, m in spec.models.items() if _uses_hash([m.privacy]))
            raise InvalidInput(
                f"models.{model}.privacy.{used} is 'hash', which needs the server secret, and "
                "none is configured: set server.secret_file in deploy.yaml (or "
                "MODELSCALE_SECRET_FILE); `modelscale keys create` makes one.",
                field="server.secret_file",
            )
        return None
    return derive(read_secret(path), HASH_PURPOSE)


@dataclasses.dataclass(frozen=True)
class _ModelPolicy:
    spec: ModelPrivacySpec
    text_inputs: frozenset[str]
    withheld: tuple[str, ...]


class _Findings(Collector):
    def __init__(self, redactor: Redactor) -> None:
        self.redactor = redactor

    def collect(self) -> Iterable[Metric]:
        c = CounterMetricFamily(
            "modelscale_privacy_findings",
            "Personal data found in requests before storage, by kind",
            labels=["kind"],
        )
        for kind, n in sorted(self.redactor.found.items()):
            c.add_metric([kind], n)
        yield c


def _policies(context: StageContext) -> dict[str, _ModelPolicy]:
    out = {}
    for name, entry in context.registry.models.items():
        spec = context.spec.models[name].privacy
        contracts = [rt.contract for rt in entry.versions.values()]
        inputs = {t.name: t for c in contracts for t in c.inputs}
        outputs = {n for c in contracts for n in c.output_names}
        for group, known in (("inputs", inputs), ("outputs", outputs)):
            for field in getattr(spec, group):
                if field not in known:
                    raise InvalidInput(
                        f"models.{name}.privacy.{group}.{field}: model {name!r} has no "
                        f"{group[:-1]} {field!r}; its {group} are {', '.join(sorted(known))}.",
                        field=f"models.{name}.privacy.{group}",
                    )
        spec = _unit_follows(spec, context.spec.models[name].experiment)
        text = frozenset(n for n, t in inputs.items() if t.dtype == "object")
        withheld = tuple(n for n, a in spec.inputs.items() if a in _WITHHELD)
        out[name] = _ModelPolicy(spec, text, withheld)
    return out


def _unit_follows(spec: ModelPrivacySpec, experiment: Any) -> ModelPrivacySpec:
    """When the experiment assigns by a parameter or header the policy hashes, outcomes name
    their unit hashed too (unless the policy says otherwise), so they still find it."""
    unit = getattr(experiment, "unit", "request") or "request"
    kind, _, field = unit.partition(":")
    group = {"parameter": spec.parameters, "header": spec.headers}.get(kind, {})
    action = group.get(field.lower() if kind == "header" else field)
    if action != "hash" or "unit" in spec.outcomes:
        return spec
    return spec.model_copy(update={"outcomes": {**spec.outcomes, "unit": "hash"}})


class RedactStage:
    """Rewrite parameters and listed headers in place; put the logged payload in extras."""

    name: ClassVar[str] = "redact"
    endpoints: ClassVar[frozenset[Endpoint]] = frozenset({Endpoint.INFER})
    place = ("after", "decode")

    def __init__(
        self, redactor: Redactor, policies: Mapping[str, _ModelPolicy], *, payloads: bool
    ) -> None:
        self.redactor = redactor
        self.policies = policies
        self.payloads = payloads

    async def __call__(self, ex: Exchange) -> None:
        """Apply the model's policy."""
        policy = self.policies.get(ex.model or "")
        req = ex.decoded
        if policy is None or req is None:
            return
        found: Counter[str] = Counter()
        r, spec = self.redactor, policy.spec
        params = req.parameters
        if params:
            clean = {}
            for k, v in params.items():
                got = r.apply(spec.parameters.get(k), v, found)
                if got is not _DROP:
                    clean[k] = got
            ex.decoded = req = dataclasses.replace(req, parameters=clean)
        headers: dict[str, Any] = {}
        if spec.headers:
            headers = self._headers(ex, spec.headers, found)
        withheld = policy.withheld
        if self.payloads:
            inputs = {}
            for k, v in req.inputs.items():
                action = spec.inputs.get(k)
                if action is None and k in policy.text_inputs:
                    action = "redact"
                got = r.apply(action, v, found)
                if got is not _DROP:
                    inputs[k] = got
            payload: dict[str, Any] = {"inputs": inputs}
            if req.parameters:
                payload["parameters"] = req.parameters
            if headers:
                payload["headers"] = headers
            _extras(ex)["payload"] = payload
        elif policy.text_inputs:
            # Findings are counted for every text request, logged or not: the dashboard and
            # the audit say how much personal data the clients send.
            for k in policy.text_inputs:
                for text in req.inputs[k].reshape(-1).tolist():
                    found.update(r.detector.redact(text)[1])
            r.found.update(found)
        if found or withheld:
            _extras(ex)["privacy"] = {"found": dict(found), "withheld": list(withheld)}

    def _headers(
        self, ex: Exchange, policy: Mapping[str, str], found: Counter[str]
    ) -> dict[str, Any]:
        """Rewrite the listed headers where every stage and feature reads them (the ASGI scope
        and the exchange's own table); the logged ones, after their policy."""
        logged: dict[str, Any] = {}
        kept: list[tuple[bytes, bytes]] = []
        for key, value in ex.scope.get("headers", ()):
            name = key.decode("latin-1").lower()
            action = policy.get(name)
            if action is None:
                kept.append((key, value))
                continue
            got = self.redactor.apply(action, value.decode("latin-1"), found)
            if got is _DROP:
                ex.headers.pop(key, None)
                continue
            new = str(got).encode("latin-1", "replace")
            kept.append((key, new))
            if key in ex.headers:
                ex.headers[key] = new
            logged.setdefault(name, got)
        ex.scope["headers"] = kept
        return logged


class RedactOutputsStage:
    """Add the outputs a policy keeps (or hashes) to the logged payload."""

    name: ClassVar[str] = "redact_outputs"
    endpoints: ClassVar[frozenset[Endpoint]] = frozenset({Endpoint.INFER})
    place = ("after", "dispatch")

    def __init__(self, redactor: Redactor, policies: Mapping[str, _ModelPolicy]) -> None:
        self.redactor = redactor
        self.policies = policies

    async def __call__(self, ex: Exchange) -> None:
        """Apply the output policy to the reply (the client still gets the reply as is)."""
        policy = self.policies.get(ex.model or "")
        if policy is None or ex.reply is None or ex.extras is None:
            return
        payload = ex.extras.get("payload")
        if payload is None:
            return
        outputs = {}
        for k, v in ex.reply.outputs.items():
            got = self.redactor.apply(policy.spec.outputs.get(k, "drop"), v)
            if got is not _DROP:
                outputs[k] = got
        if outputs:
            payload["outputs"] = outputs


class RedactBodiesStage:
    """Rewrite outcome and feedback bodies under the model's ``outcomes`` policy."""

    name: ClassVar[str] = "redact_bodies"
    endpoints: ClassVar[frozenset[Endpoint]] = frozenset({Endpoint.FEATURE})
    place = ("before", "feature_routes")

    def __init__(self, redactor: Redactor, policies: Mapping[str, _ModelPolicy]) -> None:
        self.redactor = redactor
        self.policies = policies

    async def __call__(self, ex: Exchange) -> None:
        """Read the body (within the routes' default cap) and rewrite it."""
        if (
            ex.method != "POST"
            or ex.model is None
            or ex.path.rsplit("/", 1)[-1] not in _BODY_ROUTES
        ):
            return
        policy = self.policies.get(ex.model)
        if policy is None:
            return  # unknown model: the route answers 404
        # Outcome and feedback routes take the default cap (a larger body is refused here
        # with the same 413 the route would give).
        raw = await read_route_body(ex, DEFAULT_ROUTE_BODY)
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            ex.body = raw  # not JSON: the route refuses it, nothing is kept
            return
        found: Counter[str] = Counter()
        clean = self.redactor.fields(policy.spec.outcomes, body, found)
        ex.body = orjson.dumps(clean)
        if found:
            _extras(ex)["privacy"] = {"found": dict(found), "withheld": []}


def _extras(ex: Exchange) -> dict[str, Any]:
    if ex.extras is None:
        ex.extras = {}
    return ex.extras


class _Factory:
    """Hands the pipeline a stage built with the feature (they share its redactor)."""

    def __init__(self, stage: Any, place: tuple[str, str]) -> None:
        self.stage = stage
        self.place = place

    def __call__(self, context: StageContext) -> Any:
        return self.stage


def build_feature(context: StageContext) -> Feature | None:
    """The privacy feature for one server: redaction when payloads are logged or a model has a
    policy, the retention purge when the request log is written, and the audit of reads."""
    spec = context.spec
    policed = any(m.privacy != ModelPrivacySpec() for m in spec.models.values())
    audit = AuditStage(spec.store.url)
    recorders = []
    if spec.log.enabled:
        from modelscale.observe import LogLocation

        location = LogLocation.of(spec.log.where)
        recorders.append(Purger(spec, location))
    if not (spec.log.payloads or policed):
        return Feature(
            name="privacy",
            stages=[_Factory(audit, audit.place)],
            recorders=recorders,
            close=audit.close,
        )
    # Imported here: the detector's patterns compile at import, which a server that neither
    # logs payloads nor polices any field never needs.
    from modelscale.privacy.detect import Detector
    from modelscale.privacy.policy import Redactor

    p = spec.privacy
    try:
        detector = Detector(kinds=p.detect, patterns=p.patterns, min_score=p.min_score)
    except InvalidInput as exc:
        raise InvalidInput(f"privacy: {exc}", field=f"privacy.{exc.field or 'detect'}") from None
    redactor = Redactor(detector, _hash_key(spec))
    policies = _policies(context)
    context.metrics.registry.register(_Findings(redactor))
    stages: list[Any] = [
        RedactStage(redactor, policies, payloads=spec.log.payloads),
        RedactBodiesStage(redactor, policies),
    ]
    if any(a != "drop" for m in policies.values() for a in m.spec.outputs.values()):
        stages.append(RedactOutputsStage(redactor, policies))
    stages.append(audit)
    return Feature(
        name="privacy",
        stages=[_Factory(s, s.place) for s in stages],
        recorders=recorders,
        close=audit.close,
    )
