"""Open Inference Protocol (KServe V2) wire schemas, datatype names, and HTTP-mapped errors.

The JSON shapes follow the V2 REST spec; ``parameters`` are free-form mappings as the spec allows, and
the binary tensor data extension adds ``binary_data_size`` (inputs and outputs), ``binary_data``
(per requested output) and ``binary_data_output`` (request-wide). A ``timeout`` request parameter is
in microseconds, as tritonclient sends it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from modelscale.errors import ModelscaleError

__all__ = [
    "DATATYPE_TO_DTYPE",
    "DTYPE_TO_DATATYPE",
    "EXTENSIONS",
    "MAX_DIMS",
    "MAX_REQUEST_ID",
    "ApiError",
    "InferRequest",
    "RequestInput",
    "RequestOutput",
    "body_too_large",
    "datatype_of",
    "datatype_of_array",
    "dtype_of",
    "request_id_problem",
    "server_version",
]

DATATYPE_TO_DTYPE: dict[str, np.dtype[Any]] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype(np.uint8),
    "UINT16": np.dtype(np.uint16),
    "UINT32": np.dtype(np.uint32),
    "UINT64": np.dtype(np.uint64),
    "INT8": np.dtype(np.int8),
    "INT16": np.dtype(np.int16),
    "INT32": np.dtype(np.int32),
    "INT64": np.dtype(np.int64),
    "FP16": np.dtype(np.float16),
    "FP32": np.dtype(np.float32),
    "FP64": np.dtype(np.float64),
}
"""V2 datatype names this server accepts (BYTES and BF16 have no numeric numpy dtype)."""

DTYPE_TO_DATATYPE: dict[str, str] = {dt.name: name for name, dt in DATATYPE_TO_DTYPE.items()}
_BY_DTYPE: dict[np.dtype[Any], str] = {dt: name for name, dt in DATATYPE_TO_DTYPE.items()}

EXTENSIONS = ("binary_tensor_data", "model_versions", "request_timeout", "metrics")
"""What GET /v2 lists under ``extensions``."""


class ApiError(ModelscaleError):
    """A request the server answers with a 4xx/5xx status and a message naming the field."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        field: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.field = field
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        """The V2 error body: ``{"error": message}`` plus the field when known."""
        out: dict[str, Any] = {"error": self.message}
        if self.field:
            out["field"] = self.field
        return out


def datatype_of(dtype: str | None) -> str:
    """The V2 datatype name of a numpy dtype name ('float32' -> 'FP32'); 'BYTES' for others."""
    return DTYPE_TO_DATATYPE.get(dtype or "", "BYTES")


def datatype_of_array(dtype: np.dtype[Any]) -> str:
    """The V2 datatype name of a numpy dtype object (a dict lookup: ``dtype.name`` is slow)."""
    return _BY_DTYPE.get(dtype, "BYTES")


def dtype_of(datatype: str, *, field: str) -> np.dtype[Any]:
    """The numpy dtype of a V2 datatype name, or a 400 naming the field and the accepted names."""
    try:
        return DATATYPE_TO_DTYPE[datatype]
    except KeyError:
        raise ApiError(
            400,
            f"{field}: unsupported datatype {datatype!r}; expected one of "
            f"{', '.join(DATATYPE_TO_DTYPE)}.",
            field=field,
        ) from None


class _Wire(BaseModel):
    # Unknown keys are tolerated (clients add their own); wrong types are not coerced ("3" is not 3).
    model_config = ConfigDict(extra="ignore", frozen=True, strict=True)


class RequestInput(_Wire):
    """One input tensor of an inference request."""

    name: str
    shape: list[int]
    datatype: str
    parameters: dict[str, Any] | None = None
    data: list[Any] | None = None


class RequestOutput(_Wire):
    """One output the client asks for (all outputs when the request lists none)."""

    name: str
    parameters: dict[str, Any] | None = None


class InferRequest(_Wire):
    """The JSON part of ``POST /v2/models/{name}[/versions/{v}]/infer``."""

    id: str | None = None
    parameters: dict[str, Any] | None = None
    inputs: list[RequestInput] = Field(min_length=1)
    outputs: list[RequestOutput] | None = None


MAX_REQUEST_ID = 256
"""Characters of a request id at most (it is echoed in the ``X-Request-Id`` response header)."""
MAX_DIMS = 64
"""Dims of a tensor at most (NumPy's limit)."""


def request_id_problem(value: str) -> str | None:
    """Why ``value`` cannot be a request id, or None when it can.

    An id travels back in the ``X-Request-Id`` header, so it must be printable ASCII: a CR or LF
    would split the response, and other bytes have no agreed encoding in a header.
    """
    if len(value) > MAX_REQUEST_ID:
        return f"is {len(value)} characters long; at most {MAX_REQUEST_ID} are taken"
    if not value.isascii() or not value.isprintable():
        bad = next(c for c in value if not (c.isascii() and c.isprintable()))
        return f"holds {bad!r}; expected printable ASCII (it is echoed in the X-Request-Id header)"
    return None


def server_version() -> str:
    """modelscale's version, as GET /v2 reports it ("0" when not installed as a package)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("modelscale")
    except PackageNotFoundError:
        return "0"


def body_too_large(limit: int, setting: str, *, size: int | None = None, who: str) -> ApiError:
    """The 413 for a body over ``limit`` bytes: ``size`` when declared up front, else found while
    reading. ``setting`` names what sets the limit; ``who`` is what refuses ("this server")."""
    if size is not None:
        message = (
            f"the body is {size} bytes; {who} takes at most {limit} ({setting}). Send smaller "
            "requests."
        )
    else:
        message = f"the body exceeds {limit} bytes ({setting}). Send smaller requests."
    return ApiError(413, message, field="body")
