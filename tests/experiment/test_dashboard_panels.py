"""The dashboard's experiment panels in a real browser, from a real server running an A/B test."""

from __future__ import annotations

import os
import pathlib
import shutil

import httpx
import numpy as np
import pytest

from modelscale.serve import start_server
from tests.browser import offline_page, require_chromium
from tests.experiment.models import save_classifier
from tests.experiment.test_server import _body, _rows, _spec

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def test_experiment_panels_show_each_arm_and_the_lift(tmp_path: pathlib.Path) -> None:
    require_chromium()

    treatment = save_classifier(tmp_path / "t.onnx", nudge=0.01)
    spec = _spec(
        tmp_path,
        treatment,
        kind="ab",
        unit="header:X-User-Id",
        metrics=["clicks"],
        min_units=20,
    )
    rng = np.random.default_rng(9)
    with start_server(spec) as server, httpx.Client(base_url=server.url, timeout=30) as c:
        arms: dict[str, str] = {}
        for i in range(300):
            user = f"user-{i % 120}"
            r = c.post("/v2/models/clf/infer", json=_body(_rows(rng)), headers={"X-User-Id": user})
            assert r.status_code == 200, r.text
            arms[user] = r.headers["x-modelscale-arm"]
        for user, arm in arms.items():
            clicks = int(rng.random() < (0.6 if arm == "treatment" else 0.3))
            r = c.post(
                "/v2/models/clf/outcome", json={"unit": user, "metric": "clicks", "value": clicks}
            )
            assert r.status_code == 200, r.text
        want = c.get("/v2/experiments").json()["experiments"][0]
        with offline_page(server.url, height=1600) as (page, refused, errors):
            page.goto(f"{server.url}/dashboard")
            page.wait_for_function(
                "!document.getElementById('experiment-section').hidden", timeout=20_000
            )
            page.wait_for_function(
                "(document.getElementById('chart-arm-metrics').data || []).length > 0",
                timeout=20_000,
            )
            latency = page.evaluate(
                "document.getElementById('chart-arm-latency').data.map(t => [t.name, t.y])"
            )
            lift = page.evaluate(
                "document.getElementById('chart-arm-metrics').data"
                ".map(t => [t.y, t.x, t.error_x.array, t.error_x.arrayminus])"
            )
            table = page.locator("#experiment-table").inner_text()
            arm_rows = page.locator("#arm-table tbody tr")
            arm_text = [arm_rows.nth(i).inner_text() for i in range(arm_rows.count())]
            page.screenshot(path=str(tmp_path / "experiments.png"), full_page=True)
    artefacts = os.environ.get("MODELSCALE_TEST_ARTEFACTS")
    if artefacts:
        pathlib.Path(artefacts).mkdir(parents=True, exist_ok=True)
        shutil.copy(tmp_path / "experiments.png", pathlib.Path(artefacts) / "experiments.png")
    assert [n for n, _ in latency] == ["clf control (v1)", "clf treatment (v2)"]
    for _, (p50, p99) in latency:
        assert 0 < p50 <= p99
    names, x, hi, lo = lift[0]
    assert "clf clicks" in names
    clicks = next(m for m in want["metrics"] if m["metric"] == "clicks")["comparison"]
    i = names.index("clf clicks")
    assert x[i] == pytest.approx(clicks["lift"])
    assert x[i] - lo[i] == pytest.approx(clicks["lift_ci"][0])
    assert x[i] + hi[i] == pytest.approx(clicks["lift_ci"][1])
    assert "clf" in table and "(ab)" in table and "running" in table
    assert len(arm_text) == 2
    requests = want["arms"]["control"]["requests"], want["arms"]["treatment"]["requests"]
    assert sum(requests) == 300
    assert arm_text[0].split("\t")[2] == str(requests[0])
    assert refused == [] and errors == []
