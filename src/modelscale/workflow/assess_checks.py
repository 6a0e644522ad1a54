"""The checks of an assessment: each measurement set against its baseline, with its verdict.

Latency and max rate are compared side by side when the baseline's model was measured again now
(``side``), else with the baseline run's stored measurements. A stored comparison cannot tell a
slower model from a slower machine, so its verdict is downgraded to inconclusive when the
machine is not the baseline's, when other processes kept more than ``max_other_cores`` busy
(now, for a regression; at the baseline, for an improvement), or, for latency, when a fixed
reference task timed between the model's blocks changed speed by enough to account for it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from modelscale.workflow.assess_stats import (
    Interval,
    Verdict,
    accuracy_change,
    judge,
    ratio_paired,
    ratio_unpaired,
)

if TYPE_CHECKING:
    from modelscale.workflow.assess import AssessOptions

__all__ = ["Check", "build_checks"]

SIDE_BY_SIDE = "side by side"
STORED = "against stored"
SAME_ROWS = "same rows"


@dataclass(frozen=True)
class Check:
    """One comparison with the baseline.

    Attributes:
        name: What is compared ('latency b8 x 1 thr', 'accuracy', 'max rate').
        unit: The unit of ``baseline`` and ``now`` ('ms', 'share', 'req/s').
        baseline: The baseline's value (a geometric mean of blocks or windows; an accuracy).
        now: The value now.
        effect: now / baseline for a ratio, now - baseline for a difference (None: no baseline).
        low: Lower end of the effect's confidence interval.
        high: Upper end.
        ratio: Whether the effect is a ratio (else a difference).
        threshold: Where a regression begins on the effect's scale.
        verdict: The conclusion.
        method: 'side by side', 'against stored', 'same rows', or 'baseline'.
        p_value: Two-sided p-value of no change, where one was computed.
        note: Why a verdict was downgraded, when it was.
    """

    name: str
    unit: str
    baseline: float | None
    now: float | None
    effect: float | None
    low: float | None
    high: float | None
    ratio: bool
    threshold: float | None
    verdict: Verdict
    method: str
    p_value: float | None = None
    note: str | None = None

    def effect_text(self) -> str:
        """'1.52x [1.45, 1.60]', '-4.2 pt [-6.0, -2.4]', or '-' without a baseline."""
        if self.effect is None or self.low is None or self.high is None:
            return "-"
        if self.ratio:
            return f"{self.effect:.2f}x [{self.low:.2f}, {self.high:.2f}]"
        return f"{100 * self.effect:+.1f} pt [{100 * self.low:+.1f}, {100 * self.high:+.1f}]"


def _gmean(values: Sequence[float]) -> float:
    arr = np.asarray(values, dtype=float)
    return float(np.exp(np.log(arr).mean())) if arr.size and np.all(arr > 0) else math.nan


def _ratio_check(
    name: str,
    unit: str,
    now: Sequence[float],
    paired: Sequence[float] | None,
    stored: Sequence[float] | None,
    *,
    worse_past: float,
    higher_is_worse: bool,
    o: AssessOptions,
    disturbed_now: bool,
    disturbed_then: bool,
    other_machine: bool,
    machine: Interval | None = None,
) -> Check:
    if paired is None and stored is None:
        return Check(name, unit, None, _gmean(now), None, None, None, True, worse_past,
                     Verdict.BASELINE, "baseline")  # fmt: skip
    if paired is not None:
        iv = ratio_paired(paired, now, confidence=o.confidence)
        base, method = paired, SIDE_BY_SIDE
    else:
        assert stored is not None  # one of the two is given: checked above
        iv = ratio_unpaired(stored, now, confidence=o.confidence)
        base, method = stored, STORED
    verdict = judge(
        iv, worse_past=worse_past, better_past=1 / worse_past, higher_is_worse=higher_is_worse
    )
    note = None
    if method == STORED and verdict in (Verdict.REGRESSION, Verdict.IMPROVED):
        why = None
        if other_machine:
            why = "the baseline ran on another machine"
        elif verdict == Verdict.REGRESSION and disturbed_now:
            why = f"other processes kept more than {o.max_other_cores:g} cores busy meanwhile"
        elif verdict == Verdict.IMPROVED and disturbed_then:
            why = "other processes were busy while the baseline was measured"
        elif machine is not None and _machine_explains(iv, machine, verdict, worse_past):
            why = (
                f"a fixed reference task ran {_effect(machine)} its baseline time meanwhile: "
                "the machine's speed changed by as much"
            )
        if why:
            note = f"{name}: {verdict.value} ({_effect(iv)}) called inconclusive: {why}."
            verdict = Verdict.INCONCLUSIVE
    return Check(name, unit, _gmean(base), _gmean(now), iv.estimate, iv.low, iv.high, True,
                 worse_past, verdict, method, iv.p_value, note)  # fmt: skip


def _machine_explains(iv: Interval, machine: Interval, verdict: Verdict, worse_past: float) -> bool:
    """Whether the machine's own change of speed (the reference task's ratio) could account for
    the model's: the model's interval, divided by the machine's, reaches the threshold."""
    if verdict == Verdict.REGRESSION:
        return iv.low / machine.high <= worse_past
    return iv.high / machine.low >= 1 / worse_past


