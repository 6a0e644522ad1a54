"""``run_load``: an open-loop (or closed-loop) load test of a V2 model server, as one stored result."""

from __future__ import annotations

import asyncio
import dataclasses
import math
import pathlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from modelscale.errors import invalid_parameter
from modelscale.loadgen.client import Outcome, Shooter
from modelscale.loadgen.findmax import find_max_rate
from modelscale.loadgen.payload import build_bodies, fetch_metadata, parse_url
from modelscale.loadgen.schedule import parse_pattern, schedule
from modelscale.loadgen.server_side import batching_delta, describe, scrape_batching
from modelscale.loadgen.shapes import RequestShapes, StoreSource, request_shapes
from modelscale.loadgen.stats import LATE_MS, LoadStats, summarize
from modelscale.progress import OnProgress, report
from modelscale.result import ModelVersionInfo, Result, RunLinks

__all__ = ["LoadOptions", "LoadResult", "WindowEdge", "run_load"]


@dataclass(frozen=True)
class LoadOptions:
    """How to load the server. Give ``rate`` (open loop) or ``concurrency`` (closed loop)."""

    rate: float | None = None
    """Requests/s (open loop); with ``find_max``, the rate the search starts from."""
    concurrency: int | None = None
    duration_s: float = 10.0
    """Whole run; with ``find_max``, each probe window."""
    pattern: str = "constant"
    """'constant', 'poisson' or 'steps:R1,R2,...'."""
    inputs: pathlib.Path | None = None
    dims: Mapping[str, int] = field(default_factory=dict)
    """Symbolic dim values of synthetic requests (e.g. ``{"seq": 32}``); see ``loadgen.shapes``."""
    shapes: Mapping[str, tuple[int, ...]] = field(default_factory=dict)
    """Whole shapes of synthetic requests' inputs, axis 0 being the batch."""
    batch: int = 1
    outputs: tuple[str, ...] = ()
    binary: bool = False
    version: str | None = None
    find_max: bool = False
    p99_ms: float = 100.0
    max_error_rate: float = 0.01
    repeats: int = 1
    tolerance: float = 0.1
    max_connections: int = 256
    timeout_s: float = 30.0
    warmup_s: float = 1.0
    api_key: str | None = dataclasses.field(default=None, repr=False)
    seed: int = 0

    def __post_init__(self) -> None:
        w = "load"
        if self.rate is not None and not (self.rate > 0 and math.isfinite(self.rate)):
            raise invalid_parameter("rate", "a number of requests/s > 0", self.rate, where=w)
        if self.concurrency is not None and self.concurrency < 1:
            raise invalid_parameter("concurrency", "an integer >= 1", self.concurrency, where=w)
        if self.rate is not None and self.concurrency is not None:
            raise invalid_parameter(
                "concurrency", "unset when 'rate' is given", self.concurrency, where=w
            )
        for name in ("duration_s", "p99_ms", "timeout_s", "tolerance"):
            value = getattr(self, name)
            if not (value > 0 and math.isfinite(value)):
                raise invalid_parameter(name, "a number > 0", value, where=w)
        if self.warmup_s < 0:
            raise invalid_parameter("warmup_s", "a number of seconds >= 0", self.warmup_s, where=w)
        for name in ("batch", "repeats", "max_connections"):
            if getattr(self, name) < 1:
                raise invalid_parameter(name, "an integer >= 1", getattr(self, name), where=w)
        if not 0 <= self.max_error_rate < 1:
            raise invalid_parameter(
                "max_error_rate", "a share in [0, 1)", self.max_error_rate, where=w
            )
        for name, value in self.dims.items():
            if not (isinstance(value, int) and value >= 1):
                raise invalid_parameter("dims", f"sizes >= 1 ({name}=N)", dict(self.dims), where=w)
        if self.inputs is not None and (self.dims or self.shapes):
            raise invalid_parameter(
                "dims" if self.dims else "shapes",
                "unset with 'inputs' (real inputs have their own shapes)",
                dict(self.dims or self.shapes),
                where=w,
            )
        pattern = parse_pattern(self.pattern)
        if self.find_max and self.concurrency is not None:
            raise invalid_parameter(
                "concurrency", "unset with find_max (it searches a rate)", self.concurrency, where=w
            )
        if pattern.kind == "steps" and (self.rate is not None or self.find_max):
            raise invalid_parameter(
                "rate", "unset with a steps pattern (the steps give the rates)", self.rate, where=w
            )
        if (
            pattern.kind != "steps"
            and not self.find_max
            and self.rate is None
            and self.concurrency is None
        ):
            raise invalid_parameter(
                "rate", "given (or concurrency, a steps pattern, or find_max)", None, where=w
            )


