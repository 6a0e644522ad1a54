"""The SLO rules pass promtool's checks and its unit tests, and those tests catch broken rules."""

from __future__ import annotations

import os
import pathlib
import re
import shutil
import subprocess
from typing import Any

import pytest
import yaml

from modelscale.config import DeploymentSpec
from modelscale.errors import InvalidInput
from modelscale.observe.rules import ALERT_NAME, PrometheusRules, prometheus_rules
from modelscale.observe.windows import ALERT_PAIRS, WINDOWS_S, window_name

__all__ = ["promtool", "promtool_runs", "run_promtool", "spec_of"]


def promtool() -> str:
    """The promtool binary; the test is skipped without it unless MODELSCALE_REQUIRE_PROMTOOL=1."""
    path = shutil.which("promtool")
    if path is None:
        reason = "promtool (Prometheus's rule checker) is not on PATH"
        if os.environ.get("MODELSCALE_REQUIRE_PROMTOOL") == "1":
            pytest.fail(f"{reason}, and MODELSCALE_REQUIRE_PROMTOOL=1 requires it")
        pytest.skip(f"{reason}; scripts/install-system-tools installs it")
    return path


def spec_of(model: pathlib.Path, slos: dict[str, dict[str, Any]], **top: Any) -> DeploymentSpec:
    """A deployment that serves ``model`` under each name in ``slos``, with that SLO."""
    models = {
        name: {"versions": {"1": {"path": str(model)}}, "slo": slo} for name, slo in slos.items()
    }
    return DeploymentSpec.from_dict({"models": models, **top})


TWO_MODELS = {
    "digits": {"availability": 0.995},
    "ranker": {
        "availability": 0.999,
        "latency": {"threshold_ms": 250, "objective": 0.95},
        "window_days": 30,
        "min_events": 50,
    },
    "plain": {"p99_ms": 100},  # no objective: no rules
}


def run_promtool(rules: PrometheusRules, folder: pathlib.Path) -> tuple[str, str]:
    """Write ``rules`` into ``folder``; (``check rules`` output, ``test rules`` output), each
    asserted to have passed."""
    check, test = promtool_runs(rules, folder)
    assert check.returncode == 0, check.stdout + check.stderr
    assert test.returncode == 0, test.stdout + test.stderr
    return check.stdout, test.stdout


def promtool_runs(
    rules: PrometheusRules, folder: pathlib.Path
) -> tuple[subprocess.CompletedProcess[str], subprocess.CompletedProcess[str]]:
    """Write ``rules`` into ``folder`` and run ``promtool check rules`` and ``test rules``."""
    binary = promtool()
    (folder / "rules.yaml").write_text(rules.to_yaml())
    (folder / "rules.test.yaml").write_text(rules.tests_yaml())

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [binary, *args], capture_output=True, text=True, cwd=folder, timeout=120
        )

    return run("check", "rules", "rules.yaml"), run("test", "rules", "rules.test.yaml")


