"""Decode V2 inference requests (JSON tensors and the binary tensor data extension) and encode replies.

Binary extension: the body is the JSON header (``Inference-Header-Content-Length`` bytes) followed by
raw little-endian tensor bytes, in the order of the inputs that carry ``binary_data_size``. Replies
use it for the outputs the client asked to get in binary (``binary_data`` per output, or
``binary_data_output`` for all). Every failure is a 400 naming the field and what was expected.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
from pydantic import ValidationError

from modelscale.serve.contract import ModelContract, check_tensor_shapes, element_count
from modelscale.serve.protocol import (
    DATATYPE_TO_DTYPE,
    MAX_DIMS,
    ApiError,
    InferRequest,
    RequestInput,
    datatype_of,
    datatype_of_array,
    dtype_of,
    request_id_problem,
)
from modelscale.serve.text import decode_strings, strings_from_json

__all__ = ["HEADER_LENGTH", "DecodedRequest", "decode_request", "encode_response"]

HEADER_LENGTH = "inference-header-content-length"


@dataclass(frozen=True)
class DecodedRequest:
    """A validated inference request, ready to batch."""

    id: str | None
    inputs: dict[str, np.ndarray]
    """Arrays in model input order, shapes and dtypes checked."""
    rows: int
    """Items along axis 0 (1 for models that do not batch)."""
    outputs: tuple[str, ...]
    """Output names to return, in the order to return them."""
    binary_outputs: frozenset[str]
    timeout_s: float | None
    key: tuple[Any, ...]
    """Requests with equal keys have equal non-batch shapes and may be stacked."""
    parameters: dict[str, Any] | None = None
    """The request's top-level ``parameters`` (e.g. a user id an experiment assigns by)."""
    pad: Mapping[str, int] | None = None
    """Inputs that may differ along axis 1 (token inputs), with the value to pad them with:
    requests with different lengths are stacked after padding to the batch's longest."""
    lengths: tuple[int, ...] | None = None
    """Each row's own length along axis 1 (token count), when ``pad`` is set."""


def _loc(parts: tuple[int | str, ...]) -> str:
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


