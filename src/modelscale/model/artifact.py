"""ModelArtifact: an ONNX model on disk, its signature and the sha256 that names the version."""

from __future__ import annotations

import dataclasses
import hashlib
import pathlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import onnx
from google.protobuf.message import DecodeError

from modelscale.errors import ModelLoadError
from modelscale.model.signature import Signature, signature_from_onnx

__all__ = ["ModelArtifact", "file_sha256"]

_CHUNK = 1 << 20


def file_sha256(path: pathlib.Path) -> str:
    """sha256 of a file's bytes, read in chunks (models can be GBs)."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _not_onnx(path: pathlib.Path, why: str) -> ModelLoadError:
    return ModelLoadError(
        f"{path} is not a valid ONNX model ({why}). Expected an ONNX protobuf file "
        "such as one written by torch.onnx.export or onnx.save.",
        path=str(path),
    )


def _parse(path: pathlib.Path) -> onnx.ModelProto:
    if not path.exists():
        raise ModelLoadError(
            f"Model file {path} does not exist. Expected a path to an .onnx file.", path=str(path)
        )
    if path.is_dir():
        raise ModelLoadError(
            f"{path} is a directory. Expected a path to an .onnx file.", path=str(path)
        )
    if path.stat().st_size == 0:
        raise _not_onnx(path, "the file is empty")
    try:
        # External weights are not needed to read the graph; they are checked when a session loads.
        proto = onnx.load(str(path), load_external_data=False)
    except (DecodeError, RuntimeError, ValueError) as exc:
        raise _not_onnx(path, f"it cannot be parsed, it may be truncated: {exc}") from exc
    except OSError as exc:
        raise ModelLoadError(f"Cannot read {path}: {exc.strerror}.", path=str(path)) from exc
    # Arbitrary bytes can parse as a protobuf full of unknown fields; a real model has these.
    if proto.ir_version <= 0 or not proto.graph.output or not proto.opset_import:
        raise _not_onnx(path, "it has no IR version, opset or graph outputs")
    return proto


@dataclass(frozen=True)
class ModelArtifact:
    """An ONNX model on disk plus its signature and content hash.

    The sha256 of the file identifies the model version everywhere: in the knowledge base, the server
    and reports.
    """

    path: pathlib.Path
    name: str
    sha256: str
    size_bytes: int
    signature: Signature
    opsets: Mapping[str, int]
    producer: str

    @classmethod
    def load(cls, path: str | pathlib.Path, *, name: str | None = None) -> ModelArtifact:
        """Read an ONNX file, check that it is one, and compute its signature and sha256."""
        p = pathlib.Path(path).expanduser()
        proto = _parse(p)
        return cls(
            path=p.resolve(),
            name=name or p.stem,
            sha256=file_sha256(p),
            size_bytes=p.stat().st_size,
            signature=signature_from_onnx(proto),
            opsets={o.domain or "ai.onnx": int(o.version) for o in proto.opset_import},
            producer=f"{proto.producer_name} {proto.producer_version}".strip(),
        )

    @classmethod
    def from_torch(
        cls,
        module: Any,
        example_inputs: Any,
        path: str | pathlib.Path,
        *,
        name: str | None = None,
        input_names: Sequence[str] | None = None,
        output_names: Sequence[str] | None = None,
        dynamic_axes: Mapping[str, Mapping[int, str]] | None = None,
    ) -> ModelArtifact:
        """Export a PyTorch module to ONNX at ``path`` (dynamic batch axis) and load it."""
        from modelscale.model.torch_export import export_torch

        out = export_torch(
            module,
            example_inputs,
            path,
            input_names=input_names,
            output_names=output_names,
            dynamic_axes=dynamic_axes,
        )
        return cls.load(out, name=name)

    def with_batch_axes(self, axes: Mapping[str, int | None] | None) -> ModelArtifact:
        """This model with the batch axis of some inputs set (see ``Signature.with_batch_axes``).

        The file and its sha256 are unchanged: a batch axis is how the model is fed, not part of it.
        """
        if not axes:
            return self
        return dataclasses.replace(self, signature=self.signature.with_batch_axes(axes))

    @property
    def short_id(self) -> str:
        """The first 12 hex digits of the sha256, as shown in tables."""
        return self.sha256[:12]

    def proto(self, *, with_weights: bool = True) -> onnx.ModelProto:
        """Parse the model again (not cached: a large model's weights should not stay in memory)."""
        return onnx.load(str(self.path), load_external_data=with_weights)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "name": self.name,
            "path": str(self.path),
            "sha256": self.sha256,
            "size_bytes": self.size_bytes,
            "opsets": dict(self.opsets),
            "producer": self.producer,
            "signature": self.signature.to_dict(),
        }
