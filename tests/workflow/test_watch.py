"""The demo's monitor step end to end: the digits server flags shifted traffic within two
windows and records the alert (real server, real load generator, real knowledge base)."""

from __future__ import annotations

import pathlib

import numpy as np
import pytest

from modelscale.examples import build_example
from modelscale.store import open_store
from modelscale.workflow import Recorder, shift_digits, watch_example

pytestmark = pytest.mark.e2e


def test_clean_traffic_passes_and_the_shift_is_flagged_within_two_windows(
    tmp_path: pathlib.Path,
) -> None:
    example = build_example("digits")
    store = open_store()
    try:
        step = watch_example(example, tmp_path / "watch", recorder=Recorder(store))
    finally:
        store.close()
    assert step.baseline.run_id is not None and step.baseline.calibration is not None
    clean = [w for w in step.windows if w["end"] <= step.shift_at]
    assert clean and all(w["verdict"] == "ok" for w in clean), [w["verdict"] for w in clean]
    assert step.flagged_after is not None and step.flagged_after <= 2
    firing = [a for a in step.alerts if a["state"] == "firing"]
    assert any(a["sli"] == "drift" for a in firing), step.alerts
    flagged = next(w for w in step.windows if w["verdict"] == "drift")
    assert {"pixels.c0.mean", "pixels.c0.std"} <= set(flagged["drift"]["drifted"])
    estimate = flagged["accuracy"]["estimate"]
    clean_estimate = clean[0]["accuracy"]["estimate"]
    assert estimate["value"] < clean_estimate["value"]  # the shift costs accuracy, and it shows


def test_shift_digits_lowers_contrast_and_stays_in_range() -> None:
    x = np.random.default_rng(0).random((50, 1, 8, 8)).astype(np.float32)
    y = shift_digits(x)
    assert y.dtype == x.dtype and y.shape == x.shape
    assert y.min() >= 0.0 and y.max() <= 1.0
    assert y.std() < x.std()
