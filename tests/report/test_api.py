"""Reports built from a real demo's knowledge base: every section, HTML and Markdown."""

from __future__ import annotations

import json
import pathlib
import re

import pytest

from modelscale.errors import InvalidInput
from modelscale.report import build_report, gather_evidence, write_report
from modelscale.report.html import PLOTLY_BUNDLE
from modelscale.store import Store, open_store

# The demo records evidence for every section; its one assessment is the baseline (nothing
# compared yet, so no chart), and notes are text.
SECTIONS_WITH_EVIDENCE = {
    "card",
    "profile",
    "compress",
    "plan",
    "load",
    "laws",
    "slo",
    "drift",
    "experiments",
    "privacy",
    "assess",
    "notes",
}
WITHOUT_CHARTS = {"assess", "notes"}


def _chart_data(html: str) -> dict[str, dict]:
    match = re.search(r'<script id="chart-data" type="application/json">(.*?)</script>', html, re.S)
    assert match is not None
    return json.loads(match.group(1))


def test_the_demo_report_draws_every_section_it_has_evidence_for(
    demo_store: Store, tmp_path: pathlib.Path
) -> None:
    report = build_report(gather_evidence(demo_store, "digits"))
    with_evidence = {s.key for s in report.sections if not s.missing}
    assert with_evidence == SECTIONS_WITH_EVIDENCE
    for s in report.sections:
        if s.missing:
            assert s.missing.startswith("modelscale ")  # names the command that produces it
            continue
        assert s.runs, s.key
        if s.key not in WITHOUT_CHARTS:
            assert s.charts, s.key
            assert all(c.points > 0 for c in s.charts), s.key

    out = write_report(report, tmp_path / "r.html")
    html = out.read_text(encoding="utf-8")
    charts = _chart_data(html)
    assert set(charts) == {c.key for s in report.sections for c in s.charts}
    for key, fig in charts.items():
        values = [v for t in fig["data"] for v in t["y"] if v is not None]
        assert values, key
    # one copy of the plotly bundle, nothing fetched from elsewhere
    assert html.count("plotly.js (basic - minified)") == 1
    bundle = PLOTLY_BUNDLE.read_text(encoding="utf-8")
    assert not re.search(r'(src|href)="(https?:)?//', html.replace(bundle, ""))
    assert out.stat().st_size <= 1.5 * 2**20
    assert out.stat().st_size > PLOTLY_BUNDLE.stat().st_size


def test_a_compressed_version_and_its_runs_belong_to_the_family(demo_store: Store) -> None:
    ev = gather_evidence(demo_store, "digits")
    assert [v.name for v in ev.versions] == ["digits", "digits.int8-dynamic-pc"]
    # the canary's runs are filed under the int8 version, the profile under the original
    assert {r.model_version for r in ev.of("experiment")} == {ev.versions[1].sha256}
    assert ev.of("profile")
    # asking by the derived version finds the same family
    assert gather_evidence(demo_store, ev.versions[1].sha256[:10]).versions == ev.versions
    # the text model's runs are not digits'
    assert all(r.model_name != "minilm" for r in ev.runs)
    minilm = gather_evidence(demo_store, "minilm")
    assert {r.kind for r in minilm.runs} == {"load", "privacy"}


def test_a_model_with_no_runs_still_gets_a_report_that_says_what_is_missing(
    tmp_path: pathlib.Path,
) -> None:
    store = open_store()
    store.register_model("ab" * 32, name="fresh")
    report = build_report(gather_evidence(store, "fresh"))
    missing = [s for s in report.sections if s.missing]
    assert len(missing) == len(report.sections) - 1  # the card always has the versions
    assert {s.key for s in missing} >= {"profile", "compress", "plan", "notes", "privacy"}
    html = write_report(report, tmp_path / "fresh.html").read_text(encoding="utf-8")
    assert "No evidence yet. Run <code>modelscale profile" in html
    assert report.scorecard.exit_code == 1
    md = write_report(report, tmp_path / "fresh.md", fmt="md").read_text(encoding="utf-8")
    assert "_No evidence yet: run `modelscale compress" in md


def test_unknown_models_and_bad_output_paths_are_refused(
    demo_store: Store, tmp_path: pathlib.Path
) -> None:
    with pytest.raises(
        InvalidInput,
        match=r"No model 'nope'.*Known models: digits, digits.int8-dynamic-pc, minilm\.",
    ):
        gather_evidence(demo_store, "nope")
    report = build_report(gather_evidence(demo_store, "digits"))
    with pytest.raises(InvalidInput, match="is a directory"):
        write_report(report, tmp_path)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(InvalidInput, match="Cannot write the report"):
        write_report(report, blocker / "sub" / "r.html")
    with pytest.raises(InvalidInput, match="html or md"):
        write_report(report, tmp_path / "r.pdf", fmt="pdf")  # type: ignore[arg-type]


def test_markdown_links_a_png_for_every_chart(demo_store: Store, tmp_path: pathlib.Path) -> None:
    report = build_report(gather_evidence(demo_store, "digits"))
    out = write_report(report, tmp_path / "pr" / "report.md", fmt="md")
    text = out.read_text(encoding="utf-8")
    links = re.findall(r"!\[[^\]]*\]\(([^)]+\.png)\)", text)
    assert len(links) == report.charts
    for link in links:
        png = out.parent / link
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert png.stat().st_size > 5_000  # drawn, not blank
    assert "| Compression evaluated | **pass** |" in text


def test_since_leaves_out_older_runs(demo_store: Store) -> None:
    every = gather_evidence(demo_store, "digits")
    cut = sorted(r.created_at for r in every.runs)[len(every.runs) // 2]
    recent = gather_evidence(demo_store, "digits", since=cut)
    assert 0 < len(recent.runs) < len(every.runs)
    assert all(r.created_at >= cut for r in recent.runs)


def test_a_knowledge_base_written_by_the_first_release_still_reports(
    tmp_path: pathlib.Path,
) -> None:
    """tests/data/kb-0.1.0.sqlite: runs whose results predate most fields the report reads."""
    import shutil

    db = tmp_path / "old.sqlite"
    shutil.copy(pathlib.Path(__file__).parents[1] / "data" / "kb-0.1.0.sqlite", db)
    store = open_store(f"sqlite:///{db}")
    try:
        ev = gather_evidence(store, "mlp")
        report = build_report(ev)
    finally:
        store.close()
    present = {s.key for s in report.sections if not s.missing}
    assert {"card", "profile", "compress", "plan", "load", "notes"} <= present
    compress = next(s for s in report.sections if s.key == "compress")
    assert [row[0] for row in compress.tables[0].rows] == ["int8", "prune50"]
    assert all(c.points > 0 for s in report.sections for c in s.charts)
    html = write_report(report, tmp_path / "old.html").read_text(encoding="utf-8")
    assert all(fig["data"] for fig in _chart_data(html).values())
