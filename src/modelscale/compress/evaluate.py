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

from modelscale.errors import InvalidInput
from modelscale.model.inputs import InputChoice, batch_dim_names, default_batches, make_inputs
from modelscale.model.rows import count_rows, take_rows
from modelscale.model.signature import Signature
from modelscale.profile import MeasureOptions, measure_latency, percentiles
from modelscale.runtime import Engine, EngineOptions

__all__ = ["Latency", "measure_rounds", "output_batch_axis", "predict"]


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
    sizes = [
        s.shape[s.batch_axis] if s.shape else None
        for s in signature.inputs
        if s.batch_axis is not None
    ]
    fixed = bool(sizes) and all(isinstance(d, int) for d in sizes)
    return batches[0] if fixed and len(batches) == 1 else None


def output_batch_axis(signature: Signature, output: str) -> int:
    """The axis of ``output`` that runs along the batch: the one named like an input's batch axis
    (a state output ``[layers, batch, hidden]``), else 0."""
    names = batch_dim_names(signature)
    spec = next((o for o in signature.outputs if o.name == output), None)
    for axis, d in enumerate((spec.shape if spec is not None else None) or ()):
        if isinstance(d, str) and d in names:
            return axis
    return 0


def predict(
    engine: Engine,
    inputs: Mapping[str, np.ndarray],
    output: str,
    *,
    signature: Signature,
    chunk: int = 64,
) -> np.ndarray:
    """One output of the model over every row of ``inputs``, run ``chunk`` rows at a time.

    Rows are taken along each input's batch axis (inputs without one go whole into every run), and
    the output's rows come back first (axis 0), whichever axis the model puts them on. A model with
    a fixed batch size is fed exactly that many rows per run; the last run is padded by repeating
    rows, and the padding's outputs are dropped.
    """
    axes = signature.batch_axes
    rows = count_rows(inputs, axes)
    fixed = _fixed_batch(signature)
    step = fixed or chunk
    out_axis = output_batch_axis(signature, output)
    parts = []
    for start in range(0, rows, step):
        got = min(step, rows - start)
        index = np.arange(start, start + got)
        if fixed and got < fixed:
            index = np.concatenate([index, start + np.arange(fixed - got) % got])
        feeds = take_rows(inputs, index, axes)
        (out,) = engine.run(feeds, [output])
        arr = np.asarray(out)
        if arr.ndim == 0:
            raise InvalidInput(
                f"Output {output!r} is a 0-d tensor: it has no rows to evaluate. Choose an output "
                "with a batch axis in 'output'.",
                field="output",
            )
        parts.append(np.moveaxis(arr, out_axis, 0)[:got] if out_axis < arr.ndim else arr[:got])
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
