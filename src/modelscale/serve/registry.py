"""The served model versions: each one's contract, batcher and backend, and routing by weight.

Requests without a version are spread over a model's versions by their weights (smooth weighted
round-robin: deterministic, and any window of requests follows the weights closely).

With an SLO (``slo.p99_ms``) a version's batches are sized and timed from the objective
(``modelscale.batching``), and it sheds load it cannot serve in time: a request that would
wait in a queue and is predicted (by the same service-time model that sizes the batches) to be
answered after the objective is refused at once with 503, so accepted requests keep their latency
while the excess is refused. With ``batching.adaptive: false`` the batches are fixed and the
prediction is the older one: queued and running rows times the measured wall time per row, over
the replicas, against half the objective.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from modelscale.batching import ServiceCurve, SloPolicy
from modelscale.config import DeploymentSpec, ModelSpec
from modelscale.errors import InvalidInput
from modelscale.model.artifact import ModelArtifact
from modelscale.serve.backend import Backend
from modelscale.serve.batcher import Batcher, Reply
from modelscale.serve.codec import DecodedRequest
from modelscale.serve.contract import ModelContract
from modelscale.serve.metrics import GaugeSource, Metrics
from modelscale.serve.pool import LocalBackend, PoolOptions
from modelscale.serve.protocol import ApiError
from modelscale.serve.text import TextFront

__all__ = ["ModelEntry", "ModelRegistry", "VersionRuntime", "local_backend"]

log = logging.getLogger("modelscale.serve")

_EWMA = 0.2
_QUEUE_SHARE = 0.5


def local_backend(name: str, version: str, artifact: ModelArtifact, spec: ModelSpec) -> Backend:
    """The default backend: ``spec.replicas`` replica processes on this machine."""
    if spec.autoscaling is not None:
        raise InvalidInput(
            f"models.{name}.autoscaling: the local backend runs a fixed number of replicas "
            f"(models.{name}.replicas); autoscaling needs the Ray backend (backend: ray, or "
            "--backend ray).",
            field=f"models.{name}.autoscaling",
        )
    options = PoolOptions(path=str(artifact.path), replicas=spec.replicas, threads=spec.threads)
    if spec.watchdog_s is not None:
        # A fixed watchdog: batches and pings alike, and idle replicas are pinged that often.
        options = replace(
            options,
            watchdog_s=spec.watchdog_s,
            watchdog_floor_s=spec.watchdog_s,
            ping_interval_s=min(options.ping_interval_s, spec.watchdog_s),
        )
    return LocalBackend(options, label=f"{name}:{version}")


class VersionRuntime:
    """One model version: its contract, queue, batcher and backend."""

    def __init__(
        self,
        *,
        name: str,
        version: str,
        artifact: ModelArtifact,
        spec: ModelSpec,
        metrics: Metrics,
        backend: Backend,
        text: TextFront | None = None,
        prior: tuple[float, float] | None = None,
    ) -> None:
        self.name, self.version, self.artifact = name, version, artifact
        self.contract = ModelContract.from_artifact(
            artifact,
            name=name,
            version=version,
            max_batch=spec.max_batch,
            serving={
                "replicas": spec.replicas,
                "threads": spec.threads,
                **({} if spec.max_wait_ms is None else {"max_wait_ms": spec.max_wait_ms}),
                "max_queue": spec.batching.max_queue,
                "batching": "slo" if spec.adaptive else "fixed",
                **({} if spec.slo.p99_ms is None else {"p99_ms": spec.slo.p99_ms}),
            },
            text=text,
        )
        self.slo_s = spec.slo.p99_ms / 1000 if spec.slo.p99_ms else None
        label = f"{name}:{version}"
        observe = metrics.batch_observer(name, version)

        self.policy: SloPolicy | None = None
        if spec.adaptive and self.slo_s is not None:
            wait_ms = spec.max_wait_ms
            self.policy = SloPolicy(
                self.slo_s,
                self.contract.max_batch,
                max_wait_s=None if wait_ms is None else wait_ms / 1000,
                curve=ServiceCurve(prior=prior, span=self.contract.max_batch),
            )
        curve = self.policy.service if self.policy is not None else None

        def on_batch(rows: int, infer_s: float, wall_s: float, overlap: float) -> None:
            observe(rows, infer_s, wall_s)
            if curve is None:
                self._learn(rows, wall_s / overlap)  # the fixed batcher's shedding rule's rate
            else:
                curve.observe(rows, wall_s / overlap)
                self._check_objective()

        self.backend = backend
        self.batcher = Batcher(
            backend,
            max_batch=self.contract.max_batch,
            max_wait_s=(spec.max_wait_ms or 0.0) / 1000,
            max_queue=spec.batching.max_queue,
            label=label,
            on_batch=on_batch,
            trim=self.contract.token_outputs,
            policy=self.policy,
            on_dispatch=metrics.dispatch_observer(name, version) if self.policy else None,
            on_prediction=metrics.prediction_observer(name, version) if self.policy else None,
        )
        self._warned = False
        backend.on_unavailable = lambda: self.batcher.fail_queued(
            ApiError(
                503, f"no replica of {label} is running; retry later.", headers={"retry-after": "1"}
            )
        )
        metrics.add_source(
            GaugeSource(
                model=name,
                version=version,
                queue_depth=lambda: self.batcher.queued,
                health=backend.health,
                batch_limit=self.policy.current_limit if self.policy is not None else None,
                service=self.policy.service.line if self.policy is not None else None,
            )
        )
        self._row_s: float | None = None
        """EWMA of wall seconds per row, batch sent to reply read (per batch in flight at its
        replica), from the batches run so far: on a busy machine this is slower than the
        replica's own inference time, and it is what a queued request waits for."""

    def _learn(self, rows: int, seconds: float) -> None:
        per_row = seconds / max(rows, 1)
        prev = self._row_s
        self._row_s = per_row if prev is None else prev + _EWMA * (per_row - prev)

    def _check_objective(self) -> None:
        """Say once when the objective is below what one row takes (then batches are of 1)."""
        policy = self.policy
        if self._warned or policy is None or policy.service.batches < 20:
            return
        if policy.below_one_row():
            self._warned = True
            log.warning(
                "%s:%s: the p99 objective (%.0f ms) is below what this machine needs: one row "
                "takes %.1f ms at the replica, and a request may wait for one batch before its "
                "own; serving batches of 1 and refusing what would be late",
                self.name,
                self.version,
                policy.objective_s * 1000,
                policy.service.mean(1) * 1000,
            )

    def predicted_wait_s(self) -> float:
        """Queued and running rows over the replicas' measured service rate."""
        if self._row_s is None:
            return 0.0
        ready = max(self.backend.health().ready, 1)
        running = self.backend.in_flight_rows()
        return (self.batcher.queued_rows + running) * self._row_s / ready

    @property
    def ready(self) -> bool:
        """Loaded once, and at least one replica is serving now."""
        return self.backend.serving()

    def submit(self, request: DecodedRequest) -> asyncio.Future[Reply]:
        """Queue a validated request (503 when not ready, full, or predicted to miss the SLO)."""
        if not self.ready:
            raise ApiError(
                503,
                f"model {self.name!r} version {self.version} has no replica ready yet; retry later.",
                headers={"retry-after": "1"},
            )
        if self.slo_s is not None and self._late(request.rows):
            raise ApiError(
                503,
                f"model {self.name!r} version {self.version} is at capacity: this request would "
                f"miss its {self.slo_s * 1000:.0f} ms p99 objective; retry later.",
                headers={"retry-after": "1"},
            )
        return self.batcher.submit(request)

    def _late(self, rows: int) -> bool:
        """Whether a request of ``rows`` arriving now is predicted to miss the objective."""
        assert self.slo_s is not None
        batcher = self.batcher
        # Only a queue can make a request late; a version with a free replica always takes it.
        if self.policy is not None:
            if batcher.queued_rows == 0 and batcher.in_flight < self.backend.health().ready:
                return False
            return batcher.predict_s(rows) > self.policy.objective_s
        # Half the objective is the queue's budget: the other half is the request's own batch
        # and noise.
        return batcher.queued_rows > 0 and self.predicted_wait_s() > _QUEUE_SHARE * self.slo_s

    async def start(self) -> None:
        """Start the replicas (waits until all have loaded) and the batch loop."""
        await self.backend.start()
        warmup = getattr(self.backend, "warmup_s", None)
        if self.policy is not None and warmup and warmup > self.policy.objective_s:
            log.warning(
                "%s:%s: the p99 objective (%.0f ms) is shorter than one row took at warm-up "
                "(%.0f ms): every request will be late; serving batches of 1",
                self.name,
                self.version,
                self.policy.objective_s * 1000,
                warmup * 1000,
            )
        self.batcher.start()

    async def stop(self) -> None:
        """Answer what is queued with 503 and stop the replicas."""
        await self.batcher.close()
        await self.backend.stop()


