"""Settings, read once from the environment (prefix ``MODELSCALE_``), and the deployment spec.

``DeploymentSpec`` is the schema of deploy.yaml: what ``serve`` runs, what ``plan`` writes and what
``check`` inspects. It is validated at load time with errors that name the bad key path, e.g.
``models.digits.versions.1.path: file does not exist``.
"""

from __future__ import annotations

import functools
import itertools
import math
import pathlib
import re
from typing import Any, Literal

import yaml
from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from modelscale.errors import InvalidInput

__all__ = [
    "DEFAULT_LATENCY_BUCKETS_MS",
    "EXPERIMENT_BUILTIN_METRICS",
    "RAY_FRONT",
    "RAY_IMPORT_PATH",
    "AlertsSpec",
    "AuthSpec",
    "AutoscalingSpec",
    "BatchingSpec",
    "DeploymentSpec",
    "ExperimentSpec",
    "GuardrailSpec",
    "LatencySloSpec",
    "LogSpec",
    "ModelPrivacySpec",
    "ModelSpec",
    "MonitorSpec",
    "OutcomeMetricSpec",
    "PolicyAction",
    "PrivacySpec",
    "RaySpec",
    "RetentionSpec",
    "ServerSpec",
    "Settings",
    "ShadowSpec",
    "SloSpec",
    "StoreSpec",
    "TextSpec",
    "VersionSpec",
    "default_db_url",
    "duration_s",
    "get_settings",
    "load_deployment",
    "ray_deployment_name",
]


def default_db_url() -> str:
    """The default knowledge base: a SQLite file under the working directory."""
    return f"sqlite:///{pathlib.Path.cwd() / '.modelscale' / 'modelscale.db'}"


class Settings(BaseSettings):
    """modelscale's settings; each field can be set as ``MODELSCALE_<NAME>``."""

    model_config = SettingsConfigDict(env_prefix="MODELSCALE_", extra="ignore")

    db: str = Field(
        default_factory=default_db_url, description="SQLAlchemy URL of the knowledge base"
    )
    cache_dir: pathlib.Path = Field(
        default_factory=lambda: pathlib.Path.home() / ".cache" / "modelscale",
        description="Where built examples are cached",
    )
    db_connect_timeout_s: float = Field(default=5.0, gt=0)
    log_dir: str = Field(
        default_factory=lambda: str(pathlib.Path.cwd() / ".modelscale" / "logs"),
        description="Where servers write their request logs unless deploy.yaml's log.path says "
        "otherwise (a directory or a filesystem URL)",
    )
    secret_file: pathlib.Path | None = Field(
        default=None,
        description="The server secret (API key hashes, privacy hashes) unless deploy.yaml's "
        "server.secret_file says otherwise",
    )


@functools.cache
def get_settings() -> Settings:
    """The process-wide settings (read from the environment on first use)."""
    return Settings()


# -- the deployment spec (deploy.yaml) ------------------------------------------------------------

DEFAULT_LATENCY_BUCKETS_MS = (
    1.0, 2.5, 5.0, 10.0, 25.0, 50.0, 75.0, 100.0, 150.0, 200.0, 250.0, 300.0, 500.0, 750.0,
    1000.0, 2500.0, 5000.0, 10000.0,
)  # fmt: skip
"""Request latency histogram buckets: dense around the usual SLOs (50, 100, 200, 300, 500 ms)."""

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$")


class _Strict(BaseModel):
    # A typo in deploy.yaml ('max_bach') must fail loudly, never silently fall back to a default.
    model_config = ConfigDict(extra="forbid", frozen=True)


class VersionSpec(_Strict):
    """One version of a model: its ONNX file and its share of the model's traffic."""

    path: pathlib.Path = Field(description="ONNX file; relative paths are relative to deploy.yaml")
    weight: float = Field(
        default=1.0, ge=0, description="Share of unversioned requests (0 = only explicit requests)"
    )
    batch_time_ms: tuple[float, float] | None = Field(
        default=None,
        description="With a p99 objective: the batch time the batcher starts from, [ms per batch, "
        "ms per row] at one replica (default: `modelscale serve` fits it to this machine's stored "
        "profile of the file, else the first batches tell)",
    )

    @field_validator("batch_time_ms")
    @classmethod
    def _line(cls, value: tuple[float, float] | None) -> tuple[float, float] | None:
        if value is not None:
            a, b = value
            if not (math.isfinite(a) and math.isfinite(b) and a >= 0 and b > 0 and a + b < 3.6e6):
                raise ValueError(
                    f"must be [ms per batch >= 0, ms per row > 0], finite; got {list(value)}"
                )
        return value

    @field_validator("path")
    @classmethod
    def _exists(cls, value: pathlib.Path, info: ValidationInfo) -> pathlib.Path:
        base = (info.context or {}).get("base_dir")
        path = value.expanduser()
        if not path.is_absolute() and base is not None:
            path = pathlib.Path(base) / path
        if not (info.context or {}).get("check_files", True):
            return path  # a spec for other machines (a container, a cluster's nodes)
        if not path.exists():
            raise ValueError(f"file does not exist ({path})")
        if path.is_dir():
            raise ValueError(f"is a directory, expected an .onnx file ({path})")
        return path.resolve()


class TextSpec(_Strict):
    """Text in: clients send strings (V2 BYTES) and the server runs the model's tokenizer."""

    tokenizer: pathlib.Path = Field(
        description="A tokenizers tokenizer.json (what a Hugging Face fast tokenizer saves); "
        "relative to deploy.yaml"
    )
    input: str = Field(
        default="text",
        min_length=1,
        max_length=128,
        description="The name of the BYTES input clients send (one string per row)",
    )
    max_length: int = Field(
        default=128, ge=1, le=1_000_000, description="Tokens per text at most (longer ones are cut)"
    )
    max_text_kb: float = Field(
        default=64.0,
        gt=0,
        le=1024 * 1024,
        description="The longest string taken, in KiB of UTF-8; longer ones are answered 413",
    )

    @field_validator("tokenizer")
    @classmethod
    def _tokenizer_file(cls, value: pathlib.Path, info: ValidationInfo) -> pathlib.Path:
        base = (info.context or {}).get("base_dir")
        path = value.expanduser()
        if not path.is_absolute() and base is not None:
            path = pathlib.Path(base) / path
        if not (info.context or {}).get("check_files", True):
            return path
        if path.is_dir() and (path / "tokenizer.json").is_file():
            path = path / "tokenizer.json"  # the folder a tokenizer was saved to
        if not path.is_file():
            raise ValueError(f"file does not exist ({path}); expected a tokenizer.json")
        return path.resolve()