def _parse_json(raw: bytes) -> InferRequest:
    try:
        return InferRequest.model_validate_json(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        if err["type"] == "json_invalid":
            raise ApiError(
                400,
                f"body is not valid JSON ({err['msg']}); expected a V2 inference request "
                '{"inputs": [{"name", "shape", "datatype", "data"}]}.',
                field="body",
            ) from None
        loc = _loc(err["loc"]) or "body"
        msg = "required field is missing" if err["type"] == "missing" else err["msg"]
        raise ApiError(400, f"{loc}: {msg}.", field=loc) from None


def _split_body(body: bytes, header_length: str | None) -> tuple[bytes, memoryview]:
    view = memoryview(body)
    if header_length is None:
        return body, view[len(view) :]
    try:
        n = int(header_length)
    except ValueError:
        n = -1
    if n < 1 or n > len(body):
        raise ApiError(
            400,
            f"Inference-Header-Content-Length is {header_length!r}; expected the JSON header's "
            f"byte length, an integer in [1, {len(body)}] (the body size).",
            field="Inference-Header-Content-Length",
        )
    return body[:n], view[n:]


def _bool_param(params: Mapping[str, Any] | None, key: str, field: str) -> bool:
    value = (params or {}).get(key, False)
    if not isinstance(value, bool):
        raise ApiError(400, f"{field}.{key} must be true or false. Got {value!r}.", field=field)
    return value


def _timeout(params: Mapping[str, Any] | None) -> float | None:
    value = (params or {}).get("timeout")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise ApiError(
            400,
            f"parameters.timeout must be a positive number of microseconds. Got {value!r}.",
            field="parameters.timeout",
        )
    return float(value) / 1e6


def _from_json(data: list[Any], dtype: np.dtype[Any], shape: tuple[int, ...], field: str) -> Any:
    try:
        arr = np.asarray(data)
    except (ValueError, TypeError):
        raise ApiError(
            400,
            f"{field}.data is ragged; expected a flat or nested list of numbers.",
            field=f"{field}.data",
        ) from None
    kind = arr.dtype.kind
    if dtype.kind == "b":
        ok = kind == "b" or arr.size == 0
        expected = "true/false values"
    elif dtype.kind in "iu":
        ok = kind in "iu" or arr.size == 0
        expected = "integers"
    else:
        ok = kind in "iuf" or arr.size == 0
        expected = "numbers"
    if not ok:
        got = {"f": "non-integer numbers", "b": "booleans", "U": "strings"}.get(
            kind, "mixed values"
        )
        raise ApiError(
            400,
            f"{field}.data holds {got}; datatype {datatype_of(dtype.name)} needs {expected}.",
            field=f"{field}.data",
        )
    if arr.size != element_count(shape):
        raise ApiError(
            400,
            f"{field}.data has {arr.size} values but shape {list(shape)} needs "
            f"{element_count(shape)}.",
            field=f"{field}.data",
        )
    if dtype.kind in "iu" and arr.size and arr.dtype != dtype:
        info = np.iinfo(dtype)
        if int(arr.min()) < info.min or int(arr.max()) > info.max:
            raise ApiError(
                400,
                f"{field}.data has values outside the range of {datatype_of(dtype.name)} "
                f"[{info.min}, {info.max}].",
                field=f"{field}.data",
            )
    return arr.astype(dtype, copy=False).reshape(shape)


def _from_binary(
    tail: memoryview,
    offset: int,
    size: Any,
    dtype: np.dtype[Any],
    shape: tuple[int, ...],
    field: str,
) -> Any:
    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
        raise ApiError(
            400,
            f"{field}.parameters.binary_data_size must be a byte count >= 0. Got {size!r}.",
            field=f"{field}.parameters.binary_data_size",
        )
    want = element_count(shape) * dtype.itemsize
    if size != want:
        raise ApiError(
            400,
            f"{field}.parameters.binary_data_size is {size} but shape {list(shape)} of "
            f"{datatype_of(dtype.name)} needs {want} bytes.",
            field=f"{field}.parameters.binary_data_size",
        )
    if offset + size > len(tail):
        raise ApiError(
            400,
            f"{field}: the body ends before this input's {size} binary bytes "
            f"({len(tail) - offset} left after the JSON header).",
            field=f"{field}.parameters.binary_data_size",
        )
    return np.frombuffer(tail[offset : offset + size], dtype=dtype).reshape(shape)


def _checked_shape(item: RequestInput, field: str) -> tuple[int, ...]:
    shape = tuple(item.shape)
    if len(shape) > MAX_DIMS:
        raise ApiError(
            400,
            f"{field}.shape has {len(shape)} dims; a tensor has at most {MAX_DIMS}.",
            field=f"{field}.shape",
        )
    # Before any size is computed: a zero dim beside huge ones has zero elements and would pass
    # the data-size checks, then fail in NumPy.
    for axis, dim in enumerate(shape):
        if dim < 1:
            raise ApiError(
                400,
                f"{field}.shape[{axis}] is {dim}; every dim must be >= 1.",
                field=f"{field}.shape",
            )
    return shape


def _decode_input(
    item: RequestInput,
    field: str,
    expected: str,
    tail: memoryview,
    offset: int,
    text_limit: int = 0,
) -> tuple[Any, int]:
    if expected == "BYTES" and item.datatype == "BYTES":
        return _decode_text(item, field, tail, offset, text_limit)
    dtype = dtype_of(item.datatype, field=f"{field}.datatype")
    if item.datatype != expected:
        raise ApiError(
            400,
            f"{field}.datatype is {item.datatype} but input {item.name!r} expects {expected}.",
            field=f"{field}.datatype",
        )
    shape = _checked_shape(item, field)
    size = (item.parameters or {}).get("binary_data_size")
    if size is not None:
        if item.data is not None:
            raise ApiError(
                400,
                f"{field} has both data and parameters.binary_data_size; send one of them.",
                field=f"{field}.data",
            )
        return _from_binary(tail, offset, size, dtype, shape, field), offset + int(size)
    if item.data is None:
        raise ApiError(
            400,
            f"{field} has no data; expected 'data' (JSON) or parameters.binary_data_size (binary).",
            field=f"{field}.data",
        )
    return _from_json(item.data, dtype, shape, field), offset


def _decode_text(
    item: RequestInput, field: str, tail: memoryview, offset: int, limit: int
) -> tuple[Any, int]:
    """A BYTES input: UTF-8 strings, as JSON strings or length-prefixed binary elements."""
    shape = _checked_shape(item, field)
    count = element_count(shape)
    size = (item.parameters or {}).get("binary_data_size")
    if size is not None:
        if item.data is not None:
            raise ApiError(
                400,
                f"{field} has both data and parameters.binary_data_size; send one of them.",
                field=f"{field}.data",
            )
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise ApiError(
                400,
                f"{field}.parameters.binary_data_size must be a byte count >= 0. Got {size!r}.",
                field=f"{field}.parameters.binary_data_size",
            )
        if offset + size > len(tail):
            raise ApiError(
                400,
                f"{field}: the body ends before this input's {size} binary bytes "
                f"({len(tail) - offset} left after the JSON header).",
                field=f"{field}.parameters.binary_data_size",
            )
        strings = decode_strings(tail[offset : offset + size], count, field, limit)
        return strings.reshape(shape), offset + size
    if item.data is None:
        raise ApiError(
            400,
            f"{field} has no data; expected 'data' (JSON) or parameters.binary_data_size (binary).",
            field=f"{field}.data",
        )
    return strings_from_json(item.data, count, field, limit).reshape(shape), offset


def _requested_outputs(
    req: InferRequest, contract: ModelContract, all_binary: bool
) -> tuple[tuple[str, ...], frozenset[str]]:
    known = contract.output_names
    if not req.outputs:
        return known, frozenset(known if all_binary else ())
    names: list[str] = []
    binary: set[str] = set()
    for i, out in enumerate(req.outputs):
        field = f"outputs[{i}]"
        if out.name not in known:
            raise ApiError(
                400,
                f"{field}.name: unknown output {out.name!r}; model {contract.name!r} outputs are "
                f"{', '.join(known)}.",
                field=f"{field}.name",
            )
        if out.name in names:
            raise ApiError(400, f"{field}.name: output {out.name!r} is listed twice.", field=field)
        if (out.parameters or {}).get("classification"):
            raise ApiError(
                400,
                f"{field}.parameters.classification is not supported; ask for the raw output.",
                field=f"{field}.parameters.classification",
            )
        names.append(out.name)
        if "binary_data" in (out.parameters or {}):
            if _bool_param(out.parameters, "binary_data", f"{field}.parameters"):
                binary.add(out.name)
        elif all_binary:
            binary.add(out.name)
    return tuple(names), frozenset(binary)


def decode_request(
    body: bytes, header_length: str | None, contract: ModelContract
) -> DecodedRequest:
    """Parse and validate one inference request for ``contract`` (400 on anything wrong)."""
    head, tail = _split_body(body, header_length)
    req = _parse_json(head)
    if req.id is not None:
        problem = request_id_problem(req.id)
        if problem is not None:
            raise ApiError(400, f"id {problem}.", field="id")
    all_binary = _bool_param(req.parameters, "binary_data_output", "parameters")
    timeout_s = _timeout(req.parameters)
    expected = contract.input_datatypes
    arrays: dict[str, Any] = {}
    fields: dict[str, str] = {}
    offset = 0
    for i, item in enumerate(req.inputs):
        field = f"inputs[{i}]"
        if item.name not in expected:
            raise ApiError(
                400,
                f"{field}.name: unknown input {item.name!r}; model {contract.name!r} inputs are "
                f"{', '.join(contract.input_names)}.",
                field=f"{field}.name",
            )
        if item.name in arrays:
            raise ApiError(
                400, f"{field}.name: input {item.name!r} is given twice.", field=f"{field}.name"
            )
        arrays[item.name], offset = _decode_input(
            item, field, expected[item.name], tail, offset, contract.max_text_bytes
        )
        fields[item.name] = field
    missing = [n for n in contract.input_names if n not in arrays]
    if missing:
        raise ApiError(
            400,
            f"inputs: missing input(s) {', '.join(missing)}; model {contract.name!r} needs "
            f"{', '.join(contract.input_names)}.",
            field="inputs",
        )
    if offset != len(tail):
        raise ApiError(
            400,
            f"the body has {len(tail) - offset} bytes after the JSON header and binary inputs "
            "that no input claims; check Inference-Header-Content-Length and binary_data_size.",
            field="Inference-Header-Content-Length",
        )
    shapes = {n: a.shape for n, a in arrays.items()}
    rows = check_tensor_shapes(contract, shapes, fields)
    outputs, binary = _requested_outputs(req, contract, all_binary)
    ordered = (
        arrays
        if tuple(arrays) == contract.input_names
        else {n: arrays[n] for n in contract.input_names}
    )
    # A model that cannot batch gets a key of its own per request, so nothing is stacked with it.
    key = tuple(a.shape[1:] for a in ordered.values()) if contract.batchable else (object(),)
    return DecodedRequest(
        id=req.id,
        inputs=ordered,
        rows=rows,
        outputs=outputs,
        binary_outputs=binary,
        timeout_s=timeout_s,
        key=key,
        parameters=req.parameters,
    )


def _json_data(arr: np.ndarray) -> Any:
    flat = np.ascontiguousarray(arr).reshape(-1)
    # orjson writes native-endian numpy arrays itself (fast); others go through Python lists.
    return flat if flat.dtype in _ORJSON_NUMPY else flat.tolist()


_ORJSON_NUMPY = frozenset(DATATYPE_TO_DTYPE.values())


def encode_response(
    *,
    model_name: str,
    model_version: str,
    request_id: str | None,
    outputs: Mapping[str, np.ndarray],
    binary: frozenset[str],
) -> tuple[bytes, dict[str, str]]:
    """The V2 inference reply body and its content headers."""
    entries: list[dict[str, Any]] = []
    raw: list[bytes] = []
    non_finite: list[str] = []
    for name, arr in outputs.items():
        entry: dict[str, Any] = {
            "name": name,
            "datatype": datatype_of_array(arr.dtype),
            "shape": list(arr.shape),
        }
        if name in binary:
            data = np.ascontiguousarray(arr).tobytes()
            entry["parameters"] = {"binary_data_size": len(data)}
            raw.append(data)
        else:
            if arr.dtype.kind in "fc" and not np.isfinite(arr).all():
                non_finite.append(name)
            entry["data"] = _json_data(arr)
        entries.append(entry)
    doc: dict[str, Any] = {"model_name": model_name, "model_version": model_version}
    if request_id is not None:
        doc["id"] = request_id
    if non_finite:
        # JSON has no NaN or infinity: such values are written null, and the reply says so.
        doc["parameters"] = {"non_finite_outputs": ",".join(non_finite)}
    doc["outputs"] = entries
    head = orjson.dumps(doc, option=orjson.OPT_SERIALIZE_NUMPY)
    if not raw:
        return head, {"content-type": "application/json"}
    return head + b"".join(raw), {
        "content-type": "application/octet-stream",
        "inference-header-content-length": str(len(head)),
    }
