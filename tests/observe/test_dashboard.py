"""The live dashboard in a real browser against a real server under load, and its routes' bad input.

The page is driven in Debian's chromium through Playwright with every request to another host
refused, so the page works offline and is seen to ask nothing of the internet.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import shutil
import subprocess
import sys
import urllib.parse
from collections.abc import Iterator

import httpx
import numpy as np
import pytest

from modelscale.config import DeploymentSpec
from modelscale.serve import ServerProcess, start_server
from tests.browser import CHROMIUM, require_chromium
from tests.serve.conftest import infer_body

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

CHARTS = ("chart-latency", "chart-throughput", "chart-errors", "chart-batch", "chart-queue")
KEY = "dashboard-test-key"
# Chromium reports every answer >= 400 on the console; before the key is entered the page's
# polls are answered 401 by design, and that line is the browser's, not the page's.
EXPECTED_401 = "Failed to load resource: the server responded with a status of 401"


@pytest.fixture
def server(tmp_path: pathlib.Path, mlp_path: pathlib.Path) -> Iterator[ServerProcess]:
    """The MLP as "mlp" version "1" behind an API key, with availability and latency SLOs."""
    key_file = tmp_path / "key.txt"
    key_file.write_text(f"{KEY}\n", encoding="utf-8")
    spec = DeploymentSpec.from_dict(
        {
            "models": {
                "mlp": {
                    "versions": {"1": {"path": str(mlp_path)}},
                    "batching": {"max_batch": 8, "max_wait_ms": 2},
                    "slo": {
                        "availability": 0.999,
                        "latency": {"threshold_ms": 100, "objective": 0.99},
                    },
                }
            },
            "server": {"port": 0},
            "auth": {"api_key_file": str(key_file)},
        }
    )
    with start_server(spec) as s:
        yield s


def _auth(key: str = KEY) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _infer(server: ServerProcess, n: int) -> None:
    x = np.random.default_rng(0).standard_normal((2, 16)).astype(np.float32)
    with httpx.Client(base_url=server.url, headers=_auth(), timeout=30) as client:
        for _ in range(n):
            resp = client.post("/v2/models/mlp/infer", json=infer_body(x))
            assert resp.status_code == 200, resp.text


@contextlib.contextmanager
def _load(server: ServerProcess, tmp_path: pathlib.Path, seconds: float) -> Iterator[None]:
    """`modelscale load` at a steady rate in its own process for ``seconds``."""
    key_file = tmp_path / "load-key.txt"
    key_file.write_text(KEY, encoding="utf-8")
    cmd = [
        sys.executable,
        "-c",
        "import modelscale.cli.load, modelscale.cli as c; c.main()",
        "load",
        server.url,
        "--model",
        "mlp",
        "--rate",
        "40",
        "--duration",
        str(seconds),
        "--warmup",
        "0",
        "--api-key-file",
        str(key_file),
        "--no-store",
    ]
    out = tmp_path / "load.log"
    with out.open("wb") as log:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
    try:
        yield
        assert proc.poll() is None, f"the load ended too soon:\n{out.read_text()}"
    finally:
        proc.terminate()
        proc.wait(30)


def _chart_data(page, chart_id: str) -> list[dict]:
    return page.evaluate(
        """id => (document.getElementById(id).data || []).map(t => ({
            name: t.name, x: t.x.length, y: Array.from(t.y)}))""",
        chart_id,
    )


def test_dashboard_shows_live_metrics_in_a_real_browser(
    server: ServerProcess, tmp_path: pathlib.Path
) -> None:
    require_chromium()
    from playwright.sync_api import sync_playwright

    _infer(server, 20)
    origin = urllib.parse.urlsplit(server.url)
    refused: list[str] = []
    console: list[str] = []
    screenshot = tmp_path / "dashboard.png"

    def route(r) -> None:
        url = urllib.parse.urlsplit(r.request.url)
        if url.scheme in ("http", "https") and url.netloc == origin.netloc:
            r.continue_()
        else:
            refused.append(r.request.url)
            r.abort()

    with _load(server, tmp_path, seconds=60), sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=str(CHROMIUM),
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--no-first-run",
                "--disable-sync",
            ],
        )
        try:
            context = browser.new_context(viewport={"width": 1400, "height": 1000})
            context.route("**/*", route)
            page = context.new_page()
            page.on(
                "console",
                lambda m: (
                    console.append(f"{m.type}: {m.text}")
                    if m.type in ("error", "warning")
                    else None
                ),
            )
            page.on("pageerror", lambda e: console.append(f"pageerror: {e}"))

            page.goto(f"{server.url}/dashboard")
            page.get_by_label("API key").wait_for(state="visible")
            assert page.get_by_label("API key").get_attribute("type") == "password"

            # A wrong key is refused with the server's message, and asked for again.
            page.get_by_label("API key").fill("not-the-key")
            page.get_by_role("button", name="Connect").click()
            wrong = httpx.get(f"{server.url}/v2/observe/live", headers=_auth("not-the-key"))
            page.wait_for_function(
                "m => document.getElementById('key-message').textContent === m",
                arg=wrong.json()["error"],
            )
            assert page.get_by_label("API key").is_visible()
            assert "updated" not in page.evaluate("Object.keys(document.body.dataset)")
            assert all(EXPECTED_401 in line for line in console), console
            console.clear()

            page.get_by_label("API key").fill(KEY)
            page.get_by_role("button", name="Connect").click()
            page.wait_for_function("Number(document.body.dataset.updated) >= 1", timeout=20_000)
            assert page.evaluate("sessionStorage.getItem('modelscale.apiKey')") == KEY
            assert not page.get_by_label("API key").is_visible()

            for chart in CHARTS:
                assert page.locator(f"#{chart} .main-svg").count() > 0, chart
                traces = _chart_data(page, chart)
                assert traces and {t["name"] for t in traces} == {"mlp:1"}, (chart, traces)
                for t in traces:
                    assert t["x"] == len(t["y"]) > 0, (chart, t["name"])
                assert any(y is not None for t in traces for y in t["y"]), chart

            rows = page.locator("#slo-table tbody tr")
            texts = sorted(rows.nth(i).inner_text() for i in range(rows.count()))
            assert len(texts) == 2, texts
            assert texts[0].startswith("mlp\tavailability\t99.9%"), texts
            assert texts[1].startswith("mlp\tlatency\t99%"), texts
            assert all("1h/5m" in t for t in texts), texts
            assert "written" in page.locator("#log-status").inner_text()
            assert "mlp:1" in page.locator("#replicas-table").inner_text()

            # Polls keep coming while the load runs, and what they show moves.
            first = int(page.evaluate("document.body.dataset.updated"))
            before = _chart_data(page, "chart-throughput")[0]["y"]
            page.wait_for_function(
                f"Number(document.body.dataset.updated) >= {first + 2}", timeout=20_000
            )
            after = _chart_data(page, "chart-throughput")[0]["y"]
            assert after != before
            assert max(y or 0 for y in after) > 0
            assert page.locator("#updated").inner_text().startswith("last updated")
            assert page.locator("#banner").is_hidden()

            page.screenshot(path=str(screenshot), full_page=True)
        finally:
            browser.close()

    artefacts = os.environ.get("MODELSCALE_TEST_ARTEFACTS")
    if artefacts:
        pathlib.Path(artefacts).mkdir(parents=True, exist_ok=True)
        shutil.copy(screenshot, pathlib.Path(artefacts) / "dashboard.png")
    assert screenshot.stat().st_size > 0
    assert refused == []
    assert console == []


def test_dashboard_routes_refuse_bad_input(server: ServerProcess) -> None:
    with httpx.Client(base_url=server.url, timeout=30) as client:
        page = client.get("/dashboard")
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        assert 'id="chart-latency"' in page.text
        assert client.get("/dashboard/plotly.min.js").status_code == 200
        assert client.post("/dashboard").status_code == 405

        for headers in ({}, _auth("not-the-key")):
            resp = client.get("/v2/observe/live", headers=headers)
            assert resp.status_code == 401, resp.text
            assert resp.json()["error"]

        for window in ("abc", "0", "100000", "-5"):
            resp = client.get("/v2/observe/live", params={"window_s": window}, headers=_auth())
            assert resp.status_code == 400, (window, resp.text)
            assert "window_s" in resp.json()["error"], (window, resp.text)

        for window in ("1", "3600"):
            resp = client.get("/v2/observe/live", params={"window_s": window}, headers=_auth())
            assert resp.status_code == 200, (window, resp.text)
            body = resp.json()
            assert body["window_s"] == int(window)
            assert [(v["model"], v["version"]) for v in body["versions"]] == [("mlp", "1")]
            assert {s["sli"] for s in body["slo"]} == {"availability", "latency"}
