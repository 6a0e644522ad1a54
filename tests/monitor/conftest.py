"""The monitored classifier the server tests share, with its baseline in the test's knowledge base."""

from __future__ import annotations

import pathlib

import numpy as np
import pytest

from modelscale.model import ModelArtifact
from modelscale.monitor import BaselineOptions, build_baseline
from modelscale.workflow import Recorder
from tests.monitor.test_server import CLASSES, D_IN, predict, save_classifier


@pytest.fixture()
def clf(tmp_path: pathlib.Path) -> pathlib.Path:
    path = save_classifier(tmp_path / "clf.onnx")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2_000, D_IN)).astype(np.float32)
    # Labels the model gets right about 80% of the time.
    labels = np.where(rng.random(2_000) < 0.8, predict(x), rng.integers(0, CLASSES, 2_000))
    artifact = ModelArtifact.load(path, name="clf")
    base = build_baseline(artifact, {"x": x}, labels=labels, options=BaselineOptions(name="ref"))
    Recorder.open(True).run_id(base)
    return path
