"""Output agreement between two versions' answers: classes, class scores, values, embeddings."""

from __future__ import annotations

import numpy as np
import pytest

from modelscale.experiment.outputs import compare_outputs


def test_classes_agree_row_by_row() -> None:
    got = compare_outputs({"label": np.array([1, 2, 3, 4])}, {"label": np.array([1, 2, 0, 4])})
    assert (got.rows, got.agree, got.share) == (4, 3, 0.75)
    assert got.max_abs_error == 0.0


def test_class_scores_agree_by_their_arg_max_and_report_the_largest_difference() -> None:
    ref = np.array([[0.7, 0.2, 0.1], [0.1, 0.5, 0.4]], np.float32)
    cand = np.array([[0.6, 0.3, 0.1], [0.1, 0.4, 0.5]], np.float32)
    got = compare_outputs({"probs": ref}, {"probs": cand})
    assert got.agree == 1 and got.max_abs_error == pytest.approx(0.1, abs=1e-6)


def test_embeddings_agree_by_cosine_similarity() -> None:
    rng = np.random.default_rng(0)
    ref = rng.standard_normal((3, 384)).astype(np.float32)
    cand = ref + 0.01 * rng.standard_normal((3, 384)).astype(np.float32)
    cand[2] = rng.standard_normal(384)  # one row unrelated
    got = compare_outputs({"emb": ref}, {"emb": cand}, cosine=0.99)
    assert got.agree == 2
    zero = compare_outputs({"emb": np.zeros((2, 8))}, {"emb": np.zeros((2, 8))})
    assert zero.agree == 2  # equal zero vectors agree


def test_values_per_row_agree_within_a_relative_tolerance() -> None:
    got = compare_outputs(
        {"y": np.array([[1.0], [2.0]])}, {"y": np.array([[1.001], [2.5]])}, cosine=0.99
    )
    assert got.agree == 1


def test_a_missing_or_reshaped_output_disagrees_on_every_row() -> None:
    ref = {"a": np.array([1, 2]), "b": np.array([[0.1, 0.9], [0.8, 0.2]])}
    assert compare_outputs(ref, {"a": np.array([1, 2])}).agree == 0
    assert compare_outputs(ref, {"a": np.array([1, 2]), "b": np.zeros((2, 3))}).agree == 0
    assert compare_outputs({}, {"a": np.array([1])}).rows == 0


def test_only_the_named_outputs_are_compared() -> None:
    rng = np.random.default_rng(3)
    emb = rng.standard_normal((4, 384)).astype(np.float32)
    tokens = rng.standard_normal((4, 32, 384)).astype(np.float32)
    ref = {"sentence_embedding": emb, "last_hidden_state": tokens}
    cand = {"sentence_embedding": emb * 1.01, "last_hidden_state": -tokens}
    assert compare_outputs(ref, cand).agree == 0
    got = compare_outputs(ref, cand, names=["sentence_embedding"])
    assert (got.rows, got.agree, got.compared) == (4, 4, ("sentence_embedding",))
