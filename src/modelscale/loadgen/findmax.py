"""Find the highest rate a server sustains within a p99 bound: bracketing, then bisection.

Rates are probed from a start rate, multiplied (or divided) by ``growth`` until one rate passes and
a higher one fails; then the bracket is bisected geometrically until its ends are within
``tolerance`` of each other. Each probe may run ``repeats`` windows and passes only if every
window passes (p99 under the bound, errors under 1%): on a shared machine a single lucky window
must not set the answer, and differences smaller than the run-to-run noise (~25% with 10 s windows
on this kind of box) are not worth resolving, hence the default 10% tolerance and >= 30 s windows
for figures that matter.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from modelscale.loadgen.stats import LoadStats

__all__ = ["Probe", "find_max_rate"]


@dataclass(frozen=True)
class Probe:
    """One rate tried by the search and how its windows went."""

    rate: float
    passed: bool
    windows: tuple[LoadStats, ...]


def find_max_rate(
    measure: Callable[[float], LoadStats],
    *,
    start_rps: float,
    p99_ms: float,
    max_error_rate: float = 0.01,
    repeats: int = 1,
    tolerance: float = 0.1,
    growth: float = 1.5,
    max_probes: int = 16,
    floor_rps: float = 0.5,
) -> tuple[float | None, list[Probe]]:
    """The highest passing rate found (None if even ``floor_rps`` fails) and every probe made."""
    probes: list[Probe] = []

    def probe(rate: float) -> bool:
        windows = tuple(measure(rate) for _ in range(repeats))
        ok = all(w.passes(p99_ms=p99_ms, max_error_rate=max_error_rate) for w in windows)
        probes.append(Probe(rate, ok, windows))
        return ok

    lo: float | None = None
    hi: float | None = None
    rate = start_rps
    while len(probes) < max_probes:
        if probe(rate):
            lo = rate
            if hi is not None:
                break
            rate *= growth
        else:
            hi = rate
            if lo is not None:
                break
            rate /= growth
            if rate < floor_rps:
                return None, probes
        if lo is not None and hi is not None:
            break
    while lo is not None and hi is not None and hi / lo > 1 + tolerance:
        if len(probes) >= max_probes:
            break
        mid = math.sqrt(lo * hi)
        if probe(mid):
            lo = mid
        else:
            hi = mid
    return lo, probes