@dataclass
class ModelEntry:
    """A model name, its versions, and the weighted round-robin state over them."""

    name: str
    versions: dict[str, VersionRuntime]
    weights: dict[str, float]
    default: str
    """The version whose metadata answers GET /v2/models/{name} (highest weight, first listed)."""
    _current: dict[str, float] = field(default_factory=dict)

    def pick(self) -> VersionRuntime:
        """The version for an unversioned request (smooth weighted round-robin)."""
        total = 0.0
        best, best_score = self.default, float("-inf")
        for v, w in self.weights.items():
            if w <= 0:
                continue
            score = self._current.get(v, 0.0) + w
            self._current[v] = score
            total += w
            if score > best_score:
                best, best_score = v, score
        self._current[best] -= total
        return self.versions[best]


class ModelRegistry:
    """Every served model version, built from a deployment spec."""

    def __init__(
        self,
        spec: DeploymentSpec,
        *,
        metrics: Metrics,
        backends: Callable[[str, str, ModelArtifact, ModelSpec], Backend] | None = None,
    ) -> None:
        self.spec = spec
        self.metrics = metrics
        self.models: dict[str, ModelEntry] = {}
        self.texts: dict[str, TextFront] = {}
        """The tokenizer of each model served with text input."""
        make = backends or local_backend
        for name, mspec in spec.models.items():
            runtimes = {}
            artifacts = {
                v: ModelArtifact.load(vs.path, name=name) for v, vs in mspec.versions.items()
            }
            text = self._text(name, mspec, artifacts) if mspec.text is not None else None
            for v, artifact in artifacts.items():
                line = mspec.versions[v].batch_time_ms
                runtimes[v] = VersionRuntime(
                    name=name,
                    version=v,
                    artifact=artifact,
                    spec=mspec,
                    metrics=metrics,
                    backend=make(name, v, artifact, mspec),
                    text=text,
                    prior=None if line is None else (line[0] / 1000, line[1] / 1000),
                )
            weights = {v: vs.weight for v, vs in mspec.versions.items()}
            default = max(weights, key=lambda v: weights[v])
            self.models[name] = ModelEntry(name, runtimes, weights, default)
        self.loaded = False

    def _text(self, name: str, mspec: ModelSpec, artifacts: dict[str, ModelArtifact]) -> TextFront:
        """The model's tokenizer front; its versions must take the same token inputs."""
        assert mspec.text is not None  # the caller checked
        first, *rest = artifacts.items()
        for v, artifact in rest:
            if artifact.signature.inputs != first[1].signature.inputs:
                raise InvalidInput(
                    f"models.{name}.text: versions {first[0]} and {v} take different inputs; "
                    "the versions of a text model share its tokenizer, so they must take the "
                    "same token inputs.",
                    field=f"models.{name}.text",
                )
        text = TextFront(mspec.text, first[1].signature.inputs, model=name)
        self.texts[name] = text
        return text

    def runtimes(self) -> list[VersionRuntime]:
        """All version runtimes."""
        return [rt for m in self.models.values() for rt in m.versions.values()]

    def find(self, name: str, version: str | None) -> VersionRuntime:
        """The runtime for ``name`` (and ``version``), or a 404 naming what exists."""
        entry = self.models.get(name)
        if entry is None:
            raise ApiError(
                404,
                f"unknown model {name!r}; this server serves {', '.join(self.models)}.",
                field="model",
            )
        if version is None:
            return entry.versions[entry.default]
        rt = entry.versions.get(version)
        if rt is None:
            raise ApiError(
                404,
                f"model {name!r} has no version {version!r}; its versions are "
                f"{', '.join(entry.versions)}.",
                field="version",
            )
        return rt

    def versions(self, name: str) -> tuple[str, ...]:
        """The version labels of model ``name`` (404 if there is none)."""
        self.find(name, None)
        return tuple(self.models[name].versions)

    def route(self, name: str, version: str | None) -> VersionRuntime:
        """The runtime an inference request goes to (weighted when no version is given)."""
        if version is None and name in self.models:
            return self.models[name].pick()
        return self.find(name, version)

    @property
    def ready(self) -> bool:
        """Every version has loaded all its replicas once and has one serving now."""
        return self.loaded and all(rt.ready for rt in self.runtimes())

    async def start(self) -> None:
        """Start every version's replicas; on any failure, stop the ones started and re-raise."""
        started: list[VersionRuntime] = []
        try:
            for rt in self.runtimes():
                await rt.start()
                started.append(rt)
        except BaseException:
            for rt in started:
                await rt.stop()
            raise
        self.loaded = True

    async def stop(self) -> None:
        """Stop every version."""
        for rt in self.runtimes():
            await rt.stop()
