"""Models: ONNX files on disk, their signatures, and concrete inputs for them."""

from __future__ import annotations

from modelscale.model.artifact import ModelArtifact, file_sha256
from modelscale.model.inputs import (
    InputChoice,
    batch_dim_names,
    check_choice,
    default_batches,
    load_npz,
    make_inputs,
    resolve_shapes,
)
from modelscale.model.rows import count_rows, row_axis, take_rows
from modelscale.model.signature import Dim, Signature, TensorSpec
from modelscale.model.torch_export import export_torch, import_torch

__all__ = [
    "Dim",
    "InputChoice",
    "ModelArtifact",
    "Signature",
    "TensorSpec",
    "batch_dim_names",
    "check_choice",
    "count_rows",
    "default_batches",
    "export_torch",
    "file_sha256",
    "import_torch",
    "load_npz",
    "make_inputs",
    "resolve_shapes",
    "row_axis",
    "take_rows",
]