PolicyAction = Literal["keep", "drop", "mask", "hash", "redact"]
"""What happens to a field before anything stores it: kept as is, left out, masked (all but the
last 4 characters), replaced by its HMAC-SHA256 under the server secret (equal values still
join), or with the personal data found in it replaced by ``<KIND>``."""

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)\s*$")
_DURATION_S = {"s": 1, "m": 60, "h": 3_600, "d": 86_400, "w": 604_800}


def duration_s(text: str) -> float:
    """Seconds in a duration such as '90s', '30m', '12h', '7d' or '2w' (ValueError otherwise)."""
    m = _DURATION.match(text)
    if not m or float(m.group(1)) <= 0:
        raise ValueError(
            f"{text!r} is not a duration: expected a positive number with a unit s, m, h, d or w "
            "(e.g. 30d)"
        )
    return float(m.group(1)) * _DURATION_S[m.group(2)]


class ModelPrivacySpec(_Strict):
    """What of one model's requests may be stored, field by field (see ``PolicyAction``)."""

    inputs: dict[str, PolicyAction] = Field(
        default_factory=dict,
        description="Per input, in logged payloads (default: redact text, keep numbers)",
    )
    outputs: dict[str, PolicyAction] = Field(
        default_factory=dict, description="Per output, in logged payloads (default: drop)"
    )
    parameters: dict[str, PolicyAction] = Field(
        default_factory=dict,
        description="Per request parameter, before any feature sees it (default: redact)",
    )
    headers: dict[str, PolicyAction] = Field(
        default_factory=dict,
        description="Per request header, before any feature sees it (unlisted ones are never "
        "stored)",
    )
    outcomes: dict[str, PolicyAction] = Field(
        default_factory=dict,
        description="Per field of outcome and feedback bodies, at any depth (default: a value "
        "that is wholly personal data is hashed, personal data inside text redacted)",
    )

    @field_validator("headers")
    @classmethod
    def _lower(cls, value: dict[str, str]) -> dict[str, str]:
        return {k.lower(): v for k, v in value.items()}


class RetentionSpec(_Strict):
    """How long each class of stored data is kept; the purge deletes what is older."""

    requests: str = Field(default="30d", description="Request log rows")
    payloads: str = Field(default="7d", description="Logged (redacted) request payloads")
    feedback: str = Field(default="90d", description="Feedback labels and outcomes")
    audit: str = Field(default="400d", description="The audit log (kept longest)")
    purge_every: str = Field(default="1h", description="How often the server purges")

    @field_validator("requests", "payloads", "feedback", "audit", "purge_every")
    @classmethod
    def _duration(cls, value: str) -> str:
        duration_s(value)
        return value

    def seconds(self, what: str) -> float:
        """The TTL (or interval) ``what`` in seconds."""
        return duration_s(getattr(self, what))


class PrivacySpec(_Strict):
    """Server-wide detection settings and retention; per-model policies are under each model."""

    detect: tuple[str, ...] | None = Field(
        default=None, description="Kinds of personal data to find (default: every built-in kind)"
    )
    patterns: dict[str, str] = Field(
        default_factory=dict, description="More kinds: name -> regular expression"
    )
    min_score: float = Field(
        default=0.5, ge=0, le=1, description="Findings scored lower (after context) are ignored"
    )
    retention: RetentionSpec = Field(default_factory=RetentionSpec)


DEFAULT_MAX_BATCH = 8
DEFAULT_MAX_WAIT_MS = 5.0
ADAPTIVE_MAX_BATCH = 64
"""The batch bound of a model with a latency objective and no max_batch: the objective, not this,
decides each batch."""


class BatchingSpec(_Strict):
    """Dynamic batching of one model version's requests.

    With a p99 objective (``slo.p99_ms``) and ``adaptive`` (the default), the server chooses each
    batch's size and wait from the objective and the service time it measures; ``max_batch`` and
    ``max_wait_ms`` are then only bounds (unset: 64 rows, no wait bound). Without an objective a
    batch closes at ``max_batch`` rows (8) or ``max_wait_ms`` (5 ms) after its first request.
    """

    max_batch: int | None = Field(
        default=None,
        ge=1,
        le=4096,
        description="Rows (axis 0 items) per batch at most (default 8; 64 with a p99 objective)",
    )
    max_wait_ms: float | None = Field(
        default=None,
        ge=0,
        le=60_000,
        description="How long a batch waits after its first request (default 5; with a p99 "
        "objective chosen per batch, this bounds it)",
    )
    max_queue: int = Field(
        default=256, ge=1, le=1_000_000, description="Queued requests before 503 + Retry-After"
    )
    adaptive: bool = Field(
        default=True,
        description="With a p99 objective, choose each batch's size and wait from it; false keeps "
        "max_batch / max_wait_ms fixed",
    )

    def limit(self, p99_ms: float | None) -> int:
        """The most rows per batch (and per request)."""
        if self.max_batch is not None:
            return self.max_batch
        return ADAPTIVE_MAX_BATCH if p99_ms is not None and self.adaptive else DEFAULT_MAX_BATCH

    def wait_ms(self, p99_ms: float | None) -> float | None:
        """The fixed wait, or with an adaptive objective its bound (None: the objective's)."""
        if self.max_wait_ms is not None:
            return self.max_wait_ms
        return None if p99_ms is not None and self.adaptive else DEFAULT_MAX_WAIT_MS


