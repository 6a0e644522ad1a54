"""Text in: BYTES (string) tensors on the wire, and the tokenizer stage that turns them into ids.

A model that declares ``text:`` in deploy.yaml (a Hugging Face ``tokenizers`` tokenizer.json) is
served with one BYTES input (``text`` by default, shape ``[-1]``: one string per row) instead of
its token inputs. The ``tokenize`` stage, right after decoding, runs the tokenizer over the
request's strings (Rust, all strings of a request in one call) and hands the batcher the token
ids, attention mask and token types the graph takes, padded to the request's longest string.
Requests of different lengths still share a batch: they are stacked after padding to the batch's
longest (``DecodedRequest.pad``), and per-token outputs are cut back to each request's own length
(``DecodedRequest.lengths``), so a client never sees the padding of someone else's request.

On the wire, BYTES elements are UTF-8 strings: JSON strings in ``data``, or in the binary
extension each element as a 4-byte little-endian length followed by its bytes (what tritonclient
sends). Invalid UTF-8 is a 400 naming the input; a string longer than the model's
``text.max_text_kb`` is a 413.
"""

from __future__ import annotations

import pathlib
import struct
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from modelscale.errors import InvalidInput
from modelscale.model.signature import TensorSpec
from modelscale.serve.pipeline import Endpoint, Exchange
from modelscale.serve.protocol import ApiError

if TYPE_CHECKING:
    from modelscale.config import TextSpec
    from modelscale.serve.codec import DecodedRequest

__all__ = [
    "TEXT_DTYPE",
    "TextFront",
    "TokenizeStage",
    "decode_strings",
    "strings_from_json",
    "tokenized",
]

TEXT_DTYPE = "object"
"""The dtype name of a text input's TensorSpec (an array of Python str); its V2 type is BYTES."""

# What a tokenizer's encoding offers, by the input names exporters give the graph.
_FIELDS = {
    "input_ids": "ids",
    "ids": "ids",
    "attention_mask": "attention_mask",
    "mask": "attention_mask",
    "token_type_ids": "type_ids",
    "type_ids": "type_ids",
    "segment_ids": "type_ids",
}
_LENGTH = struct.Struct("<I")


def _too_long(field: str, size: int, limit: int) -> ApiError:
    return ApiError(
        413,
        f"{field}: a string of {size} bytes; this model takes strings of at most {limit} bytes "
        "(text.max_text_kb in deploy.yaml). Send shorter texts or split them.",
        field=f"{field}.data",
    )


def _flatten(data: list[Any], out: list[Any]) -> list[Any]:
    for v in data:
        if isinstance(v, list):
            _flatten(v, out)
        else:
            out.append(v)
    return out


def strings_from_json(data: list[Any], count: int, field: str, limit: int) -> np.ndarray:
    """The strings of a BYTES input's JSON ``data`` (flat or nested), as a flat object array."""
    flat = _flatten(data, [])
    if len(flat) != count:
        raise ApiError(
            400,
            f"{field}.data has {len(flat)} strings but its shape needs {count}.",
            field=f"{field}.data",
        )
    for i, s in enumerate(flat):
        if not isinstance(s, str):
            raise ApiError(
                400,
                f"{field}.data[{i}] is {type(s).__name__}; datatype BYTES takes strings (UTF-8 "
                "text).",
                field=f"{field}.data",
            )
        try:
            size = len(s.encode("utf-8"))
        except UnicodeEncodeError:
            raise ApiError(
                400,
                f"{field}.data[{i}] holds a lone surrogate escape, which is not UTF-8 text; "
                "BYTES inputs of this model carry UTF-8 text.",
                field=f"{field}.data",
            ) from None
        if size > limit:
            raise _too_long(field, size, limit)
    out = np.empty(count, dtype=object)
    out[:] = flat
    return out


def decode_strings(raw: memoryview, count: int, field: str, limit: int) -> np.ndarray:
    """The strings of a BYTES input in the binary extension: each a uint32 length + UTF-8 bytes."""
    out = np.empty(count, dtype=object)
    offset, end = 0, len(raw)
    for i in range(count):
        if offset + 4 > end:
            raise ApiError(
                400,
                f"{field}: binary data ends after {i} of {count} strings; each BYTES element is a "
                "4-byte little-endian length followed by that many bytes.",
                field=f"{field}.parameters.binary_data_size",
            )
        (size,) = _LENGTH.unpack_from(raw, offset)
        offset += 4
        if size > limit:
            raise _too_long(field, size, limit)
        if offset + size > end:
            raise ApiError(
                400,
                f"{field}: string {i} declares {size} bytes but only {end - offset} are left.",
                field=f"{field}.parameters.binary_data_size",
            )
        try:
            out[i] = bytes(raw[offset : offset + size]).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ApiError(
                400,
                f"{field}: string {i} is not valid UTF-8 (byte {exc.start}: {exc.reason}); BYTES "
                "inputs of this model carry UTF-8 text.",
                field=f"{field}.data",
            ) from None
        offset += size
    if offset != end:
        raise ApiError(
            400,
            f"{field}: {end - offset} bytes after its {count} strings; binary_data_size must be "
            "the sum of 4 + length over the strings.",
            field=f"{field}.parameters.binary_data_size",
        )
    return out


