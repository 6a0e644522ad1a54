"""The dashboard's drift and accuracy panels in a real browser, from a real server's windows."""

from __future__ import annotations

import pathlib

import httpx
import numpy as np
import pytest

from modelscale.serve import start_server
from tests.browser import offline_page, require_chromium
from tests.monitor.test_server import D_IN, _infer, _spec, _windows

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def test_drift_and_accuracy_panels_show_the_windows(
    clf: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    require_chromium()

    rng = np.random.default_rng(4)
    with start_server(_spec(clf, tmp_path)) as server, httpx.Client(base_url=server.url) as c:
        for i in range(420):
            x = rng.standard_normal((1, D_IN)).astype(np.float32)
            if i >= 210:
                x[:, 1] += 3.0
            r = _infer(c, x, rid=f"d{i}")
            label = int(np.argmax(r.json()["outputs"][0]["data"]))
            c.post("/v2/models/clf/feedback", json={"id": f"d{i}", "label": label})
        assert len(_windows(c, 2)) >= 2
        with offline_page(server.url) as (page, refused, errors):
            page.goto(f"{server.url}/dashboard")
            page.wait_for_function(
                "!document.getElementById('monitor-section').hidden", timeout=20_000
            )
            page.wait_for_function(
                "(document.getElementById('chart-drift').data || []).length > 0",
                timeout=20_000,
            )
            drift = page.evaluate(
                "document.getElementById('chart-drift').data.map(t => [t.name, t.y])"
            )
            accuracy = page.evaluate(
                "document.getElementById('chart-accuracy').data.map(t => [t.name, t.y])"
            )
            status = page.locator("#monitor-status").inner_text()
    names = [n for n, _ in drift]
    assert names[0] == "clf:1 x[1]"  # the feature that moved most comes first
    assert max(y for y in drift[0][1] if y is not None) > 1.0
    realized = next(y for n, y in accuracy if n.endswith("from feedback"))
    assert realized[-1] == 1.0  # labels equal to the predictions: accuracy 1 in every window
    assert any(n.endswith("estimated (no labels)") for n, _ in accuracy)
    assert "clf:1: last window drift" in status
    assert refused == [] and errors == []