def _objective(value: float | None) -> float | None:
    if value is not None and not 0 < value < 1:
        raise ValueError(f"must be a fraction strictly between 0 and 1 (e.g. 0.999); got {value}")
    return value


class LatencySloSpec(_Strict):
    """A latency objective: ``objective`` of answered requests take at most ``threshold_ms``.

    ``p99_ms: 100`` is accepted for ``threshold_ms: 100`` (with ``objective`` 0.99 by default).
    """

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    threshold_ms: float = Field(
        gt=0,
        le=3_600_000,
        validation_alias=AliasChoices("threshold_ms", "p99_ms"),
        description="Latency a good request stays within",
    )
    objective: float = Field(
        default=0.99, description="Share of answered requests within threshold_ms, in (0, 1)"
    )

    _check_objective = field_validator("objective")(_objective)


class SloSpec(_Strict):
    """Service-level objectives of a model.

    ``p99_ms`` is the latency the server sheds load to keep (503 when a request is predicted to
    miss it) and ``plan`` plans for. ``availability`` and ``latency`` are the objectives whose error
    budget the server tracks: burn rates over the multi-window pairs of the SRE workbook, alerts
    when a pair burns too fast. Example::

        slo: {availability: 0.999, latency: {threshold_ms: 100, objective: 0.99}, window_days: 28}
    """

    p99_ms: float | None = Field(default=None, gt=0, description="p99 latency objective")
    target_rps: float | None = Field(default=None, gt=0, description="Requests/s to plan for")
    availability: float | None = Field(
        default=None, description="Share of requests not answered 5xx, in (0, 1), e.g. 0.999"
    )
    latency: LatencySloSpec | None = Field(
        default=None, description="Share of answered requests within a latency threshold"
    )
    window_days: float = Field(
        default=28, gt=0, le=366, description="The period the error budget is spent over"
    )
    min_events: int = Field(
        default=100,
        ge=1,
        le=10_000_000,
        description="Requests a long alert window must hold before it may alert (a trickle of "
        "traffic cannot page)",
    )
    min_bad_events: int = Field(
        default=10,
        ge=1,
        le=10_000_000,
        description="Bad requests a long alert window must hold before it may alert (a couple of "
        "errors among a young server's first requests cannot page)",
    )

    _check_availability = field_validator("availability")(_objective)

    def objectives(self) -> dict[str, float]:
        """'availability' / 'latency' -> objective, for the objectives set."""
        out = {}
        if self.availability is not None:
            out["availability"] = self.availability
        if self.latency is not None:
            out["latency"] = self.latency.objective
        return out


class MonitorSpec(_Strict):
    """Drift, data quality and accuracy of a model's traffic against its baseline.

    The server folds every answered request into tumbling windows (``window_s``, or earlier at
    ``window_requests`` when set) of sketches and tests each closed window against the model
    version's baseline (``modelscale monitor baseline``). Example::

        monitor: {window_s: 300, window_requests: 1000, alpha: 0.01, min_effect: 0.1}

    Windows are by time unless ``window_requests`` is set: a window's sketches cost the same
    whatever it holds, while every window is a run in the knowledge base and a file, and
    1,000-request windows at 500 req/s would be 43,200 of each a day.
    """

    enabled: bool = Field(default=True, description="Watch drift and accuracy (needs a baseline)")
    baseline: str | None = Field(
        default=None,
        min_length=1,
        description="The baseline: a run id or a --name given to `monitor baseline`; default: "
        "the newest baseline of the served version, else of the model's name",
    )
    window_s: float = Field(
        default=300, ge=1, le=86_400, description="A window closes after this many seconds"
    )
    window_requests: int | None = Field(
        default=None,
        ge=1,
        le=100_000_000,
        description="... or once it holds this many requests (default: by time only)",
    )
    min_rows: int = Field(
        default=100, ge=2, le=10_000_000, description="Rows a window needs before it is tested"
    )
    alpha: float = Field(
        default=0.01, gt=0, lt=1, description="False discovery rate across features (BH)"
    )
    min_effect: float = Field(
        default=0.1,
        ge=0,
        le=100,
        description="Smallest effect that is drift: normalised Wasserstein (numeric features), "
        "Jensen-Shannon distance (categorical)",
    )
    domain_classifier: bool = Field(
        default=True, description="Also test all numeric features together (domain classifier)"
    )
    domain_every_s: float = Field(
        default=60,
        ge=0,
        le=86_400,
        description="The domain classifier (about 0.3 s of CPU) runs on a window at most this "
        "often per version; windows between say it was skipped",
    )
    label_ttl_s: float = Field(
        default=86_400,
        gt=0,
        le=90 * 86_400,
        description="Feedback for a request older than this is refused (404, counted)",
    )
    max_pending: int = Field(
        default=1_000_000,
        ge=1,
        le=100_000_000,
        description="Predictions kept for feedback; the oldest go first beyond this",
    )
    accuracy_drop: float = Field(
        default=0.05,
        gt=0,
        le=1,
        description="Alert when a window's accuracy interval lies this far below the "
        "baseline's accuracy",
    )


class AutoscalingSpec(_Strict):
    """Replicas that follow the load (Ray backend): Ray adds and removes replicas of a version."""

    min_replicas: int = Field(ge=1, le=10_000, description="Replicas at the quietest")
    max_replicas: int = Field(ge=1, le=10_000, description="Replicas at the busiest")
    target_ongoing_batches: float = Field(
        default=1.0, gt=0, description="Batches in flight per replica that Ray scales to keep"
    )

    @model_validator(mode="after")
    def _ordered(self) -> AutoscalingSpec:
        if self.max_replicas < self.min_replicas:
            raise ValueError(
                f"max_replicas ({self.max_replicas}) must be >= min_replicas ({self.min_replicas})"
            )
        return self


EXPERIMENT_BUILTIN_METRICS = ("errors", "latency", "p99", "agreement", "accuracy", "mae")
"""Metrics every experiment measures without outcomes: per request, from the server itself
(``accuracy``/``mae`` from monitor feedback)."""

