"""The demo's report in Debian's chromium with every request to the network refused: it opens,
every chart draws its data, and the console stays clean."""

from __future__ import annotations

import pathlib

import pytest

from modelscale.report import build_report, gather_evidence, write_report
from modelscale.store import Store
from tests.browser import offline_page, require_chromium

pytestmark = pytest.mark.slow


def test_the_report_renders_offline_in_a_real_browser(
    demo_store: Store, tmp_path: pathlib.Path
) -> None:
    require_chromium()
    report = build_report(gather_evidence(demo_store, "digits"))
    out = write_report(report, tmp_path / "digits.html")
    console: list[str] = []
    shot = tmp_path / "report.png"
    with offline_page(out.as_uri(), height=900) as (page, refused, errors):
        page.on("console", lambda m: console.append(m.text) if m.type == "error" else None)
        page.goto(out.as_uri())
        page.wait_for_function(
            f"document.querySelectorAll('[data-chart].js-plotly-plot').length === {report.charts}",
            timeout=30_000,
        )
        drawn = page.evaluate(
            """() => Array.from(document.querySelectorAll('[data-chart]')).map(el => ({
                section: el.closest('section').id,
                traces: (el.data || []).length,
                values: (el.data || []).reduce(
                    (n, t) => n + (t.y || []).filter(v => v !== null).length, 0),
                marks: el.querySelectorAll('.point, .trace path, .bars path').length,
            }))"""
        )
        page.screenshot(path=str(shot), full_page=True)
    assert not refused and not errors and not console, (refused, errors, console)
    assert len(drawn) == report.charts
    sections = {s.key for s in report.sections if s.charts}
    assert {d["section"] for d in drawn} == sections
    for d in drawn:
        assert d["traces"] > 0 and d["values"] > 0 and d["marks"] > 0, d
    assert shot.stat().st_size > 100_000