def _effect(iv: Interval) -> str:
    return f"{iv.estimate:.2f}x [{iv.low:.2f}, {iv.high:.2f}]"


def _busy(cores: Any, limit: float) -> bool:
    return isinstance(cores, int | float) and cores > limit


def build_checks(
    base_ev: Mapping[str, Any],
    evidence: Mapping[str, Any],
    side: Mapping[str, Any],
    *,
    options: AssessOptions,
    other_machine: bool = False,
) -> list[Check]:
    """The checks of ``evidence`` against the baseline's (``base_ev``) or, side by side, ``side``.

    Args:
        base_ev: The baseline run's evidence (empty: no baseline).
        evidence: What was measured now of the model.
        side: What was measured now of the baseline's model (empty: not measured).
        options: The thresholds.
        other_machine: The baseline ran on another machine.
    """
    o = options
    checks: list[Check] = []
    now_busy = evidence.get("other_cores") or {}
    then_busy = base_ev.get("other_cores") or {}
    for p in evidence.get("latency") or []:
        key = (p["batch"], p["threads"])
        twin = next(
            (q for q in side.get("latency") or [] if (q["batch"], q["threads"]) == key), None
        )
        old = next((q for q in base_ev.get("latency") or [] if (q["batch"], q["threads"]) == key), None)  # fmt: skip
        machine = None
        if twin is None and old and old.get("reference_ms") and p.get("reference_ms"):
            machine = ratio_unpaired(
                old["reference_ms"], p["reference_ms"], confidence=o.confidence
            )
        checks.append(
            _ratio_check(
                f"latency b{p['batch']} x {p['threads']} thr", "ms", p["block_ms"],
                twin["block_ms"] if twin else None, old["block_ms"] if old else None,
                worse_past=o.max_slowdown, higher_is_worse=True, machine=machine,
                disturbed_now=_busy(now_busy.get("latency"), o.max_other_cores),
                disturbed_then=_busy(then_busy.get("latency"), o.max_other_cores),
                o=o, other_machine=other_machine,
            )
        )  # fmt: skip
    acc = evidence.get("accuracy")
    if acc:
        old_acc = base_ev.get("accuracy")
        if not old_acc:
            checks.append(Check("accuracy", "share", None, acc["accuracy"], None, None, None,
                                False, -o.max_accuracy_drop, Verdict.BASELINE, "baseline"))  # fmt: skip
        else:
            iv = accuracy_change(
                [c == "1" for c in old_acc["hits"]], [c == "1" for c in acc["hits"]],
                confidence=o.confidence, seed=o.seed,
            )  # fmt: skip
            verdict = judge(iv, worse_past=-o.max_accuracy_drop, better_past=o.max_accuracy_drop,
                            higher_is_worse=False)  # fmt: skip
            checks.append(Check("accuracy", "share", old_acc["accuracy"], acc["accuracy"],
                                iv.estimate, iv.low, iv.high, False, -o.max_accuracy_drop,
                                verdict, SAME_ROWS, iv.p_value))  # fmt: skip
    load = evidence.get("load")
    if load:
        twin_load = side.get("load")
        old_load = base_ev.get("load")
        checks.append(
            _ratio_check(
                "max rate", "req/s", load["rates"],
                twin_load["rates"] if twin_load else None,
                old_load["rates"] if old_load else None,
                worse_past=1 - o.max_rate_drop, higher_is_worse=False,
                disturbed_now=_busy(now_busy.get("load"), o.max_other_cores),
                disturbed_then=_busy(then_busy.get("load"), o.max_other_cores),
                o=o, other_machine=other_machine,
            )
        )  # fmt: skip
    return checks
