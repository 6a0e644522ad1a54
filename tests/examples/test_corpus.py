"""The MiniLM example's sentences: real prose, enough of it, the same every time."""

from __future__ import annotations

from modelscale.examples.corpus import MAX_WORDS, MIN_WORDS, docstring_sentences


def test_enough_distinct_prose_sentences_in_a_stable_order() -> None:
    sentences = docstring_sentences()
    assert len(sentences) >= 600
    assert len(set(sentences)) == len(sentences)
    assert all(MIN_WORDS <= len(s.split()) <= MAX_WORDS for s in sentences)
    assert not any(">>>" in s or "\n" in s for s in sentences)
    assert docstring_sentences() == sentences


def test_modules_and_bounds_are_options() -> None:
    only_json = docstring_sentences(("json",), min_words=3, max_words=8)
    assert only_json
    assert all(3 <= len(s.split()) <= 8 for s in only_json)
    assert set(only_json) <= set(docstring_sentences(("json",), min_words=1, max_words=100))
