"""What the load generator sends: V2 inference requests built from the server's model metadata.

Inputs come from an .npz (one array per input name, rows along axis 0; each request takes the next
``batch`` rows, cycling) or are synthesised from the metadata at shapes that ``loadgen.shapes``
settles (a dynamic axis other than the batch needs a size from the user or a stored profile; it
is never guessed). Bodies are encoded once, before the run.
"""

from __future__ import annotations

import http.client
import json
import pathlib
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

import numpy as np

from modelscale.errors import InvalidInput, ServerError
from modelscale.loadgen.client import build_request
from modelscale.loadgen.shapes import request_shapes

__all__ = ["Target", "build_bodies", "fetch_metadata", "parse_url"]

_DTYPES = {
    "BOOL": np.bool_,
    "UINT8": np.uint8,
    "UINT16": np.uint16,
    "UINT32": np.uint32,
    "UINT64": np.uint64,
    "INT8": np.int8,
    "INT16": np.int16,
    "INT32": np.int32,
    "INT64": np.int64,
    "FP16": np.float16,
    "FP32": np.float32,
    "FP64": np.float64,
}
_MAX_BODIES = 256


@dataclass(frozen=True)
class Target:
    """Where the load goes: host, port and the model (and version) path prefix."""

    host: str
    port: int
    model: str
    version: str | None = None

    @property
    def model_path(self) -> str:
        """'/v2/models/NAME' or '/v2/models/NAME/versions/V'."""
        path = f"/v2/models/{quote(self.model, safe='')}"
        return f"{path}/versions/{quote(self.version, safe='')}" if self.version else path


def parse_url(url: str, *, model: str, version: str | None = None) -> Target:
    """Check a base URL such as http://127.0.0.1:8000 (plain HTTP; the path is ignored)."""
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise InvalidInput(
            f"The URL must be a plain http:// base URL such as http://127.0.0.1:8000. Got {url!r} "
            "instead (https is not supported by the load generator).",
            field="url",
        )
    try:
        port = parts.port or 80
    except ValueError:
        raise InvalidInput(f"The URL {url!r} has an invalid port.", field="url") from None
    if not model:
        raise InvalidInput("The 'model' parameter must name a model on the server.", field="model")
    return Target(parts.hostname, port, model, version)


def fetch_metadata(target: Target, *, api_key: str | None = None) -> dict[str, Any]:
    """GET the V2 model metadata (ServerError if the server is down or does not know the model)."""
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    conn = http.client.HTTPConnection(target.host, target.port, timeout=10)
    try:
        conn.request("GET", target.model_path, headers=headers)
        resp = conn.getresponse()
        body = resp.read()
    except OSError as exc:
        raise ServerError(
            f"Cannot reach {target.host}:{target.port}: {exc}. Is the server running?"
        ) from None
    finally:
        conn.close()
    if resp.status != 200:
        try:
            detail = json.loads(body).get("error", "")
        except (ValueError, AttributeError):
            detail = body[:200].decode("utf-8", "replace")
        raise InvalidInput(
            f"The server answered {resp.status} for model {target.model!r}"
            f"{f' version {target.version}' if target.version else ''}: {detail}",
            field="model",
        )
    try:
        meta: dict[str, Any] = json.loads(body)
        _ = [(t["name"], t["datatype"], list(t["shape"])) for t in meta["inputs"]]
    except (ValueError, KeyError, TypeError):
        raise ServerError(
            f"{target.model_path} did not return V2 model metadata (inputs with name, datatype, "
            "shape)."
        ) from None
    return meta


def _synthetic(
    meta: dict[str, Any], shapes: Mapping[str, Sequence[int]], seed: int
) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    out: dict[str, np.ndarray] = {}
    for t in meta["inputs"]:
        dtype = _DTYPES.get(t["datatype"])
        if dtype is None:
            hint = "a .txt file with one text per line, or " if t["datatype"] == "BYTES" else ""
            raise InvalidInput(
                f"Input {t['name']!r} has datatype {t['datatype']}, which the load generator cannot "
                f"synthesise; give real inputs in 'inputs' ({hint}an .npz).",
                field="inputs",
            )
        shape = [int(d) for d in shapes[t["name"]]]
        if np.issubdtype(dtype, np.floating):
            out[t["name"]] = rng.standard_normal(shape).astype(dtype)
        else:
            out[t["name"]] = np.zeros(shape, dtype=dtype)
    return out


def _read_npz(path: pathlib.Path) -> dict[str, np.ndarray]:
    if not path.is_file():
        raise InvalidInput(
            f"Inputs file {path} does not exist. Expected an .npz file.", field="inputs"
        )
    try:
        with np.load(path, allow_pickle=False) as npz:
            return {k: npz[k] for k in npz.files}
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as exc:
        raise InvalidInput(
            f"{path} is not a readable .npz file ({exc}). Expected numpy.savez output whose keys "
            "are input names.",
            field="inputs",
        ) from None


