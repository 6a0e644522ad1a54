"""The checks of assess against stored measurements: a slower machine or a busy one does not fail
the gate, a slower model on an unchanged machine does."""

from __future__ import annotations

from typing import Any

import numpy as np

from modelscale.workflow.assess import AssessOptions
from modelscale.workflow.assess_checks import build_checks
from modelscale.workflow.assess_stats import Verdict


def _blocks(level: float, seed: int) -> list[float]:
    return list(level * np.exp(np.random.default_rng(seed).normal(0, 0.02, 8)))


def _point(model: float, reference: float, seed: int) -> dict[str, Any]:
    return {
        "batch": 1,
        "threads": 1,
        "block_ms": _blocks(model, seed),
        "reference_ms": _blocks(reference, seed + 100),
    }


def _latency(base: dict[str, Any], now: dict[str, Any], **evidence: Any) -> Any:
    (check,) = build_checks(
        {"latency": [base], "other_cores": {}},
        {"latency": [now], "other_cores": evidence.pop("other_cores", {})},
        {},
        options=AssessOptions(),
        **evidence,
    )
    return check


def test_a_slower_model_on_an_unchanged_machine_is_a_regression() -> None:
    check = _latency(_point(1.0, 0.5, 0), _point(1.5, 0.5, 1))
    assert check.method == "against stored"
    assert check.verdict == Verdict.REGRESSION and check.note is None


def test_a_slowdown_the_reference_task_shows_too_is_inconclusive() -> None:
    check = _latency(_point(1.0, 0.5, 0), _point(1.5, 0.75, 1))
    assert check.verdict == Verdict.INCONCLUSIVE
    assert "reference task" in check.note


def test_a_slowdown_measured_while_others_were_busy_is_inconclusive() -> None:
    check = _latency(_point(1.0, 0.5, 0), _point(1.5, 0.5, 1), other_cores={"latency": 1.0})
    assert check.verdict == Verdict.INCONCLUSIVE
    assert "cores busy" in check.note


def test_a_stored_speed_from_another_machine_is_inconclusive() -> None:
    check = _latency(_point(1.0, 0.5, 0), _point(0.5, 0.5, 1), other_machine=True)
    assert check.verdict == Verdict.INCONCLUSIVE
    assert "another machine" in check.note


def test_side_by_side_blocks_are_compared_in_pairs() -> None:
    (check,) = build_checks(
        {"latency": [_point(1.0, 0.5, 0)]},
        {"latency": [_point(2.0, 0.5, 1)]},
        {"latency": [_point(1.0, 0.5, 2)]},
        options=AssessOptions(),
    )
    assert check.method == "side by side" and check.verdict == Verdict.REGRESSION
    assert 1.9 < check.effect < 2.1
