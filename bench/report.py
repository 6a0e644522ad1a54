"""The report of the demo's knowledge base: size, charts, build time, and a real browser's view.

1. Builds ``modelscale report MODEL`` from a knowledge base (default: the one ``scripts/demo``
   leaves in .modelscale/modelscale.db) ``--repeat`` times: gathering the evidence, building the
   sections and the scorecard, rendering and writing the HTML. Reports the first (cold: Jinja2
   compiles the template, plotly.js is read from disk) and the median of the rest.
2. Opens the file in Debian's chromium (Playwright, every non-file request refused): waits for
   every chart element to be drawn by plotly.js, counts traces, values and drawn marks per chart,
   collects console errors, and keeps a full-page screenshot.
3. The same report as Markdown with PNG plots (matplotlib), timed once.

Targets: report <= 1.5 MB with 20 charts, built in <= 2 s from the demo's knowledge base, every
chart drawn with data, no console error, no request leaving the machine.

Run: scripts/demo && .venv/bin/python bench/report.py [--db sqlite:///.modelscale/modelscale.db]
     [--model digits] [--repeat 10] [--out bench/results/report]
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import statistics
import time

from modelscale.report import build_report, gather_evidence, write_report
from modelscale.store import open_store

CHROMIUM = "/usr/bin/chromium"


def build_once(db: str, model: str, out: pathlib.Path, fmt: str = "html") -> tuple[float, object]:
    started = time.perf_counter()
    store = open_store(db)
    try:
        report = build_report(gather_evidence(store, model), source=db)
    finally:
        store.close()
    write_report(report, out, fmt=fmt)  # type: ignore[arg-type]
    return time.perf_counter() - started, report


def browse(path: pathlib.Path, shot: pathlib.Path, charts: int) -> dict[str, object]:
    from playwright.sync_api import sync_playwright

    refused: list[str] = []
    errors: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
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
        started = time.perf_counter()
        page.goto(path.as_uri())
        page.wait_for_function(
            f"document.querySelectorAll('[data-chart].js-plotly-plot').length === {charts}"
        )
        drawn_s = time.perf_counter() - started
        per_chart = page.evaluate(
            """() => Array.from(document.querySelectorAll('[data-chart]')).map(el => ({
                chart: el.dataset.chart,
                section: el.closest('section').id,
                traces: (el.data || []).length,
                values: (el.data || []).reduce(
                    (n, t) => n + (t.y || []).filter(v => v !== null).length, 0),
                marks: el.querySelectorAll('.point, .trace path, .bars path').length,
            }))"""
        )
        page.screenshot(path=str(shot), full_page=True)
        browser.close()
    return {
        "open_and_draw_s": round(drawn_s, 3),
        "charts": per_chart,
        "every_chart_drawn": all(c["values"] > 0 and c["marks"] > 0 for c in per_chart),
        "console_errors": errors,
        "refused_requests": refused,
        "screenshot": str(shot),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--db", default=f"sqlite:///{pathlib.Path('.modelscale/modelscale.db')}")
    parser.add_argument("--model", default="digits")
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path("bench/results/report"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    html = args.out / f"{args.model}_report.html"
    times = []
    report = None
    for _ in range(args.repeat):
        seconds, report = build_once(args.db, args.model, html)
        times.append(seconds)
    assert report is not None
    md_s, _ = build_once(args.db, args.model, args.out / f"{args.model}_report.md", "md")
    result = {
        "model": args.model,
        "db": args.db,
        "load_average": os.getloadavg(),
        "size_bytes": html.stat().st_size,
        "size_mb": round(html.stat().st_size / 1e6, 3),
        "charts": report.charts,  # type: ignore[attr-defined]
        "sections": {
            s.key: ("missing" if s.missing else f"{len(s.charts)} charts")
            for s in report.sections  # type: ignore[attr-defined]
        },
        "scorecard": report.scorecard.summary,  # type: ignore[attr-defined]
        "build_first_s": round(times[0], 3),
        "build_median_s": round(statistics.median(times[1:] or times), 3),
        "markdown_with_pngs_s": round(md_s, 3),
        "browser": browse(html, args.out / "report.png", report.charts),  # type: ignore[attr-defined]
    }
    (args.out / "report.json").write_text(json.dumps(result, indent=2), encoding="utf-8")
    brief = {k: v for k, v in result.items() if k != "browser"}
    brief["browser"] = {k: v for k, v in result["browser"].items() if k != "charts"}  # type: ignore[union-attr]
    print(json.dumps(brief, indent=2))


if __name__ == "__main__":
    main()