_UNIT = re.compile(
    r"^(request|header:[A-Za-z0-9!#$%&'*+.^_`|~\-]{1,128}|parameter:[A-Za-z0-9_.\-]{1,128})$"
)
_ARMS = ("control", "treatment")
_DEFAULT_TOLERANCE = {
    "errors": 0.01,
    "latency": 0.2,
    "p99": 0.01,
    "agreement": 0.9,
    "accuracy": 0.02,
    "mae": 0.1,
}


class OutcomeMetricSpec(_Strict):
    """An engagement or business metric the client reports (``POST .../outcome``)."""

    name: str = Field(pattern=r"^[A-Za-z][A-Za-z0-9_.\-]{0,63}$")
    kind: Literal["mean", "proportion"] = Field(
        default="mean",
        description="mean: the sum of a unit's values (revenue, clicks per user); proportion: "
        "whether a unit had any value > 0 (converted or not)",
    )
    direction: Literal["increase", "decrease"] = Field(
        default="increase", description="Which way is better"
    )


class GuardrailSpec(_Strict):
    """A metric the treatment must not harm: beyond ``tolerance`` it is rolled back or stopped.

    Tolerances (defaults): ``errors`` absolute share of 5xx answers (0.01); ``latency`` relative
    rise of the geometric-mean latency (0.2); ``p99`` absolute share of requests over the p99
    objective (0.01); ``agreement`` the least share of rows whose outputs agree with the
    control's (0.9); ``accuracy`` absolute drop (0.02); ``mae`` relative rise (0.1); an outcome
    metric: relative harm (default 0.05).
    """

    metric: str = Field(min_length=1)
    tolerance: float | None = Field(default=None, ge=0, le=1e6)

    def limit(self) -> float:
        """The tolerance, or the metric's default."""
        if self.tolerance is not None:
            return self.tolerance
        return _DEFAULT_TOLERANCE.get(self.metric, 0.05)


class ShadowSpec(_Strict):
    """Copies of requests sent to the other arm after the answer, to compare outputs."""

    sample: float = Field(
        default=1.0,
        gt=0,
        le=1,
        description="Share of requests copied (shadow: to the treatment; "
        "canary and ab: treatment requests copied to the control for the agreement guardrail)",
    )
    max_in_flight: int = Field(
        default=64,
        ge=1,
        le=100_000,
        description="Rows of copies queued or running at most; beyond, copies are dropped and "
        "counted, never slowing the answered requests",
    )


