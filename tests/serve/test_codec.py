"""Request decoding and reply encoding without a server: JSON tensors and the binary extension."""

from __future__ import annotations

import json

import numpy as np
import pytest

from modelscale.model import ModelArtifact
from modelscale.serve.codec import decode_request, encode_response
from modelscale.serve.contract import ModelContract
from modelscale.serve.protocol import ApiError


@pytest.fixture(scope="module")
def contract(seq_path) -> ModelContract:
    return ModelContract.from_artifact(
        ModelArtifact.load(seq_path), name="seq", version="1", max_batch=8
    )


def _binary(arrays: dict[str, np.ndarray], **doc: object) -> tuple[bytes, str]:
    inputs = [
        {
            "name": k,
            "shape": list(v.shape),
            "datatype": "INT64",
            "parameters": {"binary_data_size": v.nbytes},
        }
        for k, v in arrays.items()
    ]
    head = json.dumps({"inputs": inputs, **doc}).encode()
    return head + b"".join(v.tobytes() for v in arrays.values()), str(len(head))


def test_binary_inputs_decode_to_the_same_arrays(contract: ModelContract) -> None:
    ids = np.arange(10, dtype=np.int64).reshape(2, 5)
    mask = np.ones((2, 5), dtype=np.int64)
    body, n = _binary({"mask": mask, "ids": ids}, id="r1", parameters={"timeout": 2500})
    d = decode_request(body, n, contract)
    assert list(d.inputs) == ["ids", "mask"]  # model order, whatever the request order
    np.testing.assert_array_equal(d.inputs["ids"], ids)
    assert d.rows == 2 and d.id == "r1" and d.timeout_s == pytest.approx(0.0025)
    assert d.outputs == ("out",) and d.binary_outputs == frozenset()
    assert d.key == ((5,), (5,))


def test_same_non_batch_shapes_share_a_key_and_others_do_not(contract: ModelContract) -> None:
    def key(seq: int) -> tuple:
        a = np.zeros((1, seq), dtype=np.int64)
        body, n = _binary({"ids": a, "mask": a})
        return decode_request(body, n, contract).key

    assert key(5) == key(5) and key(5) != key(6)


def test_a_model_without_a_batch_axis_never_stacks(conv_path, tmp_path) -> None:
    from tests.onnx_models import save_conv

    fixed = ModelContract.from_artifact(
        ModelArtifact.load(save_conv(tmp_path / "c1.onnx", batch=1)),
        name="c",
        version="1",
        max_batch=8,
    )
    assert not fixed.batchable and fixed.max_batch == 1
    x = {"inputs": [{"name": "x", "shape": [1, 3, 8, 8], "datatype": "FP32", "data": [0.0] * 192}]}
    a = decode_request(json.dumps(x).encode(), None, fixed)
    b = decode_request(json.dumps(x).encode(), None, fixed)
    assert a.key != b.key and a.rows == 1


def test_binary_outputs_round_trip() -> None:
    y = np.arange(12, dtype=np.float32).reshape(3, 4)
    z = np.array([[True], [False], [True]])
    body, headers = encode_response(
        model_name="m",
        model_version="2",
        request_id="q",
        outputs={"y": y, "z": z},
        binary=frozenset({"y"}),
    )
    n = int(headers["inference-header-content-length"])
    head = json.loads(body[:n])
    assert head["id"] == "q" and head["model_version"] == "2"
    ymeta, zmeta = head["outputs"]
    assert ymeta == {
        "name": "y",
        "datatype": "FP32",
        "shape": [3, 4],
        "parameters": {"binary_data_size": 48},
    }
    assert zmeta["data"] == [True, False, True] and zmeta["datatype"] == "BOOL"
    np.testing.assert_array_equal(np.frombuffer(body[n:], dtype=np.float32).reshape(3, 4), y)


def test_json_only_replies_are_plain_json() -> None:
    body, headers = encode_response(
        model_name="m",
        model_version="1",
        request_id=None,
        outputs={"y": np.ones((1, 2), np.float16)},
        binary=frozenset(),
    )
    assert headers == {"content-type": "application/json"}
    assert json.loads(body)["outputs"][0] == {
        "name": "y",
        "datatype": "FP16",
        "shape": [1, 2],
        "data": [1.0, 1.0],
    }


def test_errors_are_api_errors_with_a_field(contract: ModelContract) -> None:
    with pytest.raises(ApiError) as info:
        decode_request(b'{"inputs": [{"name": "ids"}]}', None, contract)
    assert info.value.status == 400 and info.value.field == "inputs[0].shape"


def test_accepted_shapes_are_remembered_and_rejected_ones_rejected_every_time(
    seq_path,
) -> None:
    contract = ModelContract.from_artifact(
        ModelArtifact.load(seq_path), name="seq", version="1", max_batch=8
    )
    ok = np.zeros((2, 5), dtype=np.int64)
    body, n = _binary({"ids": ok, "mask": ok})
    assert decode_request(body, n, contract).rows == 2
    assert decode_request(body, n, contract).rows == 2  # from the cache this time
    too_many = np.zeros((9, 5), dtype=np.int64)
    body, n = _binary({"ids": too_many, "mask": too_many})
    for _ in range(2):
        with pytest.raises(ApiError) as info:
            decode_request(body, n, contract)
        assert info.value.field == "inputs.shape"
    mismatch, n = _binary({"ids": ok, "mask": np.zeros((2, 6), dtype=np.int64)})
    for _ in range(2):
        with pytest.raises(ApiError) as info:
            decode_request(mismatch, n, contract)
        assert info.value.field == "inputs[1].shape"