@dataclass(frozen=True)
class LoadResult(Result):
    """A load test: the whole run, its windows (steps or probes), and the sustained maximum."""

    kind: ClassVar[str] = "load"

    url: str
    model: str
    version: str | None
    """The version the server reported (or was asked for)."""
    model_sha256: str | None
    """The served version's sha256, from the model metadata, when the server exposes it."""
    mode: str
    """'open', 'closed' or 'find-max'."""
    overall: LoadStats
    windows: tuple[dict[str, Any], ...]
    """Per step or probe: its rate, whether it passed, and its LoadStats."""
    max_rate_rps: float | None
    summary: str
    params: dict[str, Any]
    inputs: dict[str, Any] = field(default_factory=dict)
    """What the requests held: ``RequestShapes.to_dict()`` for synthetic inputs (each input's
    shape, the dims and where they came from), or ``{"file": path}`` for real ones."""
    server: dict[str, Any] = field(default_factory=dict)
    """What a modelscale server's /metrics said of the test: batches, mean batch, mean wait per
    batch and, with a p99 objective, how many requests were answered within 10% of their
    predicted latency (``modelscale.loadgen.server_side``); empty for other servers."""

    def links(self) -> RunLinks:
        """Filed under the version the server said it served (registered under the model's name)."""
        if not self.model_sha256:
            return RunLinks()
        return RunLinks(
            self.model_sha256, models=(ModelVersionInfo(self.model_sha256, name=self.model),)
        )


@dataclass(frozen=True)
class WindowEdge:
    """The ``detail`` of the progress events sent as a measured window starts and as it ends
    (each find-max probe window, or the whole run), for callers that meter something per window.

    Attributes:
        index: The window's number, from 1, in the order they ran (``LoadResult.windows`` order
            for find-max).
        label: What runs in it ('probe 3: 1,200 req/s').
        start: True as it starts, False once its last answer is in.
    """

    index: int
    label: str
    start: bool


def _params(url: str, model: str, o: LoadOptions) -> dict[str, Any]:
    out = {"url": url, "model": model, **dataclasses.asdict(o)}
    out.pop("api_key")
    out["inputs"] = str(o.inputs) if o.inputs else None
    out["dims"] = dict(o.dims)
    out["shapes"] = {k: list(v) for k, v in o.shapes.items()}
    return out


def _loop_runner() -> asyncio.Runner:
    try:
        import uvloop

        return asyncio.Runner(loop_factory=uvloop.new_event_loop)
    except ImportError:  # uvloop is optional on platforms without it
        return asyncio.Runner()