@dataclass(frozen=True)
class _Feed:
    name: str
    field: str
    dtype: np.dtype[Any]


class TextFront:
    """One text model's tokenizer and how its encodings feed the graph's inputs."""

    def __init__(self, spec: TextSpec, graph_inputs: tuple[TensorSpec, ...], *, model: str):
        try:
            from tokenizers import Tokenizer
        except ImportError:  # pragma: no cover - a core dependency
            raise InvalidInput(
                "serving text needs the 'tokenizers' package: pip install tokenizers",
                field=f"models.{model}.text",
            ) from None
        path = pathlib.Path(spec.tokenizer)
        try:
            tok = Tokenizer.from_file(str(path))
        except Exception as exc:
            raise InvalidInput(
                f"models.{model}.text.tokenizer: {path} is not a tokenizers tokenizer.json "
                f"({exc}). Expected the tokenizer.json a Hugging Face fast tokenizer saves.",
                field=f"models.{model}.text.tokenizer",
            ) from None
        feeds = []
        for t in graph_inputs:
            field = _FIELDS.get(t.name)
            if field is None or t.dtype is None or np.dtype(t.dtype).kind not in "iu":
                raise InvalidInput(
                    f"models.{model}.text: the model's input {t.name!r} ({t.onnx_type}) is not "
                    "one a tokenizer fills; a text model takes integer inputs named input_ids, "
                    "attention_mask and/or token_type_ids.",
                    field=f"models.{model}.text",
                )
            if t.shape is not None and len(t.shape) != 2:
                raise InvalidInput(
                    f"models.{model}.text: input {t.name!r} has shape {t.shape_str()}; a token "
                    "input is [batch, sequence].",
                    field=f"models.{model}.text",
                )
            feeds.append(_Feed(t.name, field, np.dtype(t.dtype)))
        if not any(f.field == "ids" for f in feeds):
            raise InvalidInput(
                f"models.{model}.text: the model takes no token ids (an input named input_ids).",
                field=f"models.{model}.text",
            )
        padding = tok.padding or {}
        self.pad_id = int(padding.get("pad_id", 0))
        tok.no_padding()  # padded here, to the request's longest, with the masks built alike
        tok.enable_truncation(spec.max_length)
        self.tokenizer = tok
        self.spec = spec
        self.feeds = tuple(feeds)
        self.input_name = spec.input
        self.max_text_bytes = int(spec.max_text_kb * 1024)
        self.pad = {f.name: (self.pad_id if f.field == "ids" else 0) for f in feeds}

    def spec_of_input(self) -> TensorSpec:
        """The BYTES input the model is served with."""
        return TensorSpec(
            name=self.input_name, onnx_type="tensor(string)", dtype=TEXT_DTYPE, shape=("batch",)
        )

    def encode(self, texts: list[str]) -> tuple[dict[str, np.ndarray], tuple[int, ...]]:
        """The graph's inputs for ``texts`` (padded to the longest) and each text's token count."""
        encodings = self.tokenizer.encode_batch(texts)
        lengths = tuple(len(e.ids) for e in encodings)
        width = max(lengths)
        out: dict[str, np.ndarray] = {}
        for feed in self.feeds:
            arr = np.full((len(texts), width), self.pad[feed.name], dtype=feed.dtype)
            for row, (e, n) in enumerate(zip(encodings, lengths, strict=True)):
                arr[row, :n] = getattr(e, feed.field)
            out[feed.name] = arr
        return out, lengths


class TokenizeStage:
    """Replace a text model's decoded strings by the token inputs its graph takes."""

    name: ClassVar[str] = "tokenize"
    endpoints: ClassVar[frozenset[Endpoint]] = frozenset({Endpoint.INFER})

    def __init__(self, fronts: Mapping[str, TextFront]) -> None:
        self.fronts = fronts

    async def __call__(self, ex: Exchange) -> None:
        """Set ``ex.decoded`` to the tokenized request (models without text pass untouched)."""
        front = self.fronts.get(ex.model or "")
        req = ex.decoded
        if front is None or req is None:
            return
        ex.decoded = tokenized(req, front)


def tokenized(req: DecodedRequest, front: TextFront) -> DecodedRequest:
    """``req`` with its strings replaced by token inputs, stackable with any other text request."""
    texts = req.inputs[front.input_name].tolist()
    inputs, lengths = front.encode(texts)
    return replace(req, inputs=inputs, key=("text",), pad=front.pad, lengths=lengths)
