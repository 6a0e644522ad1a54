"""Text in: BYTES inputs on the wire, the tokenizer stage, padding across a batch, bad text."""

from __future__ import annotations

import concurrent.futures
import pathlib
import struct

import numpy as np
import onnx
import orjson
import pytest
from onnx import TensorProto, helper, numpy_helper

from modelscale.config import DeploymentSpec
from modelscale.errors import InvalidInput
from modelscale.serve.backend import BatchOk
from modelscale.serve.batcher import batch_replies, make_batch
from tests.serve.conftest import app_client

WORDS = [
    "the",
    "quick",
    "brown",
    "fox",
    "jumps",
    "over",
    "lazy",
    "dog",
    "a",
    "model",
    "serves",
    "text",
    "in",
    "batches",
]


def save_tokenizer(path: pathlib.Path) -> pathlib.Path:
    """A small BERT-style WordPiece tokenizer.json ([CLS] text [SEP], [PAD] = 0)."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors

    vocab = {"[PAD]": 0, "[UNK]": 1, "[CLS]": 2, "[SEP]": 3}
    for w in WORDS:
        vocab.setdefault(w, len(vocab))
    tok = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)]
    )
    tok.enable_padding(pad_id=0, pad_token="[PAD]")
    tok.save(str(path))
    return path


def save_token_model(path: pathlib.Path, *, with_types: bool = True) -> pathlib.Path:
    """ids, mask (and types) [batch, seq] -> n_tokens [batch], ids_f [batch, seq] (per token)."""
    names = ["input_ids", "attention_mask", *(["token_type_ids"] if with_types else [])]
    inputs = [helper.make_tensor_value_info(n, TensorProto.INT64, ["batch", "seq"]) for n in names]
    nodes = [
        helper.make_node("Cast", ["attention_mask"], ["mask_f"], to=TensorProto.FLOAT),
        helper.make_node("ReduceSum", ["mask_f", "ax1"], ["n_tokens"], keepdims=0),
        helper.make_node("Cast", ["input_ids"], ["ids_f"], to=TensorProto.FLOAT),
    ]
    outputs = [
        helper.make_tensor_value_info("n_tokens", TensorProto.FLOAT, ["batch"]),
        helper.make_tensor_value_info("ids_f", TensorProto.FLOAT, ["batch", "seq"]),
    ]
    graph = helper.make_graph(
        nodes,
        "tokens",
        inputs,
        outputs,
        [numpy_helper.from_array(np.array([1], dtype=np.int64), "ax1")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def text_spec(tmp_path: pathlib.Path, **text: object) -> DeploymentSpec:
    tok = save_tokenizer(tmp_path / "tokenizer.json")
    model = save_token_model(tmp_path / "tokens.onnx")
    return DeploymentSpec.from_dict(
        {
            "models": {
                "enc": {
                    "versions": {"1": {"path": str(model)}},
                    "batching": {"max_batch": 8, "max_wait_ms": 20},
                    "text": {"tokenizer": str(tok), **text},
                }
            }
        }
    )


def text_body(texts: list[str]) -> dict[str, object]:
    return {"inputs": [{"name": "text", "shape": [len(texts)], "datatype": "BYTES", "data": texts}]}


def binary_body(texts: list[bytes], *, size: int | None = None) -> tuple[bytes, dict[str, str]]:
    raw = b"".join(struct.pack("<I", len(t)) + t for t in texts)
    head = orjson.dumps(
        {
            "inputs": [
                {
                    "name": "text",
                    "shape": [len(texts)],
                    "datatype": "BYTES",
                    "parameters": {"binary_data_size": len(raw) if size is None else size},
                }
            ]
        }
    )
    return head + raw, {
        "Inference-Header-Content-Length": str(len(head)),
        "Content-Type": "application/octet-stream",
    }


def test_text_model_metadata_and_inference(tmp_path) -> None:
    with app_client(text_spec(tmp_path)) as client:
        meta = client.get("/v2/models/enc").json()
        assert meta["inputs"] == [{"name": "text", "datatype": "BYTES", "shape": [-1]}]
        r = client.post("/v2/models/enc/infer", json=text_body(["the quick fox", "a dog"]))
        assert r.status_code == 200, r.text
        out = {o["name"]: o for o in r.json()["outputs"]}
        assert out["n_tokens"]["data"] == [5.0, 4.0]  # [CLS] ... [SEP]
        assert out["ids_f"]["shape"] == [2, 5]
        # Each row is the text's ids, padded with [PAD] = 0 to the request's longest.
        assert out["ids_f"]["data"][5:] == [2.0, 12.0, 11.0, 3.0, 0.0]  # a=12, dog=11
        body, headers = binary_body([b"the lazy dog", "über".encode()])
        r = client.post("/v2/models/enc/infer", content=body, headers=headers)
        assert r.status_code == 200, r.text
        out = {o["name"]: o for o in r.json()["outputs"]}
        assert out["n_tokens"]["data"] == [5.0, 3.0]  # "über" is one unknown word


def test_requests_of_different_lengths_share_a_batch_and_get_their_own_length(tmp_path) -> None:
    texts = [" ".join(WORDS[: 1 + i % 9]) for i in range(24)]
    with app_client(text_spec(tmp_path)) as client:
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            replies = list(
                pool.map(lambda t: client.post("/v2/models/enc/infer", json=text_body([t])), texts)
            )
        metrics = client.get("/metrics").text
    for text, r in zip(texts, replies, strict=True):
        assert r.status_code == 200, r.text
        out = {o["name"]: o for o in r.json()["outputs"]}
        n = len(text.split()) + 2
        assert out["n_tokens"]["data"] == [float(n)]
        assert out["ids_f"]["shape"] == [1, n]  # cut back from the batch's longest
    batches = [
        line
        for line in metrics.splitlines()
        if line.startswith("modelscale_batch_size_count") and 'model="enc"' in line
    ]
    assert batches and float(batches[0].rsplit(" ", 1)[1]) < len(texts)  # some were stacked


def test_padding_and_trimming_across_a_batch() -> None:
    from modelscale.serve.codec import DecodedRequest

    def req(ids: list[int]) -> DecodedRequest:
        a = np.array([ids], dtype=np.int64)
        return DecodedRequest(
            id=None,
            inputs={"input_ids": a, "attention_mask": np.ones_like(a)},
            rows=1,
            outputs=("ids_f",),
            binary_outputs=frozenset(),
            timeout_s=None,
            key=("text",),
            pad={"input_ids": 0, "attention_mask": 0},
            lengths=(len(ids),),
        )

    reqs = [req([2, 5, 3]), req([2, 5, 6, 7, 3])]
    batch = make_batch(reqs)
    assert batch.feeds["input_ids"].tolist() == [[2, 5, 3, 0, 0], [2, 5, 6, 7, 3]]
    assert batch.feeds["attention_mask"].tolist() == [[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]]
    outcome = BatchOk(outputs=[batch.feeds["input_ids"].astype(np.float32)], infer_s=0.0)
    parts = batch_replies(outcome, ("ids_f",), reqs, trim=frozenset({"ids_f"}))
    assert [p["ids_f"].tolist() for p in parts] == [[[2, 5, 3]], [[2, 5, 6, 7, 3]]]


def test_bad_text_is_refused_naming_the_input(tmp_path) -> None:
    with app_client(text_spec(tmp_path, max_text_kb=1)) as client:
        body, headers = binary_body([b"fine", b"\xff\xfe broken"])
        r = client.post("/v2/models/enc/infer", content=body, headers=headers)
        assert r.status_code == 400 and "not valid UTF-8" in r.json()["error"]
        assert r.json()["error"].startswith("inputs[0]")
        r = client.post("/v2/models/enc/infer", json=text_body(["x" * 2000]))
        assert r.status_code == 413 and "at most 1024 bytes" in r.json()["error"]
        r = client.post(
            "/v2/models/enc/infer",
            json={"inputs": [{"name": "text", "shape": [2], "datatype": "BYTES", "data": [1, 2]}]},
        )
        assert r.status_code == 400 and "takes strings" in r.json()["error"]
        r = client.post(
            "/v2/models/enc/infer",
            json={"inputs": [{"name": "text", "shape": [3], "datatype": "BYTES", "data": ["a"]}]},
        )
        assert r.status_code == 400 and "needs 3" in r.json()["error"]
        body, headers = binary_body([b"abc"], size=2)
        r = client.post("/v2/models/enc/infer", content=body, headers=headers)
        assert r.status_code == 400
        r = client.post(
            "/v2/models/enc/infer",
            json={"inputs": [{"name": "text", "shape": [1], "datatype": "FP32", "data": [1.0]}]},
        )
        assert r.status_code == 400 and "expects BYTES" in r.json()["error"]
        # The server is still fine.
        r = client.post("/v2/models/enc/infer", json=text_body(["the dog"]))
        assert r.status_code == 200


def test_a_10_mb_string_is_413_with_the_default_limit(tmp_path) -> None:
    with app_client(text_spec(tmp_path)) as client:
        body, headers = binary_body([b"a" * (10 * 2**20)])
        r = client.post("/v2/models/enc/infer", content=body, headers=headers)
        assert r.status_code == 413 and "text.max_text_kb" in r.json()["error"]


def test_text_config_errors(tmp_path) -> None:
    model = save_token_model(tmp_path / "tokens.onnx")
    with pytest.raises(InvalidInput, match=r"tokenizer\.json"):
        DeploymentSpec.from_dict(
            {
                "models": {
                    "enc": {
                        "versions": {"1": {"path": str(model)}},
                        "text": {"tokenizer": str(tmp_path / "missing.json")},
                    }
                }
            }
        )
    # A model whose input a tokenizer cannot fill.
    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])],
    )
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    m.ir_version = 8
    onnx.save(m, str(tmp_path / "x.onnx"))
    tok = save_tokenizer(tmp_path / "tokenizer.json")
    spec = DeploymentSpec.from_dict(
        {
            "models": {
                "enc": {
                    "versions": {"1": {"path": str(tmp_path / "x.onnx")}},
                    "text": {"tokenizer": str(tmp_path)},  # the folder works too
                }
            }
        }
    )
    assert spec.models["enc"].text is not None and spec.models["enc"].text.tokenizer == tok
    from modelscale.serve.front import build_front

    with pytest.raises(InvalidInput, match="not one a tokenizer fills"):
        build_front(spec, features=[])
    (tmp_path / "bad.json").write_text("{not a tokenizer")
    spec = DeploymentSpec.from_dict(
        {
            "models": {
                "enc": {
                    "versions": {"1": {"path": str(model)}},
                    "text": {"tokenizer": str(tmp_path / "bad.json")},
                }
            }
        }
    )
    with pytest.raises(InvalidInput, match=r"not a tokenizers tokenizer\.json"):
        build_front(spec, features=[])


@pytest.mark.e2e
def test_tritonclient_sends_strings(server_factory, tmp_path) -> None:
    tritonclient = pytest.importorskip("tritonclient.http")
    server = server_factory(text_spec(tmp_path))
    client = tritonclient.InferenceServerClient(url=f"{server.host}:{server.port}")
    try:
        texts = np.array(["the quick brown fox", "a dog"], dtype=object)
        for binary in (False, True):
            inp = tritonclient.InferInput("text", [2], "BYTES")
            inp.set_data_from_numpy(texts, binary_data=binary)
            result = client.infer("enc", [inp])
            assert result.as_numpy("n_tokens").tolist() == [6.0, 4.0]
    finally:
        client.close()