def test_two_models_pass_promtool_check_and_test(
    mlp_path: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    rules = prometheus_rules(spec_of(mlp_path, TWO_MODELS))
    assert rules.models == ("digits", "ranker")
    assert rules.records == 3 * len(WINDOWS_S)  # digits availability, ranker both
    assert rules.alerts == 3 * len(ALERT_PAIRS)
    assert rules.warnings == ()
    check, _ = run_promtool(rules, tmp_path)
    assert f"SUCCESS: {rules.records + rules.alerts} rules found" in check
    assert yaml.safe_load((tmp_path / "rules.test.yaml").read_text())["rule_files"] == [
        "rules.yaml"
    ]


def test_one_group_per_model_with_an_alert_per_sli_and_window_pair(
    mlp_path: pathlib.Path,
) -> None:
    rules = prometheus_rules(spec_of(mlp_path, TWO_MODELS)).rules
    groups = {g["name"]: g["rules"] for g in rules["groups"]}
    assert list(groups) == ["modelscale-slo-digits", "modelscale-slo-ranker"]
    ranker = groups["modelscale-slo-ranker"]
    records = [r for r in ranker if "record" in r]
    alerts = [r for r in ranker if "alert" in r]
    assert ranker == records + alerts  # each alert reads this evaluation's ratios
    assert {(r["record"], r["labels"]["sli"]) for r in records} == {
        (f"modelscale:slo_errors:ratio_rate{window_name(w)}", sli)
        for w in WINDOWS_S
        for sli in ("availability", "latency")
    }
    assert all(r["labels"]["model"] == "ranker" for r in ranker)
    latency = next(r["expr"] for r in records if r["labels"]["sli"] == "latency")
    assert 'modelscale_request_duration_seconds_bucket{model="ranker",le="0.25"}' in latency
    assert 'modelscale_request_duration_seconds_count{model="ranker"}' in latency
    availability = next(r["expr"] for r in records if r["labels"]["sli"] == "availability")
    assert 'status=~"5.."' in availability and "sum by (model)" in availability

    assert {a["alert"] for a in alerts} == {ALERT_NAME}
    assert sorted(
        (a["labels"]["sli"], a["labels"]["long_window"], a["labels"]["short_window"])
        for a in alerts
    ) == sorted(
        (sli, window_name(p.long_s), window_name(p.short_s))
        for sli in ("availability", "latency")
        for p in ALERT_PAIRS
    )
    page = next(
        a
        for a in alerts
        if a["labels"]
        == {
            "severity": "page",
            "sli": "latency",
            "model": "ranker",
            "long_window": "1h",
            "short_window": "5m",
        }
    )
    assert "for" not in page
    assert page["expr"].count("> (14.4 * (1 - 0.95))") == 2
    assert 'increase(modelscale_requests_total{model="ranker"}[1h])) >= 50' in page["expr"]
    description = page["annotations"]["description"]
    for words in ("more than 72%", "took longer than 250 ms", "95% latency objective", "30 days"):
        assert words in description


def test_the_outage_test_pages_when_the_workbook_says(mlp_path: pathlib.Path) -> None:
    """At 99.9%, 14.4x over 1 h is 52 s of total failure: not at the outage's first minute,
    at the next one."""
    tests = prometheus_rules(spec_of(mlp_path, TWO_MODELS)).tests["tests"]
    outage = next(t for t in tests if t["name"].startswith("availability: every request fails"))
    assert "ranker 1h/5m after 52 s (14.4 x 0.1% of 1h): not at 360m, at 361m" in outage["name"]
    assert "digits 1h/5m after 259 s (14.4 x 0.5% of 1h): not at 364m, at 365m" in outage["name"]
    by_time = {a["eval_time"]: a["exp_alerts"] for a in outage["alert_rule_test"]}
    assert by_time["360m"] == []
    page = {
        "severity": "page",
        "sli": "availability",
        "model": "ranker",
        "long_window": "1h",
        "short_window": "5m",
    }
    assert page in [a["exp_labels"] for a in by_time["361m"]]
    for test in tests:
        if "every request fails" not in test["name"]:  # budget rate and trickle: no alert at all
            assert all(a["exp_alerts"] == [] for a in test["alert_rule_test"]), test["name"]


MUTATIONS = {
    # The outage no longer pages.
    "burn rates x100": (
        lambda expr: re.sub(r"> \(", "> 100 * (", expr),
        "every request fails",
    ),
    # A trickle of failures pages.
    "no min_events guard": (
        lambda expr: expr.split("\nand on (model)\n")[0],
        "a trickle of failures",
    ),
    # Errors at the budget rate page.
    "thresholds /10": (
        lambda expr: re.sub(r"> \(", "> 0.1 * (", expr),
        "errors at exactly the budget rate",
    ),
}


@pytest.mark.parametrize("mutation", list(MUTATIONS))
def test_the_generated_tests_catch_broken_rules(
    mutation: str, mlp_path: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    change, failing_test = MUTATIONS[mutation]
    rules = prometheus_rules(spec_of(mlp_path, {"digits": {"availability": 0.999}}))
    for group in rules.rules["groups"]:
        for rule in group["rules"]:
            if "alert" in rule:
                rule["expr"] = change(rule["expr"])
    check, test = promtool_runs(rules, tmp_path)
    assert check.returncode == 0, check.stdout + check.stderr
    assert test.returncode != 0, test.stdout
    assert failing_test in test.stdout + test.stderr


def test_bucket_labels_are_written_as_the_server_writes_them(mlp_path: pathlib.Path) -> None:
    for threshold_ms, le in ((2.5, "0.0025"), (1000, "1.0"), (100, "0.1")):
        spec = spec_of(mlp_path, {"m": {"latency": {"p99_ms": threshold_ms}}})
        expr = prometheus_rules(spec).rules["groups"][0]["rules"][0]["expr"]
        assert f'le="{le}"' in expr, expr
    spec = spec_of(
        mlp_path,
        {"m": {"latency": {"threshold_ms": 120, "objective": 0.99}}},
        server={"latency_buckets_ms": [50, 120, 400]},
    )
    assert 'le="0.12"' in prometheus_rules(spec).rules["groups"][0]["rules"][0]["expr"]


@pytest.mark.parametrize(
    ("threshold_ms", "nearest"), [(120, "100 ms and 150 ms"), (20_000, "10000 ms)")]
)
def test_a_threshold_that_is_not_a_bucket_bound_is_refused(
    threshold_ms: float, nearest: str, mlp_path: pathlib.Path
) -> None:
    spec = spec_of(mlp_path, {"ranker": {"latency": {"threshold_ms": threshold_ms}}})
    with pytest.raises(InvalidInput) as caught:
        prometheus_rules(spec)
    assert caught.value.field == "models.ranker.slo.latency.threshold_ms"
    message = str(caught.value)
    assert f"Got {threshold_ms} ms instead (nearest bounds: {nearest}" in message
    assert f"add {threshold_ms} to server.latency_buckets_ms" in message


def test_a_spec_without_objectives_is_refused(mlp_path: pathlib.Path) -> None:
    spec = spec_of(mlp_path, {"digits": {"p99_ms": 100}, "ranker": {}})
    with pytest.raises(InvalidInput) as caught:
        prometheus_rules(spec, source="deploy/deploy.yaml")
    assert caught.value.field == "config"
    assert str(caught.value) == (
        "no model in deploy/deploy.yaml has an SLO (slo.availability or slo.latency); "
        "nothing to write"
    )


def test_alerts_that_can_never_fire_are_named(
    mlp_path: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    spec = spec_of(mlp_path, {"m": {"latency": {"threshold_ms": 100, "objective": 0.9}}})
    rules = prometheus_rules(spec, rules_file_name="../rules/slo.yaml")
    assert rules.warnings == (
        "m latency: the 1h/5m page alert can never fire: it needs more than 144% of requests to "
        "fail (burn rate 14.4 x budget 10%).",
    )
    assert rules.tests["rule_files"] == ["../rules/slo.yaml"]
    outage = rules.tests["tests"][0]
    assert "m 6h/30m after" in outage["name"]  # the page that can fire is tested instead
