"""`modelscale report`, `check` and `note` from the command line, on a real demo's runs."""

from __future__ import annotations

import json
import pathlib

import pytest

from modelscale.store import open_store
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
    assert out.exists() and "19 charts" in result.stdout
    assert "No privacy yet: modelscale privacy audit" in result.stdout
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
    ],
)
def test_bad_input_is_one_line_and_exit_2(args: tuple[str, ...], message: str) -> None:
    result = invoke(*args)
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output


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
        "decision",
    )
    assert added.exit_code == 0, added.output
    assert "Stored as note" in added.stdout
    assert invoke("note", "add", "digits", "plan misses on 2 cores").exit_code == 0
    listed = json.loads(invoke("note", "list", "digits", "--tag", "decision", "--json").stdout)
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
    assert findings["status"] == "pass" and len(findings["runs"]) == 2