def _read_texts(meta: dict[str, Any], path: pathlib.Path) -> dict[str, np.ndarray]:
    """One text per non-empty line, for a model whose only input is BYTES (text)."""
    texts = [t["name"] for t in meta["inputs"] if t["datatype"] == "BYTES"]
    if len(texts) != 1 or len(meta["inputs"]) != 1:
        raise InvalidInput(
            f"{path} is a text file, which gives one BYTES input; the model's inputs are "
            f"{', '.join(t['name'] + ' ' + t['datatype'] for t in meta['inputs'])}. Give an .npz "
            "with one array per input instead.",
            field="inputs",
        )
    try:
        lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInput(
            f"Cannot read {path} as UTF-8 text ({exc}); expected one text per line.",
            field="inputs",
        ) from None
    if not lines:
        raise InvalidInput(f"{path} has no text; expected one text per line.", field="inputs")
    arr = np.empty(len(lines), dtype=object)
    arr[:] = lines
    return {texts[0]: arr}


def _from_npz(meta: dict[str, Any], path: pathlib.Path) -> dict[str, np.ndarray]:
    if path.suffix == ".txt" and path.is_file():
        return _read_texts(meta, path)
    data = _read_npz(path)
    names = [t["name"] for t in meta["inputs"]]
    missing = [n for n in names if n not in data]
    if missing:
        raise InvalidInput(
            f"{path} lacks input(s) {', '.join(missing)}; the model needs {', '.join(names)} "
            f"(the file has {', '.join(data) or 'no arrays'}).",
            field="inputs",
        )
    out = {}
    for t in meta["inputs"]:
        arr = np.asarray(data[t["name"]])
        dtype = _DTYPES.get(t["datatype"])
        if t["datatype"] == "BYTES":
            arr = arr.astype(object)  # strings ('U' arrays from an .npz) as Python str
        out[t["name"]] = arr.astype(dtype) if dtype is not None else arr
        if arr.ndim == 0 or arr.shape[0] < 1:
            raise InvalidInput(
                f"{path}: array {t['name']!r} needs rows along axis 0. Got shape {arr.shape}.",
                field="inputs",
            )
    rows = {a.shape[0] for a in out.values()}
    if len(rows) != 1:
        raise InvalidInput(
            f"{path}: arrays have different row counts {sorted(rows)}; each request takes the same "
            "rows from every input.",
            field="inputs",
        )
    return out


def _body(
    arrays: dict[str, np.ndarray], outputs: tuple[str, ...], binary: bool, datatypes: dict[str, str]
) -> tuple[bytes, dict[str, str]]:
    inputs, raw = [], []
    for name, arr in arrays.items():
        entry: dict[str, Any] = {
            "name": name,
            "shape": list(arr.shape),
            "datatype": datatypes[name],
        }
        if binary:
            if arr.dtype.kind == "O":  # BYTES: each element a 4-byte length and its UTF-8
                data = b"".join(
                    len(b).to_bytes(4, "little") + b
                    for b in (str(v).encode("utf-8") for v in arr.reshape(-1))
                )
            else:
                data = np.ascontiguousarray(arr).tobytes()
            entry["parameters"] = {"binary_data_size": len(data)}
            raw.append(data)
        else:
            entry["data"] = (
                [str(v) for v in arr.reshape(-1)]
                if arr.dtype.kind == "O"
                else arr.reshape(-1).tolist()
            )
        inputs.append(entry)
    doc: dict[str, Any] = {"inputs": inputs}
    if outputs:
        doc["outputs"] = [{"name": n, "parameters": {"binary_data": binary}} for n in outputs]
    elif binary:
        doc["parameters"] = {"binary_data_output": True}
    head = json.dumps(doc, separators=(",", ":")).encode()
    if not binary:
        return head, {"Content-Type": "application/json"}
    return head + b"".join(raw), {
        "Content-Type": "application/octet-stream",
        "Inference-Header-Content-Length": str(len(head)),
    }


def build_bodies(
    target: Target,
    meta: dict[str, Any],
    *,
    inputs: pathlib.Path | None = None,
    batch: int = 1,
    outputs: tuple[str, ...] = (),
    binary: bool = False,
    api_key: str | None = None,
    seed: int = 0,
    shapes: Mapping[str, Sequence[int]] | None = None,
) -> list[bytes]:
    """Pre-encoded HTTP requests (at most 256 distinct ones, sent in turn).

    Without ``inputs``, the inputs are synthesised at ``shapes`` (one request's shape per input;
    default: ``request_shapes(meta, batch=batch)``, which refuses dynamic axes besides the batch).
    """
    known = [t["name"] for t in meta.get("outputs", [])]
    unknown = [o for o in outputs if known and o not in known]
    if unknown:
        raise InvalidInput(
            f"Unknown output(s) {', '.join(unknown)}; the model's outputs are {', '.join(known)}.",
            field="output",
        )
    datatypes = {t["name"]: t["datatype"] for t in meta["inputs"]}
    if inputs is not None:
        data = _from_npz(meta, inputs)
    else:
        if shapes is None:
            shapes = request_shapes(meta, batch=batch).shapes
        data = _synthetic(meta, shapes, seed)
    n_rows = next(iter(data.values())).shape[0]
    starts = range(0, max(1, n_rows - batch + 1), batch) if inputs is not None else range(1)
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    out = []
    for s in list(starts)[:_MAX_BODIES]:
        rows = {k: v[s : s + batch] for k, v in data.items()} if inputs is not None else data
        body, content = _body(rows, outputs, binary, datatypes)
        out.append(
            build_request(
                "POST",
                target.host,
                target.port,
                f"{target.model_path}/infer",
                body,
                {**content, **headers},
            )
        )
    return out
