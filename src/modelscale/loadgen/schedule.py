"""Send-time schedules: when each request is meant to leave, planned before the run starts.

Open-loop load is defined by these times, not by how fast the server answers: a request's latency is
counted from its planned time, so a stalled server cannot slow the schedule down and hide its
queueing (coordinated omission).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from modelscale.errors import InvalidInput

__all__ = ["Pattern", "parse_pattern", "schedule"]


@dataclass(frozen=True)
class Pattern:
    """How the rate evolves: ``constant`` or ``poisson`` at one rate, or ``steps`` through rates."""

    kind: str
    """'constant', 'poisson' or 'steps'."""
    rates: tuple[float, ...] = ()
    """For 'steps': the rate of each step (each lasts duration / len(rates)); steps are Poisson."""

    def describe(self, rate: float | None) -> str:
        """'poisson @ 200/s' or 'steps 50, 100, 200/s'."""
        if self.kind == "steps":
            return "steps " + ", ".join(f"{r:g}" for r in self.rates) + "/s"
        return f"{self.kind} @ {rate:g}/s" if rate is not None else self.kind


def parse_pattern(text: str) -> Pattern:
    """'constant', 'poisson' or 'steps:R1,R2,...' (rates in requests/s, each > 0)."""
    value = text.strip().lower()
    if value in ("constant", "poisson"):
        return Pattern(value)
    if value.startswith("steps:"):
        parts = [p.strip() for p in value[len("steps:") :].split(",") if p.strip()]
        try:
            rates = tuple(float(p) for p in parts)
        except ValueError:
            rates = ()
        if rates and all(r > 0 and np.isfinite(r) for r in rates):
            return Pattern("steps", rates)
    raise InvalidInput(
        f"The 'pattern' option must be constant, poisson or steps:R1,R2,... with rates > 0 "
        f"(e.g. steps:50,100,200). Got {text!r} instead.",
        field="pattern",
    )


def _poisson(rate: float, duration_s: float, rng: np.random.Generator) -> np.ndarray:
    # Draw a little more than expected, then cut at the duration: exact, and one vectorised call.
    n = int(rate * duration_s + 6 * np.sqrt(rate * duration_s) + 16)
    times = np.cumsum(rng.exponential(1.0 / rate, size=n))
    while times[-1] < duration_s:
        more = np.cumsum(rng.exponential(1.0 / rate, size=n)) + times[-1]
        times = np.concatenate([times, more])
    return times[times < duration_s]


def schedule(
    pattern: Pattern, *, rate: float | None, duration_s: float, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Planned send offsets in seconds from the start, and the step index of each request.

    ``constant`` spaces requests exactly 1/rate apart; ``poisson`` draws exponential gaps from a
    generator seeded with ``seed`` (the same seed gives the same schedule); ``steps`` runs Poisson
    arrivals at each rate in turn for an equal share of the duration.
    """
    if duration_s <= 0:
        raise InvalidInput(
            f"The 'duration' must be > 0 seconds. Got {duration_s!r} instead.", field="duration"
        )
    rng = np.random.default_rng(seed)
    if pattern.kind == "steps":
        span = duration_s / len(pattern.rates)
        parts, steps = [], []
        for k, r in enumerate(pattern.rates):
            t = _poisson(r, span, rng) + k * span
            parts.append(t)
            steps.append(np.full(len(t), k, dtype=np.int32))
        return np.concatenate(parts), np.concatenate(steps)
    if rate is None or not rate > 0:
        raise InvalidInput(
            f"The 'rate' must be > 0 requests/s for the {pattern.kind} pattern. Got {rate!r}.",
            field="rate",
        )
    if pattern.kind == "constant":
        times = np.arange(int(np.floor(rate * duration_s)), dtype=np.float64) / rate
    else:
        times = _poisson(rate, duration_s, rng)
    return times, np.zeros(len(times), dtype=np.int32)
