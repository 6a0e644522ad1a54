"""`modelscale monitor rules`: writes the rule file and its promtool tests, or says what is wrong."""

from __future__ import annotations

import os
import pathlib
import subprocess
from typing import Any

import pytest
import yaml

from tests.cli.helpers import invoke, invoke_json
from tests.observe.test_rules import promtool


def write_spec(folder: pathlib.Path, model: pathlib.Path, slos: dict[str, Any]) -> pathlib.Path:
    """A deploy.yaml in ``folder`` serving ``model`` under each name in ``slos``."""
    path = folder / "deploy.yaml"
    models = {
        name: {"versions": {"1": {"path": str(model)}}, "slo": slo} for name, slo in slos.items()
    }
    path.write_text(yaml.safe_dump({"models": models}))
    return path


SLOS = {
    "digits": {"availability": 0.995},
    "ranker": {"availability": 0.999, "latency": {"p99_ms": 100, "objective": 0.95}},
}


def assert_bad_input(result: Any, message: str) -> None:
    """Exit code 2 and one line on stderr that says ``message``."""
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("Error: "), result.stderr
    assert message in result.stderr, result.stderr
    assert result.stderr.strip().count("\n") == 0, result.stderr


def test_writes_the_rules_and_their_tests_beside_them(
    mlp_path: pathlib.Path, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    write_spec(tmp_path, mlp_path, SLOS)
    result = invoke("monitor", "rules", "-c", "deploy.yaml", "--out", "rules.yaml")
    assert result.exit_code == 0, result.output
    assert "2 model(s) with SLOs (digits, ranker): 9 alerts, 15 recording rules." in result.stdout
    assert "rules  rules.yaml" in result.stdout and "tests  rules.test.yaml" in result.stdout
    assert "promtool check rules rules.yaml && promtool test rules rules.test.yaml" in result.stdout
    rules = yaml.safe_load((tmp_path / "rules.yaml").read_text())
    assert [g["name"] for g in rules["groups"]] == [
        "modelscale-slo-digits",
        "modelscale-slo-ranker",
    ]
    tests = yaml.safe_load((tmp_path / "rules.test.yaml").read_text())
    assert tests["rule_files"] == ["rules.yaml"]
    written = sorted(p.name for p in tmp_path.iterdir() if p.name not in ("kb", "logs"))
    assert written == ["deploy.yaml", "rules.test.yaml", "rules.yaml"]  # no temporary files left
    mode = (tmp_path / "rules.yaml").stat().st_mode & 0o777
    umask = os.umask(0)
    os.umask(umask)
    assert mode == 0o666 & ~umask  # Prometheus, another user, can read it


def test_json_and_a_tests_path_in_another_folder(
    mlp_path: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    spec = write_spec(tmp_path, mlp_path, {"digits": {"availability": 0.999}})
    (tmp_path / "prometheus").mkdir()
    (tmp_path / "checks").mkdir()
    out, tests = tmp_path / "prometheus" / "slo.yml", tmp_path / "checks" / "slo_test.yaml"
    shown = invoke_json("monitor", "rules", "-c", str(spec), "-o", str(out), "--tests", str(tests))
    assert shown == {
        "rules_file": str(out),
        "tests_file": str(tests),
        "models": ["digits"],
        "alerts": 3,
        "records": 5,
        "warnings": [],
        "check": f"promtool check rules {out} && promtool test rules {tests}",
    }
    assert yaml.safe_load(tests.read_text())["rule_files"] == ["../prometheus/slo.yml"]
    default = invoke_json("monitor", "rules", "-c", str(spec), "-o", str(out))
    assert default["tests_file"] == str(tmp_path / "prometheus" / "slo.test.yml")
    binary = promtool()
    for args in (["check", "rules", str(out)], ["test", "rules", str(tests)]):
        done = subprocess.run([binary, *args], capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr


def test_alerts_that_can_never_fire_are_warned_of(
    mlp_path: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    spec = write_spec(tmp_path, mlp_path, {"m": {"availability": 0.9}})
    result = invoke("monitor", "rules", "-c", str(spec), "-o", str(tmp_path / "r.yaml"))
    assert result.exit_code == 0, result.output
    assert "! m availability: the 1h/5m page alert can never fire" in result.stdout


@pytest.mark.parametrize(
    ("slos", "message"),
    [
        (
            {"digits": {"p99_ms": 50}},
            "no model in {spec} has an SLO (slo.availability or slo.latency); nothing to write",
        ),
        (
            {"digits": {"latency": {"threshold_ms": 120}}},
            "models.digits.slo.latency.threshold_ms must be one of the request latency "
            "histogram's bucket bounds",
        ),
        (
            {"digits": {"availability": 1.5}},
            "models.digits.slo.availability: must be a fraction strictly between 0 and 1",
        ),
    ],
    ids=["no objectives", "threshold not a bucket", "invalid spec"],
)
def test_bad_specs_exit_2_and_write_nothing(
    slos: dict[str, Any], message: str, mlp_path: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    spec = write_spec(tmp_path, mlp_path, slos)
    result = invoke("monitor", "rules", "-c", str(spec), "-o", str(tmp_path / "rules.yaml"))
    assert_bad_input(result, message.format(spec=spec))
    assert sorted(p.name for p in tmp_path.glob("*.yaml")) == ["deploy.yaml"]


def test_a_missing_or_unreadable_spec(tmp_path: pathlib.Path) -> None:
    missing = tmp_path / "deploy.yaml"
    assert_bad_input(
        invoke("monitor", "rules", "-c", str(missing)),
        f"Deployment spec {missing} does not exist",
    )
    missing.write_text("models: [unclosed\n")
    result = invoke("monitor", "rules", "-c", str(missing))
    # load_deployment quotes the YAML parser's message, several lines with a caret under the spot.
    assert result.exit_code == 2 and result.stderr.startswith("Error: "), result.output
    assert f"{missing} is not valid YAML" in result.stderr


def test_an_output_folder_that_does_not_exist(
    mlp_path: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    spec = write_spec(tmp_path, mlp_path, SLOS)
    out = tmp_path / "nowhere" / "rules.yaml"
    assert_bad_input(
        invoke("monitor", "rules", "-c", str(spec), "-o", str(out)),
        f"Cannot write {out}: the folder {out.parent} does not exist. Create it first.",
    )
    # The rules' folder exists but the tests' does not: neither file is written.
    tests = tmp_path / "nowhere" / "rules.test.yaml"
    result = invoke(
        "monitor", "rules", "-c", str(spec), "-o", str(tmp_path / "r.yaml"), "--tests", str(tests)
    )
    assert_bad_input(result, f"Cannot write {tests}: the folder {tests.parent} does not exist.")
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix in (".yaml", ".tmp")) == [
        "deploy.yaml"
    ]
    assert_bad_input(
        invoke("monitor", "rules", "-c", str(spec), "-o", str(spec / "rules.yaml")),
        f"Cannot write {spec / 'rules.yaml'}: {spec} is not a folder.",
    )
    assert_bad_input(
        invoke("monitor", "rules", "-c", str(spec), "-o", str(tmp_path)),
        f"Cannot write {tmp_path}: it is a folder. Give a file path.",
    )
    assert_bad_input(
        invoke("monitor", "rules", "-c", str(spec), "-o", "r.yaml", "--tests", "r.yaml"),
        "--tests and --out are the same file (r.yaml)",
    )


def test_an_output_folder_that_cannot_be_written(
    mlp_path: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    spec = write_spec(tmp_path, mlp_path, SLOS)
    if os.geteuid() == 0:  # file permissions do not bind root; /proc takes no new files
        if not pathlib.Path("/proc/self").is_dir():
            pytest.skip("needs a folder that root cannot write to (/proc on Linux)")
        folder = pathlib.Path("/proc")
    else:
        folder = tmp_path / "read-only"
        folder.mkdir(mode=0o500)
    out = folder / "rules.yaml"
    result = invoke("monitor", "rules", "-c", str(spec), "-o", str(out))
    assert_bad_input(result, f"Cannot write {out}: ")
    assert "Choose a folder you can write to." in result.stderr
    assert not out.exists() and not list(folder.glob(".rules.yaml.*"))
