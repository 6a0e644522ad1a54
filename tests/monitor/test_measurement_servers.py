"""Servers that only measure (a plan's validation, an assessment) do not watch their synthetic
traffic against the model's baseline: the drift it is bound to show would be stored as alerts
about the model and fail its scorecard."""

from __future__ import annotations

import pathlib

import httpx
import numpy as np
import pytest

from modelscale.config import DeploymentSpec
from modelscale.serve import start_server
from modelscale.store import open_store
from tests.monitor.test_server import D_IN, _infer

pytestmark = pytest.mark.e2e


def _drift_runs() -> int:
    store = open_store()
    try:
        return len(store.runs(model="clf", kind="drift"))
    finally:
        store.close()


@pytest.mark.parametrize("monitor", [True, False])
def test_only_a_serving_server_keeps_drift_windows(clf: pathlib.Path, monitor: bool) -> None:
    spec = DeploymentSpec.single(clf, name="clf", monitor=monitor)
    assert spec.models["clf"].monitor.enabled is monitor
    shifted = np.full((1, D_IN), 5.0, dtype=np.float32)  # far from the baseline's inputs
    with start_server(spec) as server, httpx.Client(base_url=server.url) as c:
        for _ in range(60):
            assert _infer(c, shifted).status_code == 200
    # the open window closes when the server stops: recorded only by a watching server
    assert (_drift_runs() > 0) is monitor