def run_load(
    url: str,
    *,
    model: str,
    options: LoadOptions | None = None,
    on_progress: OnProgress | None = None,
    store: StoreSource = None,
) -> LoadResult:
    """Load ``model`` on the V2 server at ``url`` and summarise what came back.

    Open loop: send times are planned from the pattern and rate; latency counts from each planned
    time. Closed loop (``concurrency``): that many requests always in flight. ``find_max``: the
    highest rate whose p99 stays under ``p99_ms`` with fewer than 1% errors. ``on_progress``
    is told the shapes of the synthetic requests first (an 'inputs' event whose ``detail`` is
    the ``RequestShapes``), then the current window ('warm-up', 'probe 2: 1,200 req/s', ...)
    with the requests answered so far and planned in it; each measured window's start and end
    is an event whose ``detail`` is a ``WindowEdge``.

    ``store``: the knowledge base (or a function that opens it), where the sizes of dynamic axes
    that ``options`` does not give come from (the model's latest profile; see
    ``modelscale.loadgen.shapes``).
    """
    o = options or LoadOptions()
    target = parse_url(url, model=model, version=o.version)
    meta = fetch_metadata(target, api_key=o.api_key)
    shapes: RequestShapes | None = None
    if o.inputs is None:
        shapes = request_shapes(meta, batch=o.batch, dims=o.dims, shapes=o.shapes, store=store)
        report(on_progress, "inputs", detail=shapes)
    bodies = build_bodies(
        target,
        meta,
        inputs=o.inputs,
        batch=o.batch,
        outputs=o.outputs,
        binary=o.binary,
        api_key=o.api_key,
        seed=o.seed,
        shapes=None if shapes is None else shapes.shapes,
    )
    pattern = parse_pattern(o.pattern)
    stage = ["warm-up"]
    scraped = scrape_batching(target, api_key=o.api_key)

    def tick(done: int, total: int) -> None:
        report(on_progress, stage[0], done, min(total, 2**31))

    shooter = Shooter(
        target.host, target.port, bodies, max_connections=o.max_connections, on_tick=tick
    )
    windows: list[dict[str, Any]] = []
    max_rate: float | None = None
    measured = [0]
    with _loop_runner() as runner:

        def open_window(
            rate: float | None, kind: Any, seed: int
        ) -> tuple[Outcome, np.ndarray, float]:
            offsets, steps = schedule(kind, rate=rate, duration_s=o.duration_s, seed=seed)
            measured[0] += 1
            edge = WindowEdge(measured[0], stage[0], start=True)
            report(on_progress, stage[0], 0, len(offsets), edge)
            outcome = runner.run(shooter.open_loop(offsets, timeout_s=o.timeout_s))
            edge = dataclasses.replace(edge, start=False)
            report(on_progress, stage[0], len(offsets), len(offsets), edge)
            return outcome, steps, o.duration_s

        warm_rate = o.rate or (pattern.rates[0] if pattern.kind == "steps" else None)
        if o.warmup_s > 0 and warm_rate and o.concurrency is None:
            offsets, _ = schedule(parse_pattern("constant"), rate=warm_rate, duration_s=o.warmup_s)
            runner.run(shooter.open_loop(offsets, timeout_s=o.timeout_s))
        if o.find_max:
            start = o.rate or _estimate_start(runner, shooter, o, stage)
            counter = [0]

            def measure(rate: float) -> LoadStats:
                counter[0] += 1
                stage[0] = f"probe {counter[0]}: {rate:,.0f} req/s"
                out, _, planned = open_window(rate, parse_pattern("poisson"), o.seed + counter[0])
                return summarize(out, planned_s=planned)

            max_rate, probes = find_max_rate(
                measure,
                start_rps=start,
                p99_ms=o.p99_ms,
                max_error_rate=o.max_error_rate,
                repeats=o.repeats,
                tolerance=o.tolerance,
            )
            for p in probes:
                for w in p.windows:
                    windows.append({"rate_rps": p.rate, "passed": p.passed, "stats": w})
            best = [w for p in probes if p.rate == max_rate for w in p.windows]
            overall = best[-1] if best else windows[-1]["stats"]
            mode = "find-max"
        elif o.concurrency is not None:
            stage[0] = f"{o.concurrency} in flight"
            out = runner.run(
                shooter.closed_loop(o.concurrency, o.duration_s, timeout_s=o.timeout_s)
            )
            overall = summarize(out, planned_s=o.duration_s)
            mode = "closed"
        else:
            stage[0] = pattern.describe(o.rate)
            out, steps, planned = open_window(o.rate, pattern, o.seed)
            overall = summarize(out, planned_s=planned)
            if pattern.kind == "steps":
                span = planned / len(pattern.rates)
                for k, r in enumerate(pattern.rates):
                    stats = summarize(out, planned_s=span, mask=steps == k)
                    windows.append({"rate_rps": r, "passed": None, "stats": stats})
            mode = "open"
        runner.run(shooter.aclose())
    server = batching_delta(scraped, scrape_batching(target, api_key=o.api_key))
    params = meta.get("parameters") or {}
    version = params.get("version") or o.version
    sha = params.get("sha256")
    return LoadResult(
        url=url,
        model=model,
        version=str(version) if version is not None else None,
        model_sha256=str(sha) if sha else None,
        mode=mode,
        overall=overall,
        windows=tuple(windows),
        max_rate_rps=max_rate,
        summary=_summary(mode, overall, max_rate, o) + describe(server),
        params=_params(url, model, o),
        inputs=shapes.to_dict() if shapes is not None else {"file": str(o.inputs)},
        server=server,
    )


def _estimate_start(
    runner: asyncio.Runner, shooter: Shooter, o: LoadOptions, stage: list[str]
) -> float:
    # A short closed-loop window estimates capacity; the search starts below it and brackets up.
    stage[0] = "estimating capacity"
    out = runner.run(shooter.closed_loop(8, min(3.0, o.duration_s), timeout_s=o.timeout_s))
    stats = summarize(out, planned_s=min(3.0, o.duration_s))
    return max(1.0, 0.7 * stats.achieved_rps)


def _summary(mode: str, s: LoadStats, max_rate: float | None, o: LoadOptions) -> str:
    errors = f"{s.error_rate:.2%} errors" + (
        f" ({', '.join(f'{k}: {v}' for k, v in s.errors.items())})" if s.errors else ""
    )
    core = (
        f"{s.achieved_rps:,.1f} req/s achieved of {s.offered_rps:,.1f} offered; p50 {s.p50_ms:.1f} ms, "
        f"p99 {s.p99_ms:.1f} ms, max {s.max_ms:.1f} ms; {errors}"
    )
    if mode == "find-max":
        if max_rate is None:
            return f"No rate kept p99 <= {o.p99_ms:g} ms with < {o.max_error_rate:.0%} errors."
        return (
            f"Highest sustained rate with p99 <= {o.p99_ms:g} ms: {max_rate:,.1f} req/s ({core})."
        )
    late = (
        f"; {s.late} sent > {LATE_MS:g} ms late (client short of connections or CPU)"
        if s.late
        else ""
    )
    return core + late + "."
