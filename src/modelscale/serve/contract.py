"""What a served model version accepts and returns, checked against each request.

The contract is read from the model's signature: input names, dtypes and shapes (fixed and symbolic
dims), output names, and whether the model batches along axis 0 (every input and output has a
dynamic first axis). It also answers the V2 model metadata request.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

from modelscale.errors import InvalidInput
from modelscale.model.artifact import ModelArtifact
from modelscale.model.signature import Dim, TensorSpec
from modelscale.serve.protocol import (
    DATATYPE_TO_DTYPE,
    DTYPE_TO_DATATYPE,
    ApiError,
    datatype_of,
)

if TYPE_CHECKING:
    from modelscale.serve.text import TextFront

__all__ = ["PLATFORM", "ModelContract", "check_tensor_shapes", "element_count"]

PLATFORM = "onnxruntime_onnx"
"""The V2 ``platform`` string Triton uses for ONNX Runtime models; clients recognise it."""


def _dynamic(d: Dim) -> bool:
    return not isinstance(d, int)


@dataclass(frozen=True)
class ModelContract:
    """The inputs, outputs and batching limit of one served model version."""

    name: str
    version: str
    sha256: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    batchable: bool
    """Whether requests may be stacked along axis 0 (all inputs and outputs have a dynamic axis 0)."""
    max_batch: int
    """Rows per batch at most; a batchable request with more rows is answered 400."""
    serving: Mapping[str, int | float | str] = field(default_factory=dict)
    """How the version runs (replicas, threads, max_wait_ms, max_queue): published in the metadata
    so that a client (``plan --validate URL``) can tell which configuration it measures."""
    graph_inputs: tuple[TensorSpec, ...] = ()
    """The graph's own inputs when they differ from ``inputs`` (a text model: token inputs the
    tokenizer fills, while clients send ``inputs``' strings)."""
    max_text_bytes: int = 0
    """The longest string a BYTES input takes (text models)."""
    token_outputs: frozenset[str] = frozenset()
    """Outputs with a per-token axis 1 (cut back to each request's own token count)."""

    @classmethod
    def from_artifact(
        cls,
        artifact: ModelArtifact,
        *,
        name: str,
        version: str,
        max_batch: int,
        serving: Mapping[str, int | float | str] | None = None,
        text: TextFront | None = None,
    ) -> ModelContract:
        """The contract of ``artifact`` served as ``name`` version ``version``.

        Outputs that are not numeric tensors (ONNX-ML sequences of maps) are not served; inputs that
        are not numeric tensors make the model unservable (InvalidInput naming the input). With
        ``text``, clients send strings to its BYTES input and the tokenizer fills the graph's.
        """
        sig = artifact.signature
        for spec in () if text is not None else sig.inputs:
            if spec.dtype not in DTYPE_TO_DATATYPE:
                raise InvalidInput(
                    f"Model {name!r} input {spec.name!r} is {spec.onnx_type}; the server takes "
                    f"numeric tensors only ({', '.join(DATATYPE_TO_DTYPE)}).",
                    field="model",
                )
        outputs = tuple(o for o in sig.outputs if o.dtype in DTYPE_TO_DATATYPE)
        if not outputs:
            raise InvalidInput(
                f"Model {name!r} has no numeric tensor output to serve (its outputs are "
                f"{', '.join(o.onnx_type for o in sig.outputs)}).",
                field="model",
            )
        tensors = (*sig.inputs, *outputs)
        batchable = all(t.shape is not None and t.shape and _dynamic(t.shape[0]) for t in tensors)
        graph_inputs: tuple[TensorSpec, ...] = ()
        token_outputs: frozenset[str] = frozenset()
        if text is None:
            inputs = sig.inputs
        else:
            if not batchable:
                raise InvalidInput(
                    f"Model {name!r} is served with text, which needs a graph whose inputs and "
                    "outputs all have a dynamic batch axis 0.",
                    field=f"models.{name}.text",
                )
            inputs, graph_inputs = (text.spec_of_input(),), sig.inputs
            token_outputs = _token_outputs(sig.inputs, outputs)
        return cls(
            name=name,
            version=version,
            sha256=artifact.sha256,
            inputs=inputs,
            outputs=outputs,
            batchable=batchable,
            max_batch=max_batch if batchable else 1,
            serving=dict(serving or {}),
            graph_inputs=graph_inputs,
            max_text_bytes=text.max_text_bytes if text is not None else 0,
            token_outputs=token_outputs,
        )

    # Read for every request: computed once (a frozen dataclass still has a __dict__ to cache in).
    @cached_property
    def input_names(self) -> tuple[str, ...]:
        """Input names in graph order."""
        return tuple(t.name for t in self.inputs)

    @cached_property
    def output_names(self) -> tuple[str, ...]:
        """Output names in graph order."""
        return tuple(t.name for t in self.outputs)

    @cached_property
    def input_key(self) -> tuple[Any, ...]:
        """What validating a request depends on: equal keys accept exactly the same requests."""
        return (
            tuple((t.name, t.dtype, t.shape) for t in self.inputs),
            self.output_names,
            self.batchable,
            self.max_batch,
        )

    @cached_property
    def input_datatypes(self) -> dict[str, str]:
        """V2 datatype name of each input."""
        return {t.name: datatype_of(t.dtype) for t in self.inputs}

    @cached_property
    def _valid_shapes(self) -> dict[tuple[tuple[int, ...], ...], int]:
        """Input shapes (in graph order) already accepted, with their row count."""
        return {}

    def metadata(self, *, versions: tuple[str, ...]) -> dict[str, Any]:
        """The V2 model metadata response; ``parameters.sha256`` identifies this exact version."""
        return {
            "name": self.name,
            "versions": list(versions),
            "platform": PLATFORM,
            "inputs": [_tensor_meta(t) for t in self.inputs],
            "outputs": [_tensor_meta(t) for t in self.outputs],
            "parameters": {
                "version": self.version,
                "sha256": self.sha256,
                "max_batch_size": self.max_batch if self.batchable else 0,
                **self.serving,  # V2 parameters are flat: numbers and strings only
            },
        }


