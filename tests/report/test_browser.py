"""The demo's report in Debian's chromium with every request to the network refused: it opens,
every chart draws its data, and the console stays clean."""

from __future__ import annotations

import pathlib

import pytest

from modelscale.report import build_report, gather_evidence, write_report
from modelscale.store import Store
from tests.browser import CHROMIUM, require_chromium

pytestmark = pytest.mark.slow


def test_the_report_renders_offline_in_a_real_browser(
    demo_store: Store, tmp_path: pathlib.Path
) -> None:
    require_chromium()
    from playwright.sync_api import sync_playwright

    report = build_report(gather_evidence(demo_store, "digits"))
    out = write_report(report, tmp_path / "digits.html")
    refused: list[str] = []
    errors: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=str(CHROMIUM), args=["--no-sandbox", "--disable-gpu"]
        )
        try:
            context = browser.new_context(viewport={"width": 1300, "height": 900})

            def route(r) -> None:  # type: ignore[no-untyped-def]
                if r.request.url.startswith("file://"):
                    r.continue_()
                else:
                    refused.append(r.request.url)
                    r.abort()

            context.route("**/*", route)
            page = context.new_page()
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(out.as_uri())
            page.wait_for_function(
                "document.querySelectorAll('[data-chart].js-plotly-plot').length === "
                f"{report.charts}",
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
            shot = tmp_path / "report.png"
            page.screenshot(path=str(shot), full_page=True)
        finally:
            browser.close()
    assert not refused and not errors, (refused, errors)
    assert len(drawn) == report.charts
    sections = {s.key for s in report.sections if s.charts}
    assert {d["section"] for d in drawn} == sections
    for d in drawn:
        assert d["traces"] > 0 and d["values"] > 0 and d["marks"] > 0, d
    assert shot.stat().st_size > 100_000