class ExperimentSpec(_Strict):
    """An A/B test, shadow or canary between two versions of a model, decided in the server.

    Example::

        experiment:
          kind: canary                      # ab | shadow | canary
          arms: {control: "1", treatment: "2"}
          unit: header:X-User-Id            # | parameter:user | request
          metrics: [click, {name: revenue, kind: mean}]
          guardrails: [errors, latency, p99, agreement]
          ramp: [1, 5, 25, 50, 100]

    Unversioned requests are assigned by a hash of the unit key salted with the experiment's name:
    the same unit gets the same arm on every server and after restarts, and a canary's ramp only
    moves units from control to treatment. Requests naming a version bypass the experiment.
    """

    name: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$",
        description="Identifies the experiment in the knowledge base and salts the assignment "
        "(default: MODEL-CONTROL-vs-TREATMENT-KIND); a new name starts afresh",
    )
    kind: Literal["ab", "shadow", "canary"]
    arms: dict[str, str] = Field(description="control and treatment -> version labels")
    split: dict[str, float] | None = Field(
        default=None, description="ab: percent of units per arm, summing to 100 (default 50/50)"
    )
    unit: str = Field(
        default="request",
        description="What is randomised: request, header:NAME or parameter:NAME",
    )
    unit_required: bool = Field(
        default=False,
        description="Answer 400 to a request without the unit (default: assign it by request, "
        "counted in modelscale_experiment_missing_unit_total)",
    )
    metrics: tuple[str | OutcomeMetricSpec, ...] = Field(
        default=(),
        description="Outcome metrics (the first is primary); built-ins (errors, latency, p99, "
        "agreement, accuracy, mae) may be named too",
    )
    guardrails: tuple[str | GuardrailSpec, ...] | None = Field(
        default=None,
        description="Default: errors, latency, p99 and agreement (canary), errors and latency "
        "(ab), none (shadow)",
    )
    alpha: float = Field(default=0.05, gt=0, lt=0.5, description="Error rate of every test")
    planned_units: int = Field(
        default=10_000,
        ge=10,
        le=10**9,
        description="Units per comparison where the tests are tuned to be tightest",
    )
    min_units: int = Field(
        default=100, ge=2, le=10**7, description="Units each arm needs before any decision"
    )
    sequential: Literal["open", "horizon"] = Field(
        default="open",
        description="ab: the primary metric's test. 'open' runs as long as it is watched "
        "(always valid, no end); 'horizon' ends at planned_units and is sharper there (about "
        "95% of a fixed-horizon test's power, against about 65%). Guardrails are always open",
    )
    ramp: tuple[float, ...] = Field(
        default=(1, 5, 25, 50, 100),
        description="canary: the treatment's percent of units, step by step, ending at 100",
    )
    step_min_units: int = Field(
        default=200, ge=1, le=10**8, description="canary: treatment requests a step needs"
    )
    step_min_s: float = Field(
        default=60, ge=0, le=30 * 86_400, description="canary: seconds a step lasts at least"
    )
    stop_on_harm: bool = Field(
        default=True, description="ab: send every unit to the control when a guardrail breaks"
    )
    shadow: ShadowSpec = Field(default_factory=ShadowSpec)
    compare: tuple[str, ...] | None = Field(
        default=None,
        description="Outputs compared for agreement (default: every output); e.g. a sentence "
        "embedding without the per-token states beside it",
    )
    agreement_cosine: float = Field(
        default=0.99,
        gt=-1,
        le=1,
        description="Outputs that are not classes agree when their cosine similarity is >= this",
    )
    max_units: int = Field(
        default=1_000_000,
        ge=100,
        le=10**8,
        description="Units (and request ids) remembered for outcomes; the oldest go first",
    )
    outcome_ttl_s: float = Field(
        default=7 * 86_400,
        gt=0,
        le=365 * 86_400,
        description="Outcomes later than this are refused",
    )
    cuped: bool = Field(
        default=False,
        description="Adjust outcome metrics by the unit's pre-period value ('pre' in an outcome)",
    )

    @field_validator("unit")
    @classmethod
    def _unit(cls, value: str) -> str:
        if not _UNIT.match(value):
            raise ValueError(f"must be 'request', 'header:NAME' or 'parameter:NAME'; got {value!r}")
        return value

    @field_validator("compare")
    @classmethod
    def _compare(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if value is not None and (not value or len(set(value)) != len(value)):
            raise ValueError(f"must list output names, each once; got {list(value)}")
        return value

    @field_validator("arms")
    @classmethod
    def _arms(cls, value: dict[str, str]) -> dict[str, str]:
        if sorted(value) != sorted(_ARMS):
            raise ValueError(
                f"must name exactly the arms control and treatment; got {', '.join(value) or 'none'}"
            )
        if value["control"] == value["treatment"]:
            raise ValueError(f"control and treatment are both version {value['control']!r}")
        return value

    @field_validator("ramp")
    @classmethod
    def _ramp(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        if not value or value[-1] != 100:
            raise ValueError(f"must end at 100 (percent); got {list(value)}")
        if any(not 0 < v <= 100 for v in value) or any(
            a >= b for a, b in itertools.pairwise(value)
        ):
            raise ValueError(f"must rise strictly within (0, 100]; got {list(value)}")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> ExperimentSpec:
        if self.split is not None:
            if self.kind != "ab":
                raise ValueError(
                    f"split is for kind ab; a {self.kind} sets the treatment's share by "
                    + ("its ramp" if self.kind == "canary" else "sending it copies (shadow.sample)")
                )
            if sorted(self.split) != sorted(_ARMS):
                raise ValueError(
                    f"split must give control and treatment; got {', '.join(self.split)}"
                )
            if any(v < 0 for v in self.split.values()):
                raise ValueError(f"split shares must be >= 0; got {self.split}")
            total = sum(self.split.values())
            if abs(total - 100) > 1e-6:
                raise ValueError(f"split must sum to 100 (percent); got {total:g}")
            if min(self.split.values()) == 0:
                raise ValueError("split gives an arm 0%: nothing to compare")
        names = [m if isinstance(m, str) else m.name for m in self.metrics]
        if len(set(names)) != len(names):
            raise ValueError(f"metrics are named twice: {names}")
        known = set(names) | set(EXPERIMENT_BUILTIN_METRICS)
        for g in self.guardrail_specs():
            if g.metric not in known:
                raise ValueError(
                    f"guardrail {g.metric!r} is not a metric: expected one of "
                    f"{', '.join(sorted(known))}"
                )
        return self

    def outcome_metrics(self) -> list[OutcomeMetricSpec]:
        """The outcome metrics, as specs (built-in names left out)."""
        out = []
        for m in self.metrics:
            spec = OutcomeMetricSpec(name=m) if isinstance(m, str) else m
            if spec.name not in EXPERIMENT_BUILTIN_METRICS:
                out.append(spec)
        return out

    def guardrail_specs(self) -> list[GuardrailSpec]:
        """The guardrails, as specs (the kind's defaults when unset)."""
        if self.guardrails is None:
            names = {
                "canary": ("errors", "latency", "p99", "agreement"),
                "ab": ("errors", "latency"),
                "shadow": (),
            }[self.kind]
            return [GuardrailSpec(metric=n) for n in names]
        return [GuardrailSpec(metric=g) if isinstance(g, str) else g for g in self.guardrails]

    def treatment_share(self) -> float:
        """ab: the treatment's share of units (0-1)."""
        return (self.split or {"treatment": 50.0})["treatment"] / 100


class ModelSpec(_Strict):
    """A served model: its versions and how each version is batched and replicated."""

    versions: dict[str, VersionSpec] = Field(min_length=1)
    batching: BatchingSpec = Field(default_factory=BatchingSpec)
    replicas: int = Field(default=1, ge=1, le=10_000, description="Replicas per version")
    threads: int = Field(default=1, ge=1, le=256, description="Intra-op threads per replica")
    slo: SloSpec = Field(default_factory=SloSpec)
    text: TextSpec | None = Field(
        default=None, description="Serve with text input: the tokenizer runs in the server"
    )
    privacy: ModelPrivacySpec = Field(
        default_factory=ModelPrivacySpec,
        description="What of its requests may be stored, field by field",
    )
    monitor: MonitorSpec = Field(default_factory=MonitorSpec)
    experiment: ExperimentSpec | None = Field(
        default=None, description="An A/B test, shadow or canary between two of its versions"
    )
    autoscaling: AutoscalingSpec | None = Field(
        default=None, description="Ray backend only: replicas between a minimum and a maximum"
    )
    watchdog_s: float | None = Field(
        default=None,
        gt=0,
        le=3_600,
        description="A replica that has not answered a batch or an idle check within this long is "
        "replaced; default: derived from the service time it measures (at least 5 s)",
    )

    @property
    def max_batch(self) -> int:
        """Rows per batch (and per request) at most."""
        return self.batching.limit(self.slo.p99_ms)

    @property
    def adaptive(self) -> bool:
        """Whether the batcher chooses batch sizes and waits from the p99 objective."""
        return self.batching.adaptive and self.slo.p99_ms is not None and self.max_batch > 1

    @property
    def max_wait_ms(self) -> float | None:
        """The fixed batch wait (ms); adaptive: its bound, or None when only the objective bounds it."""
        return self.batching.wait_ms(self.slo.p99_ms)

    @field_validator("versions")
    @classmethod
    def _version_labels(cls, value: dict[str, VersionSpec]) -> dict[str, VersionSpec]:
        for label in value:
            if not _NAME.match(label):
                raise ValueError(
                    f"version label {label!r} must be letters, digits, '_', '.' or '-' (URL-safe)"
                )
        if not any(v.weight > 0 for v in value.values()):
            raise ValueError("at least one version needs a weight > 0")
        return value

    @model_validator(mode="after")
    def _experiment_arms(self) -> ModelSpec:
        exp = self.experiment
        if exp is not None:
            for arm, version in exp.arms.items():
                if version not in self.versions:
                    raise ValueError(
                        f"experiment.arms.{arm} names version {version!r}, which is not served; "
                        f"the versions are {', '.join(self.versions)}"
                    )
        return self


class ServerSpec(_Strict):
    """The HTTP front."""

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    max_body_mb: float = Field(default=64.0, gt=0, description="Larger request bodies get 413")
    body_memory_mb: float = Field(
        default=256.0,
        gt=0,
        description="Large request bodies (over 1 MiB) being read or decoded at once, at most; "
        "beyond, 503 with Retry-After",
    )
    max_header_kb: float = Field(
        default=64.0,
        gt=0,
        le=1024 * 1024,
        description="The request line and headers together; larger heads get 431",
    )
    header_timeout_s: float = Field(
        default=10.0, gt=0, description="From a request's first byte to its last header; then 408"
    )
    body_timeout_s: float = Field(
        default=30.0, gt=0, description="The longest pause between two pieces of a body; then 408"
    )
    idle_timeout_s: float = Field(
        default=30.0,
        gt=0,
        description="A connection with no request in progress is closed after this long",
    )
    drain_timeout_s: float = Field(
        default=30.0, gt=0, description="On SIGTERM, how long in-flight requests may finish"
    )
    latency_buckets_ms: tuple[float, ...] = Field(default=DEFAULT_LATENCY_BUCKETS_MS, min_length=1)

    secret_file: pathlib.Path | None = Field(
        default=None,
        description="The server secret, from which the API key hashes' pepper is derived "
        "(`modelscale keys create` makes one); relative to deploy.yaml; default: "
        "MODELSCALE_SECRET_FILE, else the file 'secret' beside auth.keys_file",
    )
    tls_cert: pathlib.Path | None = Field(
        default=None,
        description="Serve HTTPS with this certificate (chain), PEM; relative to deploy.yaml; "
        "needs tls_key",
    )
    tls_key: pathlib.Path | None = Field(
        default=None, description="The private key of tls_cert, PEM; relative to deploy.yaml"
    )

    @field_validator("latency_buckets_ms")
    @classmethod
    def _increasing(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        if any(b <= 0 for b in value) or list(value) != sorted(set(value)):
            raise ValueError("must be positive and strictly increasing")
        return value

    @field_validator("secret_file", "tls_cert", "tls_key")
    @classmethod
    def _files(cls, value: pathlib.Path | None, info: ValidationInfo) -> pathlib.Path | None:
        return _existing_file(value, info)

    @model_validator(mode="after")
    def _tls_pair(self) -> ServerSpec:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError(
                "'tls_cert' and 'tls_key' go together: give both (the certificate and its "
                "private key) to serve HTTPS, or neither to serve HTTP"
            )
        return self


def _existing_file(
    value: pathlib.Path | None, info: ValidationInfo, hint: str = ""
) -> pathlib.Path | None:
    """``value`` resolved against deploy.yaml's directory; it must be a file (unless the spec
    is for other machines)."""
    if value is None:
        return None
    base = (info.context or {}).get("base_dir")
    path = value.expanduser()
    if not path.is_absolute() and base is not None:
        path = pathlib.Path(base) / path
    if not (info.context or {}).get("check_files", True):
        return path
    if not path.is_file():
        raise ValueError(f"file does not exist ({path}){hint}")
    return path.resolve()


class AuthSpec(_Strict):
    """API keys: every route but the health probes and public pages needs a bearer key.

    Requests send ``Authorization: Bearer <key>``. ``api_key_file`` holds one key, allowed
    everything; ``keys_file`` holds scoped keys, stored hashed (``modelscale keys create``), and
    needs the server secret (``server.secret_file``). Both may be given: either kind of key is
    then taken.
    """

    api_key_file: pathlib.Path | None = None
    keys_file: pathlib.Path | None = Field(
        default=None,
        description="JSON keys file of scoped, hashed keys (`modelscale keys create`); "
        "relative to deploy.yaml",
    )

    @field_validator("keys_file")
    @classmethod
    def _keys_file(cls, value: pathlib.Path | None, info: ValidationInfo) -> pathlib.Path | None:
        hint = "; make it with `modelscale keys create NAME --scope infer --keys-file FILE`"
        return _existing_file(value, info, hint)

    @field_validator("api_key_file")
    @classmethod
    def _readable(cls, value: pathlib.Path | None, info: ValidationInfo) -> pathlib.Path | None:
        if value is None:
            return None
        base = (info.context or {}).get("base_dir")
        path = value.expanduser()
        if not path.is_absolute() and base is not None:
            path = pathlib.Path(base) / path
        if not (info.context or {}).get("check_files", True):
            return path
        if not path.is_file():
            raise ValueError(f"file does not exist ({path})")
        if not path.read_text(encoding="utf-8", errors="replace").strip():
            raise ValueError(f"file is empty, expected the API key on its first line ({path})")
        return path.resolve()


class RaySpec(_Strict):
    """How the Ray backend runs: the cluster, and how many batches each replica holds at once."""

    address: str | None = Field(
        default=None,
        description="Ray cluster address (host:port, ray://host:port or 'auto'); none starts a "
        "local Ray on this machine",
    )
    max_ongoing_batches: int = Field(
        default=1,
        ge=1,
        le=64,
        description="Batches in flight per replica. 1: a batch waits in the front, still "
        "filling, until a replica is free, so Ray is called as seldom as the load allows; 2 "
        "hides the trip to the replica behind the batch it runs, at one more call per batch "
        "when the replicas are busy",
    )
    front_replicas: int = Field(
        default=1, ge=1, le=1_000, description="Front (ingress) replicas of a Ray Serve application"
    )
    num_cpus: int | None = Field(
        default=None,
        ge=1,
        le=100_000,
        description="CPUs of the local Ray started when no address is given (default: this "
        "machine's cores)",
    )

    @model_validator(mode="after")
    def _cpus_only_for_a_local_ray(self) -> RaySpec:
        if self.num_cpus is not None and self.address is not None:
            raise ValueError(
                "num_cpus sets the CPUs of a local Ray started here; a cluster at 'address' "
                "has its own (set them with `ray start --num-cpus`)"
            )
        return self


class LogSpec(_Strict):
    """The request log: one record per request (or a sampled share; errors always) in Parquet."""

    enabled: bool = Field(default=True, description="Write the request log")
    path: str | None = Field(
        default=None,
        min_length=1,
        description="A directory (relative to deploy.yaml, or the working directory for `serve "
        "MODEL`) or a filesystem URL such as s3://bucket/prefix; default: MODELSCALE_LOG_DIR",
    )
    sample: float = Field(
        default=1.0,
        ge=0,
        le=1,
        description="Share of successful requests logged (errors always are)",
    )
    payloads: bool = Field(
        default=False,
        description="Log request inputs after each model's privacy policy (text redacted by "
        "default), in a dataset of their own with a shorter retention",
    )
    flush_s: float = Field(
        default=2.0,
        gt=0,
        le=3_600,
        description="Records are written to a file at least this often (the most a crash loses)",
    )
    queue: int = Field(
        default=65_536,
        ge=1,
        le=10_000_000,
        description="Records waiting to be written before new ones are dropped and counted",
    )

    @field_validator("path")
    @classmethod
    def _resolve(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None or "://" in value:
            return value  # a filesystem URL (s3://, gs://, file://...)
        path = pathlib.Path(value).expanduser()
        base = (info.context or {}).get("base_dir")
        if not path.is_absolute() and base is not None:
            path = pathlib.Path(base) / path
        return str(path)

    @property
    def where(self) -> str:
        """Where the log is: ``path``, or MODELSCALE_LOG_DIR when none is set."""
        return self.path or get_settings().log_dir


class AlertsSpec(_Strict):
    """Where SLO alerts go besides the server log and the knowledge base."""

    webhooks: tuple[str, ...] = Field(
        default=(), description="URLs that get each alert as a JSON POST (retried with backoff)"
    )
    retries: int = Field(default=5, ge=0, le=100, description="Retries of a failed delivery")
    timeout_s: float = Field(default=5.0, gt=0, le=300, description="One delivery's time limit")

    @field_validator("webhooks")
    @classmethod
    def _http_urls(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for url in value:
            scheme, _, rest = url.partition("://")
            if scheme.lower() not in ("http", "https") or not rest or rest.startswith("/"):
                raise ValueError(f"{url!r} is not an http(s) URL such as https://host/path")
        return value


class StoreSpec(_Strict):
    """Where the server records its runs (default: MODELSCALE_DB)."""

    url: str | None = None


class DeploymentSpec(_Strict):
    """The schema of deploy.yaml: models -> versions, batching, replicas, threads, SLOs, auth, store.

    Example::

        models:
          digits:
            versions:
              "1": {path: digits.onnx}
            batching: {max_batch: 16, max_wait_ms: 2, max_queue: 512}
            replicas: 2
            threads: 1
            slo: {p99_ms: 100}
        server: {host: 127.0.0.1, port: 8000}
        auth: {api_key_file: key.txt}
    """

    models: dict[str, ModelSpec] = Field(min_length=1)
    backend: Literal["local", "ray"] = Field(
        default="local",
        description="What runs the replicas: processes on this machine, or Ray Serve deployments",
    )
    server: ServerSpec = Field(default_factory=ServerSpec)
    auth: AuthSpec = Field(default_factory=AuthSpec)
    store: StoreSpec = Field(default_factory=StoreSpec)
    ray: RaySpec = Field(default_factory=RaySpec)
    log: LogSpec = Field(default_factory=LogSpec)
    alerts: AlertsSpec = Field(default_factory=AlertsSpec)
    privacy: PrivacySpec = Field(default_factory=PrivacySpec)

    @field_validator("models")
    @classmethod
    def _model_names(cls, value: dict[str, ModelSpec]) -> dict[str, ModelSpec]:
        for name in value:
            if not _NAME.match(name):
                raise ValueError(
                    f"model name {name!r} must be letters, digits, '_', '.' or '-' (URL-safe)"
                )
        return value

    @classmethod
    def from_dict(
        cls,
        data: Any,
        *,
        base_dir: pathlib.Path | None = None,
        source: str = "deployment spec",
        check_files: bool = True,
    ) -> DeploymentSpec:
        """Validate ``data``; relative paths resolve against ``base_dir`` (default: the cwd).

        With ``check_files=False`` the files it names need not exist here: a spec written for
        other machines (a container image, the nodes of a cluster).
        """
        if not isinstance(data, dict):
            raise InvalidInput(
                f"{source}: expected a mapping with a 'models' key at the top level. "
                f"Got {type(data).__name__} instead.",
                field="models",
            )
        try:
            return cls.model_validate(
                data,
                context={"base_dir": base_dir or pathlib.Path.cwd(), "check_files": check_files},
            )
        except ValidationError as exc:
            raise _spec_error(exc, source) from None

    @classmethod
    def single(
        cls,
        path: str | pathlib.Path,
        *,
        name: str | None = None,
        replicas: int = 1,
        threads: int = 1,
        max_batch: int | None = None,
        max_wait_ms: float | None = None,
        max_queue: int = 256,
        p99_ms: float | None = None,
        host: str = "127.0.0.1",
        port: int = 8000,
        api_key_file: str | pathlib.Path | None = None,
        monitor: bool = True,
    ) -> DeploymentSpec:
        """The spec of one model file served as version "1" (what ``serve MODEL.onnx`` runs).

        ``monitor=False`` is for servers that only measure (a plan's validation, an assessment):
        their synthetic traffic would otherwise be watched against the model's baseline, and the
        drift it is bound to show would be kept in the knowledge base as alerts about the model.
        ``max_batch`` / ``max_wait_ms`` None take BatchingSpec's defaults (adaptive with ``p99_ms``).
        """
        p = pathlib.Path(path)
        return cls.from_dict(
            {
                "models": {
                    name or p.stem: {
                        "versions": {"1": {"path": str(p)}},
                        "batching": {
                            "max_batch": max_batch,
                            "max_wait_ms": max_wait_ms,
                            "max_queue": max_queue,
                        },
                        "replicas": replicas,
                        "threads": threads,
                        "slo": {"p99_ms": p99_ms},
                        "monitor": {"enabled": monitor},
                    }
                },
                "server": {"host": host, "port": port},
                "auth": {"api_key_file": str(api_key_file) if api_key_file else None},
            },
            source="serve options",
        )

    def ray_deployments(self) -> list[dict[str, Any]]:
        """The ``deployments`` section of a Ray Serve config that runs this spec."""
        return _ray_deployments(self)

    def ray_config(
        self,
        *,
        app_name: str = "modelscale",
        route_prefix: str = "/",
        host: str = "0.0.0.0",
        port: int | None = None,
    ) -> dict[str, Any]:
        """A Ray Serve config (``serve run`` / ``serve deploy``) that serves this spec.

        One application: the front as its ingress and one deployment per model version; the spec
        itself travels as the application's ``args.deployment``.
        """
        return {
            "proxy_location": "EveryNode",
            "http_options": {"host": host, "port": self.server.port if port is None else port},
            "applications": [
                {
                    "name": app_name,
                    "route_prefix": route_prefix,
                    "import_path": RAY_IMPORT_PATH,
                    "args": {"deployment": self.model_dump(mode="json", exclude_defaults=True)},
                    # Access logs are a line per call in every replica: off, the front's
                    # /metrics count every request.
                    "logging_config": {"enable_access_log": False},
                    "deployments": self.ray_deployments(),
                }
            ],
        }

    def replica_cpus(self) -> int:
        """CPUs the replicas of every version need to start (replicas x threads; the minimum
        when autoscaling)."""
        total = 0
        for m in self.models.values():
            least = m.autoscaling.min_replicas if m.autoscaling is not None else m.replicas
            total += len(m.versions) * least * m.threads
        return total

    def to_yaml(self) -> str:
        """The spec as deploy.yaml text (paths absolute, defaults included)."""
        data = self.model_dump(mode="json")
        return yaml.safe_dump(data, sort_keys=False)


RAY_IMPORT_PATH = "modelscale.serve.ray_app:build_app"
"""The Ray Serve application builder a Ray config points at."""

RAY_FRONT = "Front"
"""The name of the front's deployment in a Ray Serve application."""


def ray_deployment_name(model: str, version: str) -> str:
    """The Ray Serve deployment that runs the replicas of ``model`` version ``version``."""
    return f"{model}--{version}"


def _ray_deployments(spec: DeploymentSpec) -> list[dict[str, Any]]:
    """The ``deployments`` of a Ray Serve config for ``spec``: the front, then one per version."""
    queued = sum(m.batching.max_queue for m in spec.models.values())
    out: list[dict[str, Any]] = [
        {
            "name": RAY_FRONT,
            "num_replicas": spec.ray.front_replicas,
            # The front holds every queued request and sheds load itself (503 + Retry-After), so
            # Ray must hand it more requests than its queues take, never queue them in the proxy.
            "max_ongoing_requests": max(1_000, 2 * queued),
            "ray_actor_options": {"num_cpus": 0},
        }
    ]
    for name, m in spec.models.items():
        for version in m.versions:
            dep: dict[str, Any] = {
                "name": ray_deployment_name(name, version),
                # The front sends at most max_ongoing_batches per replica. Ray's own limit sits
                # well above that: a replica its router believes full is probed with an extra
                # call before every batch, which on a small machine costs more than the batch.
                "max_ongoing_requests": 4 * spec.ray.max_ongoing_batches,
                "ray_actor_options": {"num_cpus": m.threads},
                "user_config": {"threads": m.threads},
            }
            if m.autoscaling is not None:
                a = m.autoscaling
                dep["autoscaling_config"] = {
                    "min_replicas": a.min_replicas,
                    "max_replicas": a.max_replicas,
                    "target_ongoing_requests": a.target_ongoing_batches,
                }
            else:
                dep["num_replicas"] = m.replicas
            out.append(dep)
    return out


def _loc(parts: tuple[int | str, ...]) -> str:
    return ".".join(str(p) for p in parts)


def _spec_error(exc: ValidationError, source: str) -> InvalidInput:
    msgs = []
    first_loc = ""
    for err in exc.errors()[:5]:
        loc = _loc(err["loc"])
        first_loc = first_loc or loc
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key (check its spelling against the DeploymentSpec schema)"
        elif err["type"] == "missing":
            msg = "required key is missing"
        msgs.append(f"{loc}: {msg}" if loc else msg)
    more = len(exc.errors()) - len(msgs)
    tail = f" (and {more} more)" if more > 0 else ""
    return InvalidInput(f"{source}: {'; '.join(msgs)}{tail}", field=first_loc or None)


def load_deployment(path: str | pathlib.Path) -> DeploymentSpec:
    """Read and validate deploy.yaml; relative paths in it resolve against its directory."""
    p = pathlib.Path(path).expanduser()
    if not p.is_file():
        raise InvalidInput(
            f"Deployment spec {p} does not exist. Expected a deploy.yaml file.", field="config"
        )
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise InvalidInput(f"{p} is not valid YAML: {exc}", field="config") from None
    except UnicodeDecodeError:
        raise InvalidInput(f"{p} is not UTF-8 text.", field="config") from None
    return DeploymentSpec.from_dict(data, base_dir=p.parent.resolve(), source=str(p))
