"""The scaling checklist: every item backed by runs, deleting evidence turns exactly that item to
missing, and the policy file's bad values are refused."""

from __future__ import annotations

import pathlib

import pytest

from modelscale.errors import InvalidInput
from modelscale.report import Status, check, gather_evidence, load_policy
from modelscale.store import Store
from tests.report.conftest import delete_runs

# What the demo recorded and how each item judges it: the demo plants drift, its plan validation
# on a 2-core machine shared with the load generator misses the prediction, its scaling-law fit
# on 16 small trainings is flagged, and it plans one growth phase.
DEMO = {
    "size_cost": Status.PASS,
    "scaling_laws": Status.WARN,
    "compression": Status.PASS,
    "plan_validated": Status.FAIL,
    "cost_per_phase": Status.WARN,
    "slo": Status.PASS,
    "drift": Status.FAIL,
    "privacy": Status.PASS,
    "rollout": Status.PASS,
    "assessment": Status.PASS,
    "findings": Status.PASS,
}


def test_the_demo_scorecard_backs_every_verdict_with_runs(demo_store: Store) -> None:
    card = check(gather_evidence(demo_store, "digits"))
    assert {i.key: i.status for i in card.items} == DEMO
    known = {r.id for r in demo_store.runs()}
    for item in card.items:
        if item.status is Status.MISSING:
            assert not item.runs
            assert item.command.startswith("modelscale "), item.key
        else:
            assert item.runs and set(item.runs) <= known, item.key
            assert item.age_days is not None and item.age_days < 1
    assert card.exit_code == 1


def _ids(store: Store, pick) -> list[int]:  # type: ignore[no-untyped-def]
    return [r.id for r in store.runs() if pick(r)]


EVIDENCE = {
    "size_cost": lambda r: r.kind == "profile",
    "scaling_laws": lambda r: r.kind == "laws",
    "privacy": lambda r: r.kind == "privacy",
    "assessment": lambda r: r.kind == "assess",
    "findings": lambda r: r.kind == "note",
    "compression": lambda r: r.kind == "compress",
    "plan_validated": lambda r: r.kind == "plan" and "within_tolerance" in r.results,
    "drift": lambda r: r.kind == "baseline",
    "rollout": lambda r: r.kind == "experiment",
    # the objectives measured over the log, and the load tests it falls back on without them
    "slo": lambda r: r.kind in ("slo", "load"),
}


@pytest.mark.parametrize("item", sorted(EVIDENCE))
def test_deleting_one_piece_of_evidence_turns_exactly_that_item_to_missing(
    demo_store: Store, item: str
) -> None:
    before = {i.key: i for i in check(gather_evidence(demo_store, "digits")).items}
    delete_runs(demo_store, _ids(demo_store, EVIDENCE[item]))
    after = {i.key: i for i in check(gather_evidence(demo_store, "digits")).items}
    changed = {k for k in before if before[k].status is not after[k].status}
    assert changed == {item}
    assert after[item].status is (Status.FAIL if item == "rollout" else Status.MISSING)
    if after[item].status is Status.MISSING:
        assert after[item].command.startswith("modelscale ")


def test_the_policy_sets_requirements_thresholds_and_age(
    demo_store: Store, tmp_path: pathlib.Path
) -> None:
    policy = tmp_path / "checklist.yaml"
    policy.write_text(
        "max_age_days: 30\n"
        "items:\n"
        "  plan_validated: {tolerance: 10.0}\n"  # the demo's +871% error is within 1000%
        "  drift: {enabled: false}\n"
        "  privacy: {required: false}\n"
        "  assessment: {required: false}\n"
        "  findings: {required: false}\n"
        "  cost_per_phase: {max_age_days: 0.000001, stale: fail}\n",
        encoding="utf-8",
    )
    card = check(gather_evidence(demo_store, "digits"), load_policy(policy))
    by_key = {i.key: i for i in card.items}
    assert "drift" not in by_key
    assert by_key["plan_validated"].status is Status.PASS
    assert by_key["cost_per_phase"].status is Status.FAIL
    assert "days old" in by_key["cost_per_phase"].detail
    assert card.exit_code == 1
    policy.write_text(policy.read_text().replace("stale: fail", "stale: warn"), encoding="utf-8")
    assert check(gather_evidence(demo_store, "digits"), load_policy(policy)).exit_code == 0


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("items:\n  speed: {}\n", "unknown checklist item.*speed.*Expected some of: size_cost"),
        ("items:\n  slo: {max_age_days: -1}\n", r"items\.slo\.max_age_days.*greater than 0"),
        ("items:\n  slo: {stale: maybe}\n", r"items\.slo\.stale"),
        ("items:\n  slo: {threshold: 3}\n", r"items\.slo\.threshold.*Extra inputs"),
        ("max_age_days: soon\n", "max_age_days"),
        ("- a\n- b\n", "must be a mapping"),
        ("items: [\n", "could not be read as YAML"),
    ],
)
def test_bad_policy_files_are_refused_naming_the_problem(
    tmp_path: pathlib.Path, text: str, message: str
) -> None:
    policy = tmp_path / "checklist.yaml"
    policy.write_text(text, encoding="utf-8")
    with pytest.raises(InvalidInput, match=message):
        load_policy(policy)


def test_a_missing_policy_file_is_named(tmp_path: pathlib.Path) -> None:
    with pytest.raises(InvalidInput, match="does not exist"):
        load_policy(tmp_path / "nope.yaml")
