"""Run a model over an eval set and measure its latency, through the Engine like every measurement.

Latency and throughput come from ``measure_latency`` with the Engine's options, so a number here
means the same as one from ``modelscale profile`` at the same batch size and thread count.
"""

from __future__ import annotations

import dataclasses
import pathlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from modelscale.model.inputs import InputChoice, default_batches, make_inputs
from modelscale.model.signature import Signature
from modelscale.profile import MeasureOptions, measure_latency, percentiles
from modelscale.runtime import Engine, EngineOptions

__all__ = ["Latency", "measure_rounds", "predict"]


@dataclass(frozen=True)
class Latency:
    """Latency and throughput at one batch size.

    Attributes:
        p50_ms: Median latency of one run, over every round's samples.
        items_per_s: Items per second: the median over rounds of batch x runs / time spent.
        runs: Timed runs over all rounds.
        capped: Whether any round hit its time cap before the median's CI was tight.
    """

    batch: int
    p50_ms: float
    p99_ms: float
    items_per_s: float
    runs: int
    capped: bool


def _fixed_batch(signature: Signature) -> int | None:
    batches = default_batches(signature)
    fixed = all(s.shape and isinstance(s.shape[0], int) for s in signature.inputs)
    return batches[0] if fixed and len(batches) == 1 else None


def predict(
    engine: Engine,
    inputs: Mapping[str, np.ndarray],
    output: str,
    *,
    signature: Signature,
    chunk: int = 64,
) -> np.ndarray:
    """One output of the model over every row of ``inputs``, run ``chunk`` rows at a time.

    A model with a fixed batch size is fed exactly that many rows per run; the last run is padded
    by repeating rows, and the padding's outputs are dropped.
    """
    rows = len(next(iter(inputs.values())))
    fixed = _fixed_batch(signature)
    step = fixed or chunk
    parts = []
    for start in range(0, rows, step):
        feeds = {k: v[start : start + step] for k, v in inputs.items()}
        got = len(next(iter(feeds.values())))
        if fixed and got < fixed:
            feeds = {
                k: np.concatenate([v, v[np.arange(fixed - got) % got]]) for k, v in feeds.items()
            }
        (out,) = engine.run(feeds, [output])
        parts.append(np.asarray(out)[:got])
    return np.concatenate(parts)


def measure_rounds(
    paths: Mapping[str, pathlib.Path],
    *,
    signature: Signature,
    data: Mapping[str, np.ndarray],
    batches: tuple[int, ...],
    engine_options: EngineOptions,
    measure: MeasureOptions,
    rounds: int = 5,
    on_model: Callable[[str], None] | None = None,
) -> tuple[dict[str, dict[int, Latency]], dict[str, str]]:
    """Latency of several models at each batch size, timed in alternating rounds.

    On a shared machine the load drifts over minutes; timing every model a little in each round
    and pooling the rounds spreads that drift evenly instead of favouring whichever model ran in a
    quiet minute. Each round gets ``1 / rounds`` of the time budget, and every other round runs
    the models in reverse order. Percentiles pool every round's samples; throughput is the median
    of the rounds' throughputs (each computed as ``profile`` does: items over time spent), so one
    round hit by a burst of load from elsewhere does not decide it.

    Returns:
        ``(latency by model and batch, error by model)`` for models that failed to run.
    """
    per_round = dataclasses.replace(
        measure,
        max_time_s=measure.max_time_s / rounds,
        min_time_s=min(measure.min_time_s, measure.max_time_s / rounds),
        min_runs=max(3, measure.min_runs // rounds),
        warmup_s=measure.warmup_s / rounds,
    )
    choice = InputChoice(data=data)
    feeds = {b: make_inputs(signature, batch=b, choice=choice) for b in batches}
    samples: dict[str, dict[int, list[float]]] = {name: {b: [] for b in batches} for name in paths}
    rates: dict[str, dict[int, list[float]]] = {name: {b: [] for b in batches} for name in paths}
    capped: dict[str, dict[int, bool]] = {name: dict.fromkeys(batches, False) for name in paths}
    errors: dict[str, str] = {}
    order = list(paths.items())
    for r in range(rounds):
        # Alternate the order too, so that a load that rises or falls within a round evens out.
        for name, path in order if r % 2 == 0 else order[::-1]:
            if name in errors:
                continue
            if on_model is not None:
                on_model(name)
            try:
                engine = Engine(path, engine_options)
                for b in batches:
                    lat, hit, _ = measure_latency(engine.bind(feeds[b]), per_round)
                    samples[name][b].extend(lat)
                    rates[name][b].append(b * len(lat) / sum(lat))
                    capped[name][b] |= hit
            except Exception as exc:  # reported as the candidate's failure by the caller
                errors[name] = str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
            finally:
                engine = None  # type: ignore[assignment]  # free the session before the next
    out: dict[str, dict[int, Latency]] = {}
    for name in paths:
        if name in errors:
            continue
        out[name] = {}
        for b in batches:
            lat = samples[name][b]
            ms = [x * 1e3 for x in lat]
            p50, p99 = percentiles(ms, (50, 99))
            out[name][b] = Latency(
                batch=b,
                p50_ms=p50,
                p99_ms=p99,
                items_per_s=float(np.median(rates[name][b])),
                runs=len(lat),
                capped=capped[name][b],
            )
    return out, errors
