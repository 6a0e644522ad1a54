"""Feedback bodies, the predictions waiting for their labels, and the joined pairs."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from modelscale.errors import InvalidInput
from modelscale.monitor.feedback import (
    MAX_ITEMS,
    FeedbackItem,
    Labels,
    PendingPredictions,
    parse_feedback,
)
from modelscale.monitor.summary import predictions_of

T0 = 1_700_000_000.0


# --- parse_feedback ------------------------------------------------------------------------


def test_one_label_and_a_list_of_items_are_accepted() -> None:
    assert parse_feedback({"id": "req-1", "label": 3}, task="classification") == [
        FeedbackItem("req-1", (3,))
    ]
    items = parse_feedback(
        {"items": [{"id": "a", "label": [0, 2.0, 1]}, {"id": "b", "label": 4}]},
        task="classification",
    )
    assert items == [FeedbackItem("a", (0, 2, 1)), FeedbackItem("b", (4,))]
    # A whole float is a class index, kept as an int.
    assert all(type(v) is int for v in items[0].label)
    assert len(parse_feedback({"items": [{"id": "x", "label": 1}] * MAX_ITEMS}, task="x")) == (
        MAX_ITEMS
    )


def test_a_regressor_takes_fractional_labels() -> None:
    assert parse_feedback({"id": "r", "label": 1.5}, task="regression") == [
        FeedbackItem("r", (1.5,))
    ]
    assert parse_feedback({"id": "r", "label": [-2, 0.25]}, task="regression")[0].label == (
        -2,
        0.25,
    )


@pytest.mark.parametrize(
    ("body", "field", "match"),
    [
        ([{"id": "a", "label": 1}], "body", "expected a JSON object"),
        ("id=a", "body", "expected a JSON object"),
        (None, "body", "expected a JSON object"),
        ({"id": "a", "label": 1, "extra": 2}, "body", "exactly the keys"),
        ({"id": "a"}, "body", "exactly the keys"),
        ({"label": 1}, "body", "exactly the keys"),
        ({}, "body", "exactly the keys"),
        ({"items": [{"id": "a", "label": 1}], "id": "b"}, "items", "the only key"),
        ({"items": {"id": "a", "label": 1}}, "items", "must be a list"),
        ({"items": []}, "items", "holds 0 entries"),
        ({"items": [{"id": "a", "label": 1}] * (MAX_ITEMS + 1)}, "items", "holds 10001"),
        ({"items": [{"id": "a", "label": 1}, "b"]}, "body", "item 1: expected exactly"),
        ({"items": [{"id": "a", "label": 1}, {"id": "b"}]}, "body", "item 1: expected exactly"),
        ({"id": "", "label": 1}, "id", "a string of 1 to 256"),
        ({"id": 7, "label": 1}, "id", "a string of 1 to 256"),
        ({"id": None, "label": 1}, "id", "a string of 1 to 256"),
        ({"id": "x" * 257, "label": 1}, "id", "a string of 1 to 256"),
        ({"id": "a", "label": True}, "label", "not a number"),
        ({"id": "a", "label": "3"}, "label", "not a number"),
        ({"id": "a", "label": None}, "label", "not a number"),
        ({"id": "a", "label": [1, [2]]}, "label", "label 1: label \\[2\\] is not a number"),
        ({"id": "a", "label": math.nan}, "label", "finite"),
        ({"id": "a", "label": math.inf}, "label", "finite"),
        ({"id": "a", "label": [0, -math.inf]}, "label", "finite"),
        ({"id": "a", "label": 1.5}, "label", "not a whole number"),
        ({"id": "a", "label": []}, "label", "empty list"),
    ],
)
def test_bad_bodies_are_refused_naming_the_field(body: Any, field: str, match: str) -> None:
    with pytest.raises(InvalidInput, match=match) as exc:
        parse_feedback(body, task="classification")
    assert exc.value.field == field


def test_a_classifier_asks_for_a_whole_number_and_a_regressor_for_a_number() -> None:
    with pytest.raises(InvalidInput, match=r"a class index \(a whole number\)"):
        parse_feedback({"id": "a", "label": "cat"}, task="classification")
    with pytest.raises(InvalidInput, match="expected a number") as exc:
        parse_feedback({"id": "a", "label": "cat"}, task="regression")
    assert exc.value.field == "label"
    with pytest.raises(InvalidInput, match="finite"):
        parse_feedback({"id": "a", "label": math.nan}, task="regression")


def test_a_bad_item_anywhere_refuses_the_whole_body() -> None:
    items = [{"id": f"r{i}", "label": i % 3} for i in range(50)]
    items[37] = {"id": "r37", "label": 0.5}
    with pytest.raises(InvalidInput, match="item 37"):
        parse_feedback({"items": items}, task="classification")


# --- PendingPredictions --------------------------------------------------------------------


def test_pending_predictions_are_found_until_their_ttl() -> None:
    pending = PendingPredictions(ttl_s=60, capacity=100)
    out = np.array([[0.1, 0.9]])
    pending.add("a", T0, "v1", out)
    state, p = pending.take("a", T0 + 60)
    assert state == "ok" and p is not None
    assert p[:2] == (T0, "v1") and p[2] is out
    assert pending.take("a", T0 + 60.5) == ("expired", None)
    assert pending.take("never", T0) == ("unknown", None)


def test_the_oldest_pending_predictions_are_evicted_beyond_capacity() -> None:
    pending = PendingPredictions(ttl_s=1_000, capacity=3)
    for i in range(5):
        pending.add(f"r{i}", T0 + i, "v1", np.array([i]))
    assert len(pending) == 3 and pending.evicted == 2
    assert [pending.take(f"r{i}", T0 + 5)[0] for i in range(5)] == [
        "unknown",
        "unknown",
        "ok",
        "ok",
        "ok",
    ]
    # Adding an id again refreshes it: it is no longer the oldest.
    pending.add("r2", T0 + 6, "v2", np.array([9]))
    pending.add("r5", T0 + 7, "v1", np.array([5]))
    assert pending.evicted == 3
    assert pending.take("r3", T0 + 8)[0] == "unknown"
    state, p = pending.take("r2", T0 + 8)
    assert state == "ok" and p is not None and p[1] == "v2"


def test_adding_drops_the_expired_predictions() -> None:
    pending = PendingPredictions(ttl_s=10, capacity=100)
    for i in range(4):
        pending.add(f"r{i}", T0 + i, "v1", np.array([i]))
    pending.add("late", T0 + 12.5, "v1", np.array([0]))
    # r0, r1, r2 are older than 12.5 - 10; r3 is not.
    assert len(pending) == 2 and pending.evicted == 0
    assert pending.take("r0", T0 + 12.5) == ("unknown", None)
    assert pending.take("r3", T0 + 12.5)[0] == "ok"


# --- Labels --------------------------------------------------------------------------------


def pending_of(
    at: float, output: np.ndarray, version: str = "v1", task: str = "classification"
) -> Any:
    """What the server keeps for a request that answered ``output``: its predictions."""
    p = PendingPredictions(ttl_s=1e9, capacity=10)
    p.add("x", at, version, predictions_of(output, task))
    return p.take("x", at)[1]


def test_a_classifier_label_joins_the_argmax_of_its_logits() -> None:
    labels = Labels(task="classification", keep_s=3_600)
    logits = np.array([[2.0, -1.0, 0.5], [-3.0, 4.0, 1.0], [0.0, 0.1, 7.0]], np.float32)
    labels.join(FeedbackItem("a", (0, 2, 2)), pending_of(T0, logits))
    pred, lab = labels.window(T0, T0 + 1)
    np.testing.assert_array_equal(pred, [0, 1, 2])
    np.testing.assert_array_equal(lab, [0, 2, 2])
    assert labels.counts["joined"] == 1
    # Class ids as outputs are taken as they are.
    labels.join(FeedbackItem("b", (1, 3)), pending_of(T0 + 2, np.array([1, 3])))
    np.testing.assert_array_equal(labels.window(T0 + 2, T0 + 3)[0], [1, 3])


def test_a_regressor_label_joins_its_value() -> None:
    labels = Labels(task="regression", keep_s=3_600)
    labels.join(
        FeedbackItem("a", (1.5, 2.0)), pending_of(T0, np.array([[1.25], [2.5]]), task="regression")
    )
    pred, lab = labels.window(T0, T0 + 1)
    np.testing.assert_array_equal(pred, [1.25, 2.5])
    np.testing.assert_array_equal(lab, [1.5, 2.0])


def test_a_second_label_for_an_id_replaces_the_first() -> None:
    labels = Labels(task="classification", keep_s=3_600)
    p = pending_of(T0, np.array([[0.2, 0.8]]))
    labels.join(FeedbackItem("a", (0,)), p)
    labels.join(FeedbackItem("a", (1,)), p)
    assert labels.counts["replaced"] == 1
    pred, lab = labels.window(T0, T0 + 1)
    np.testing.assert_array_equal(pred, [1])
    np.testing.assert_array_equal(lab, [1])


def test_the_window_filters_by_time_and_version() -> None:
    labels = Labels(task="classification", keep_s=3_600)
    for i, version in enumerate(["v1", "v2", "v1", "v2", "v1"]):
        labels.join(FeedbackItem(f"r{i}", (i,)), pending_of(T0 + i * 10, np.array([i]), version))
    assert labels.window(T0, T0 + 50)[1].tolist() == [0, 1, 2, 3, 4]
    # [start, end): the request at T0 + 30 is out of [T0 + 10, T0 + 30).
    assert labels.window(T0 + 10, T0 + 30)[1].tolist() == [1, 2]
    assert labels.window(T0, T0 + 50, "v1")[1].tolist() == [0, 2, 4]
    assert labels.window(T0 + 5, T0 + 50, "v2")[0].tolist() == [1, 3]
    pred, lab = labels.window(T0 + 100, T0 + 200)
    assert pred.size == lab.size == 0
    assert labels.window(T0, T0 + 50, "v3")[0].size == 0


def test_forget_before_drops_old_pairs_and_keeps_replacing_the_rest() -> None:
    labels = Labels(task="classification", keep_s=3_600)
    for i in range(4):
        labels.join(FeedbackItem(f"r{i}", (0,)), pending_of(T0 + i, np.array([i])))
    labels.forget_before(T0 + 2)
    assert labels.window(0, T0 + 100)[0].tolist() == [2, 3]
    # Indices are rebuilt: a new label for r3 replaces r3's pair, not another one.
    labels.join(FeedbackItem("r3", (1,)), pending_of(T0 + 3, np.array([3])))
    assert labels.counts["replaced"] == 1
    pred, lab = labels.window(0, T0 + 100)
    assert pred.tolist() == [2, 3] and lab.tolist() == [0, 1]
    # A forgotten id joins as a new pair.
    labels.join(FeedbackItem("r0", (1,)), pending_of(T0, np.array([0])))
    assert labels.window(0, T0 + 100)[0].tolist() == [2, 3, 0]


def test_a_label_count_other_than_the_rows_is_refused() -> None:
    labels = Labels(task="classification", keep_s=3_600)
    with pytest.raises(InvalidInput, match=r"answered 2 row\(s\); feedback gave 3") as exc:
        labels.join(FeedbackItem("a", (0, 1, 1)), pending_of(T0, np.zeros((2, 4))))
    assert exc.value.field == "label"
    assert labels.window(0, T0 + 1)[0].size == 0 and labels.counts["joined"] == 0


@pytest.mark.parametrize("task", ["classification", "regression"])
def test_a_huge_integer_label_is_refused(task: str) -> None:
    # Python's json module parses such a number to an int (orjson, which the server uses,
    # refuses it before parse_feedback sees it).
    with pytest.raises(InvalidInput):
        parse_feedback({"id": "a", "label": 10**400}, task=task)
