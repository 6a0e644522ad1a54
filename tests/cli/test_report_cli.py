"""`modelscale report`, `check` and `note` from the command line, on a real demo's runs."""

from __future__ import annotations

import json
import pathlib
import time

import pytest

from modelscale.store import Run, open_store
from tests.cli.helpers import invoke
from tests.report.conftest import load_demo_runs

pytestmark = pytest.mark.usefixtures("demo_store")


@pytest.fixture
def demo_store() -> None:
    """The demo's runs in the knowledge base the CLI opens by default."""
    store = open_store()
    load_demo_runs(store)
    store.close()


def test_report_writes_one_offline_file_and_says_what_is_missing(tmp_path: pathlib.Path) -> None:
    out = tmp_path / "digits.html"
    result = invoke("report", "digits", "--out", str(out))
    assert result.exit_code == 0, result.output
    assert out.exists() and "24 charts" in result.stdout
    assert "Privacy, Assessments, Findings and decisions." in result.stdout
    assert "Scorecard: digits:" in result.stdout
    md = invoke("report", "digits", "--format", "md", "--out", str(tmp_path / "r.md"))
    assert md.exit_code == 0, md.output
    assert (tmp_path / "r_files" / "profile-latency.png").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("report", "nope"), "No model 'nope'"),
        (("report", "digits", "--format", "pdf"), "--format must be html or md"),
        (("report", "digits", "--since", "yesterday-ish"), "since"),
        (("report", "digits", "--out", "/proc/forbidden/r.html"), "Cannot write the report"),
        (("check", "nope"), "No model 'nope'"),
        (("check", "digits", "--policy", "missing.yaml"), "does not exist"),
        (("note", "add", "digits", "   "), "The note is empty"),
        (("note", "add", "nope", "text"), "No model 'nope'"),
        (("note", "add", "digits", "text", "--run", "999"), "No run with id 999"),
        (("note", "add", "digits", "text", "--tag", "has space"), "tag 'has space'"),
        (("note", "list", "nope"), "No model 'nope'"),
        (("check", "digits", "--deploy", "missing.yaml"), "missing.yaml"),
        (("check", "nope", "--deploy", "missing.yaml"), "missing.yaml"),
        (("logs", "slo", "--deploy", "missing.yaml"), "missing.yaml"),
        (("logs", "slo", "--deploy", "missing.yaml", "--window-days", "0"), "--window-days"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args: tuple[str, ...], message: str) -> None:
    before = [(r.id, r.results) for r in _runs()]
    result = invoke(*args)
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output
    assert [(r.id, r.results) for r in _runs()] == before  # nothing stored changed or was lost


def _runs() -> list[Run]:
    store = open_store()
    try:
        return store.runs()
    finally:
        store.close()


def test_check_is_a_ci_gate(tmp_path: pathlib.Path) -> None:
    failing = invoke("check", "digits")
    assert failing.exit_code == 1
    assert "fail" in failing.stdout and "plan validated under load" in failing.stdout
    card = json.loads(invoke("check", "digits", "--json").stdout)
    assert card["exit_code"] == 1
    assert {i["key"]: i["status"] for i in card["items"]}["drift"] == "fail"
    lenient = tmp_path / "checklist.yaml"
    lenient.write_text(
        "items:\n"
        "  plan_validated: {enabled: false}\n"
        "  drift: {enabled: false}\n"
        "  privacy: {required: false}\n"
        "  assessment: {required: false}\n"
        "  findings: {required: false}\n",
        encoding="utf-8",
    )
    assert invoke("check", "digits", "--policy", str(lenient)).exit_code == 0


def test_notes_appear_in_the_report_beside_their_run(tmp_path: pathlib.Path) -> None:
    added = invoke(
        "note",
        "add",
        "digits",
        "int8 chosen: same accuracy, 0.38x the size",
        "--run",
        "2",
        "--tag",
        "review",
    )
    assert added.exit_code == 0, added.output
    assert "Stored as note" in added.stdout
    assert invoke("note", "add", "digits", "plan misses on 2 cores").exit_code == 0
    listed = json.loads(invoke("note", "list", "digits", "--tag", "review", "--json").stdout)
    assert [n["results"]["text"] for n in listed] == ["int8 chosen: same accuracy, 0.38x the size"]
    assert listed[0]["params"]["run"] == 2
    every = invoke("note", "list")
    assert "plan misses on 2 cores" in every.stdout
    out = tmp_path / "r.html"
    assert invoke("report", "digits", "--out", str(out)).exit_code == 0
    html = out.read_text(encoding="utf-8")
    compression = html[html.index('<section id="compress"') : html.index('<section id="plan"')]
    assert "int8 chosen: same accuracy" in compression and "on run 2" in compression
    card = json.loads(invoke("check", "digits", "--json").stdout)
    findings = next(i for i in card["items"] if i["key"] == "findings")
    assert findings["status"] == "pass" and len(findings["runs"]) == 3  # the demo's and these
    assert "plan misses on 2 cores" in findings["detail"]


def _served_log(tmp_path: pathlib.Path, slow: int) -> pathlib.Path:
    """deploy.yaml for digits with objectives, and a request log with ``slow`` slow answers."""
    from modelscale.observe import LogLocation, LogWriter
    from tests.observe.test_compliance import _rec

    writer = LogWriter(LogLocation.of(tmp_path / "logs"))
    now = time.time()
    writer.record(
        [_rec("digits", 200, 5.0, now - 30) for _ in range(400 - slow)]
        + [_rec("digits", 200, 500.0, now - 30) for _ in range(slow)]
    )
    writer.flush()
    model = tmp_path / "digits.onnx"
    model.write_bytes(b"not read by these commands")
    deploy = tmp_path / "deploy.yaml"
    deploy.write_text(
        "models:\n"
        f"  digits:\n    versions: {{'1': {{path: {model}}}}}\n"
        "    slo: {availability: 0.999, latency: {threshold_ms: 100, objective: 0.99}}\n"
        f"log: {{path: {tmp_path / 'logs'}}}\n",
        encoding="utf-8",
    )
    return deploy


def test_objectives_measured_over_the_log_decide_the_slo_item(tmp_path: pathlib.Path) -> None:
    deploy = _served_log(tmp_path, slow=40)  # 10% slow against a 99% objective
    measured = invoke("logs", "slo", "--deploy", str(deploy))
    assert measured.exit_code == 0, measured.output
    assert "latency 99.0000%" in measured.stdout and "no" in measured.stdout
    card = json.loads(invoke("check", "digits", "--json").stdout)
    slo = next(i for i in card["items"] if i["key"] == "slo")
    assert slo["status"] == "fail" and "NOT met" in slo["detail"]
    fine = _served_log(tmp_path / "b", slow=0)
    card = json.loads(invoke("check", "digits", "--deploy", str(fine), "--json").stdout)
    slo = next(i for i in card["items"] if i["key"] == "slo")
    assert slo["status"] == "pass" and ": met." in slo["detail"]
    html = tmp_path / "r.html"
    assert invoke("report", "digits", "--out", str(html)).exit_code == 0
    assert 'id="chart-slo-budget"' in html.read_text(encoding="utf-8")
    bad = invoke("logs", "slo", "--deploy", str(fine), "--model", "nope")
    assert bad.exit_code == 2 and "serves no model 'nope'" in bad.output
