"""A replica's batch runner: one bad request in a stacked batch is isolated from the others."""

from __future__ import annotations

import numpy as np

from modelscale.runtime import Engine
from modelscale.serve.backend import Batch, BatchFailed, BatchOk, BatchSplit, PartFailed
from modelscale.serve.replica import engine_message, load_engine, run_batch
from tests.serve.test_validation_corpus import save_broadcast_model


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
    assert outcome.status == 400 and "out of" in outcome.message, outcome.message
    assert "ONNXRuntimeError" not in outcome.message


def test_engine_messages_lose_source_paths_and_cpp_names() -> None:
    raw = (
        "[ONNXRuntimeError] : 1 : FAIL : Non-zero status code returned while running Add node. "
        "Name:'add' Status Message: /onnxruntime_src/onnxruntime/core/providers/cpu/math/"
        "element_wise_ops.h:560 void onnxruntime::BroadcastIterator::Append(ptrdiff_t, ptrdiff_t) "
        "axis == 1 || axis == largest was false. Attempting to broadcast an axis by a dimension "
        "other than 1. 4 by 5\n\nmore lines"
    )
    message = engine_message(RuntimeError(raw))
    assert message == (
        "Non-zero status code returned while running Add node. Name:'add' Status Message: "
        "axis == 1 || axis == largest was false. Attempting to broadcast an axis by a dimension "
        "other than 1. 4 by 5"
    )
    assert engine_message(RuntimeError("plain words")) == "plain words"


def test_a_run_time_failure_is_the_clients_when_the_model_still_runs(tmp_path) -> None:
    engine = load_engine(save_broadcast_model(tmp_path / "b.onnx"), 1)
    assert engine.warmup is not None and engine.warmup.seconds > 0
    feeds = {"x": np.ones((1, 5), dtype=np.float32)}  # declared [batch, n]; runs only n = 4
    outcome = run_batch(engine, Batch(feeds, (1,), ("y",)))
    assert isinstance(outcome, BatchFailed) and outcome.status == 400, outcome
    assert "broadcast" in outcome.message and "element_wise_ops" not in outcome.message
    # A model that cannot even run its warm-up inputs gets no such benefit of the doubt.
    engine.warmup = None
    outcome = run_batch(engine, Batch(feeds, (1,), ("y",)))
    assert isinstance(outcome, BatchFailed) and outcome.status == 500