def _token_outputs(
    inputs: tuple[TensorSpec, ...], outputs: tuple[TensorSpec, ...]
) -> frozenset[str]:
    """Outputs whose axis 1 is the token inputs' symbolic sequence dim (by its name)."""
    seq = {t.shape[1] for t in inputs if t.shape and len(t.shape) == 2 and _dynamic(t.shape[1])}
    return frozenset(o.name for o in outputs if o.shape and len(o.shape) >= 2 and o.shape[1] in seq)


def _tensor_meta(spec: TensorSpec) -> dict[str, Any]:
    shape = [d if isinstance(d, int) else -1 for d in spec.shape or ()]
    return {"name": spec.name, "datatype": datatype_of(spec.dtype), "shape": shape}


def check_tensor_shapes(
    contract: ModelContract,
    shapes: Mapping[str, tuple[int, ...]],
    fields: Mapping[str, str],
) -> int:
    """Check every input's shape against the model and return the request's row count.

    ``fields`` maps an input name to the request field it came from ('inputs[1]'), so a 400 names it.
    Symbolic dims must agree across inputs (input_ids and attention_mask share 'seq').
    """
    # Clients send the same few shapes again and again: remember the ones that passed.
    key = tuple(shapes[s.name] for s in contract.inputs)
    known = contract._valid_shapes.get(key)
    if known is not None:
        return known
    rows = _check_tensor_shapes(contract, shapes, fields)
    if len(contract._valid_shapes) < _MAX_KNOWN_SHAPES:
        contract._valid_shapes[key] = rows
    return rows


_MAX_KNOWN_SHAPES = 4096


def _check_tensor_shapes(
    contract: ModelContract,
    shapes: Mapping[str, tuple[int, ...]],
    fields: Mapping[str, str],
) -> int:
    seen: dict[str, tuple[int, str]] = {}
    # Dims are >= 1 here: the decoder checks that before it computes any size.
    for spec in contract.inputs:
        shape, field = shapes[spec.name], fields[spec.name]
        if spec.shape is None:
            continue
        if len(shape) != len(spec.shape):
            raise ApiError(
                400,
                f"{field}.shape {list(shape)} has {len(shape)} dims; input {spec.name!r} of model "
                f"{contract.name!r} expects {len(spec.shape)}: {spec.shape_str()}.",
                field=f"{field}.shape",
            )
        for axis, (size, want) in enumerate(zip(shape, spec.shape, strict=True)):
            if isinstance(want, int) and size != want:
                raise ApiError(
                    400,
                    f"{field}.shape[{axis}] is {size}; input {spec.name!r} expects {want} there: "
                    f"{spec.shape_str()}.",
                    field=f"{field}.shape",
                )
            if isinstance(want, str):
                key = "<batch>" if axis == 0 and contract.batchable else want
                if key in seen and seen[key][0] != size:
                    other_size, other_field = seen[key]
                    raise ApiError(
                        400,
                        f"{field}.shape[{axis}] is {size} but {other_field} has {other_size} for "
                        f"the same dim {want!r}; inputs sharing a dim must agree.",
                        field=f"{field}.shape",
                    )
                if key not in seen:
                    seen[key] = (size, f"{field}.shape[{axis}]")
    if not contract.batchable:
        return 1
    rows = {shapes[s.name][0] for s in contract.inputs}
    if len(rows) != 1:
        raise ApiError(
            400,
            f"inputs disagree on the batch size (axis 0): {sorted(rows)}.",
            field="inputs",
        )
    n = rows.pop()
    if n > contract.max_batch:
        raise ApiError(
            400,
            f"the request has {n} rows (axis 0) but model {contract.name!r} version "
            f"{contract.version} takes at most max_batch={contract.max_batch} per batch; split it "
            "into smaller requests.",
            field="inputs.shape",
        )
    return n


def element_count(shape: tuple[int, ...]) -> int:
    """Number of elements of a tensor of ``shape``."""
    return math.prod(shape)
