"""A replica's batch runner: one bad request in a stacked batch is isolated from the others."""

from __future__ import annotations

import numpy as np

from modelscale.runtime import Engine
from modelscale.serve.backend import Batch, BatchFailed, BatchOk, BatchSplit, PartFailed
from modelscale.serve.replica import run_batch


def test_a_good_batch_runs_once(seq_path) -> None:
    engine = Engine(seq_path)
    feeds = {"ids": np.ones((3, 4), dtype=np.int64), "mask": np.ones((3, 4), dtype=np.int64)}
    outcome = run_batch(engine, Batch(feeds, (1, 2), ("out",)), replica="r0")
    assert isinstance(outcome, BatchOk) and outcome.replica == "r0"
    assert outcome.outputs[0].shape == (3, 4, 8) and outcome.infer_s > 0


def test_a_bad_row_is_blamed_on_its_request_only(seq_path) -> None:
    engine = Engine(seq_path)
    ids = np.ones((3, 4), dtype=np.int64)
    ids[1:] = 999  # the second request (2 rows) is outside the vocabulary
    feeds = {"ids": ids, "mask": np.ones((3, 4), dtype=np.int64)}
    outcome = run_batch(engine, Batch(feeds, (1, 2), ("out",)))
    assert isinstance(outcome, BatchSplit)
    good, bad = outcome.parts
    assert isinstance(good, list) and good[0].shape == (1, 4, 8)
    assert isinstance(bad, PartFailed) and bad.status == 400 and "Gather" in bad.message


def test_a_single_bad_request_is_a_400(seq_path) -> None:
    engine = Engine(seq_path)
    feeds = {"ids": np.full((1, 2), 999, dtype=np.int64), "mask": np.ones((1, 2), dtype=np.int64)}
    outcome = run_batch(engine, Batch(feeds, (1,), ("out",)))
    assert isinstance(outcome, BatchFailed)
    assert outcome.status == 400 and "INVALID_ARGUMENT" in outcome.message
