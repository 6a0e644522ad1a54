"""Choose among trials, and say in words what each trial and the whole search found."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from modelscale.compress.results import Trial

if TYPE_CHECKING:
    from modelscale.compress.results import CompressResult

__all__ = ["TIE_MARGIN", "choose", "describe_trial", "overall_summary"]


TIE_MARGIN = 0.03
"""Throughputs within 3% of the best count as a tie: on a shared CPU, repeated timings of one
model differ by about that much, so the smaller file wins rather than the luckier timing."""


def choose(trials: Sequence[Trial], metric: str) -> tuple[Trial, str]:
    """The passing trial with the best throughput at the search's batch (ties: smaller file).

    Never a trial outside the tolerance: the original always passes, so it is the answer when
    nothing else does.
    """
    original = trials[0]
    passing = [t for t in trials if t.ok and t.passed]
    top = max(t.items_per_s or 0.0 for t in passing)
    tied = [t for t in passing if (t.items_per_s or 0.0) >= top * (1 - TIE_MARGIN)]
    best = min(tied, key=lambda t: (t.size_bytes or 0, -(t.items_per_s or 0.0)))
    failed_tol = [t for t in trials[1:] if t.ok and not t.passed]
    broken = [t for t in trials[1:] if t.status == "failed"]
    skipped = [t for t in trials[1:] if t.status == "skipped"]
    if best is original:
        others = [t for t in passing if t is not original]
        if others:
            why = (
                f"{len(others)} candidate(s) stayed within tolerance but none was faster than "
                f"the original at batch {original.batch}"
            )
        else:
            why = f"no candidate stayed within the tolerance on {metric}"
        extra = f" ({len(failed_tol)} outside tolerance, {len(broken)} failed to build or run"
        extra += f", {len(skipped)} skipped)" if skipped else ")"
        return best, f"Kept the original: {why}{extra}."
    speedup = (best.items_per_s or 0) / (original.items_per_s or 1)
    size = (best.size_bytes or 0) / max(original.size_bytes or 1, 1)
    return best, (
        f"Chose {best.name}: the fastest of {len(passing)} trial(s) within tolerance "
        f"(ties within {TIE_MARGIN:.0%}: the smaller), "
        f"{speedup:.2f}x the original's throughput at batch {best.batch}, "
        f"{size:.2f}x its size, {metric} change {best.change:+.4f}."
    )


def describe_trial(trial: Trial, original: Trial, metric: str) -> str:
    """One line: size, throughput, metric change with CI, pass or fail."""
    if not trial.ok:
        return f"{trial.name}: {trial.status} ({trial.error})"
    size = f"{(trial.size_bytes or 0) / 2**20:.2f} MiB"
    tput = trial.items_per_s or 0.0
    line = f"{trial.name}: {size}, {tput:,.0f} items/s at batch {trial.batch}"
    is_original = trial.name == original.name
    if not is_original and original.items_per_s:
        line += f" ({tput / original.items_per_s:.2f}x)"
    line += f", {metric} {trial.metric:.4f}"
    if not is_original:
        line += f" (change {trial.change:+.4f}, 95% CI [{trial.ci_low:+.4f}, {trial.ci_high:+.4f}])"
        line += ", pass" if trial.passed else ", outside tolerance"
    if trial.slower:
        line += ", slower than the original"
    return line


def overall_summary(result: CompressResult) -> str:
    """The search in one paragraph."""
    where = f" Written to {result.chosen_path}." if result.chosen_path else ""
    ok = sum(t.ok for t in result.trials[1:])
    return (
        f"{len(result.trials) - 1} candidate(s) tried on {result.model['name']} ({ok} ran), "
        f"judged on {result.metric} over {result.eval_rows} eval rows. {result.reason}"
        f"{where}"
    )
