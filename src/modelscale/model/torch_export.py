"""Export a PyTorch module to one self-contained ONNX file with a dynamic batch axis.

The export uses ``torch.onnx.export(..., dynamo=True)``: the ``torch.export``-based exporter that
is the default and the maintained path since PyTorch 2.9 (the TorchScript exporter is deprecated
and warns that it will be removed). Dynamic axes are declared as ``torch.export.Dim`` objects, so
the exported graph keeps symbolic dims named after them (``batch``, ``seq``, ...) on inputs and on
the outputs that follow from them, and ONNX Runtime runs it at any size.

The file appears at its destination only once it is complete and has passed ``onnx.checker``: it is
written into a temporary folder beside the destination and moved into place with ``os.replace``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pathlib
import re
import shutil
import tempfile
import warnings
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from modelscale.errors import InvalidInput, MissingDependency, invalid_parameter

if TYPE_CHECKING:
    import torch

__all__ = ["BATCH_DIM", "export_torch", "import_torch"]

BATCH_DIM = "batch"

# Protobuf cannot serialise a message of 2 GiB or more; keep a margin for the graph itself.
_INLINE_WEIGHTS_LIMIT = 2**31 - 64 * 2**20

_WHERE = "export_torch"
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def import_torch() -> Any:
    """Import torch, or raise MissingDependency naming the extra that installs it."""
    try:
        import torch
    except ImportError:
        raise MissingDependency("torch", "torch") from None
    return torch


def _import_torch() -> Any:
    torch = import_torch()
    try:
        import onnxscript  # noqa: F401  (the dynamo exporter builds graphs with it)
    except ImportError:
        raise MissingDependency("onnxscript", "torch") from None
    return torch


def _as_tuple(example_inputs: Any, torch: Any) -> tuple[torch.Tensor, ...]:
    inputs = (example_inputs,) if isinstance(example_inputs, torch.Tensor) else example_inputs
    if not isinstance(inputs, tuple | list) or not inputs:
        raise invalid_parameter(
            "example_inputs",
            "a tensor or a non-empty tuple of tensors",
            example_inputs,
            where=_WHERE,
        )
    for i, t in enumerate(inputs):
        if not isinstance(t, torch.Tensor):
            raise invalid_parameter(
                "example_inputs",
                "a tensor or a tuple of tensors",
                f"{type(t).__name__} at {i}",
                where=_WHERE,
            )
    return tuple(inputs)


def _check_names(names: Sequence[str] | None, what: str, count: int | None) -> list[str] | None:
    if names is None:
        return None
    if isinstance(names, str) or not all(isinstance(n, str) and n for n in names):
        raise invalid_parameter(what, "a list of non-empty strings", names, where=_WHERE)
    names = list(names)
    if len(set(names)) != len(names):
        raise invalid_parameter(what, "a list of distinct names", names, where=_WHERE)
    if count is not None and len(names) != count:
        raise invalid_parameter(
            what, f"a list of {count} names, one per example input", names, where=_WHERE
        )
    return names


def _dynamic_shapes(
    inputs: tuple[torch.Tensor, ...],
    names: list[str],
    *,
    dynamic_batch: bool,
    dynamic_axes: Mapping[str, Mapping[int, str]] | None,
    torch: Any,
) -> tuple[dict[int, Any], ...] | None:
    """One ``{axis: Dim}`` per input; one Dim object per name, so equal names mean equal sizes."""
    wanted: list[dict[int, str]] = [{0: BATCH_DIM} if dynamic_batch else {} for _ in inputs]
    for input_name, axes in (dynamic_axes or {}).items():
        if input_name not in names:
            raise invalid_parameter(
                "dynamic_axes",
                f"a mapping whose keys are input names ({', '.join(names)})",
                input_name,
                where=_WHERE,
            )
        i = names.index(input_name)
        if not isinstance(axes, Mapping):
            raise invalid_parameter(
                "dynamic_axes", "a mapping input -> {axis: dim name}", axes, where=_WHERE
            )
        for axis, dim_name in axes.items():
            rank = inputs[i].dim()
            if not isinstance(axis, int) or isinstance(axis, bool) or not -rank <= axis < rank:
                raise invalid_parameter(
                    "dynamic_axes",
                    f"axes of {input_name!r} as integers in [0, {rank})",
                    axis,
                    where=_WHERE,
                )
            if not isinstance(dim_name, str) or not dim_name.isidentifier():
                raise invalid_parameter(
                    "dynamic_axes",
                    "dim names that are identifiers, e.g. 'seq'",
                    dim_name,
                    where=_WHERE,
                )
            wanted[i][axis % rank] = dim_name
    if not any(wanted):
        return None
    for t, axes in zip(inputs, wanted, strict=True):
        if 0 in axes and t.dim() == 0:
            raise InvalidInput(
                "A dynamic batch axis needs every example input to have at least one dimension; "
                "pass dynamic_batch=False for scalar inputs.",
                field="example_inputs",
            )
    dims: dict[str, Any] = {}
    return tuple(
        {axis: dims.setdefault(n, torch.export.Dim(n)) for axis, n in sorted(axes.items())}
        for axes in wanted
    )


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    """Silence the exporter's chatter (library notices, deprecations inside torch) for one export.

    The CLI prints JSON on stdout and shows progress on stderr; neither should be cluttered by
    messages that say nothing about the model being exported.
    """
    registration = logging.getLogger("torch.onnx._internal.exporter._registration")
    level = registration.level
    registration.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r".*LeafSpec.*", category=FutureWarning)
            warnings.filterwarnings("ignore", message=r".*axis name.*will not be used.*")
            warnings.filterwarnings("ignore", message=r".*legacy TorchScript-based ONNX export.*")
            yield
    finally:
        registration.setLevel(level)


def _weights_nbytes(module: torch.nn.Module) -> int:
    tensors = [*module.parameters(), *module.buffers()]
    return sum(t.numel() * t.element_size() for t in tensors)


def export_torch(
    module: torch.nn.Module,
    example_inputs: torch.Tensor | Sequence[torch.Tensor],
    path: str | os.PathLike[str],
    *,
    input_names: Sequence[str] | None = None,
    output_names: Sequence[str] | None = None,
    dynamic_batch: bool = True,
    dynamic_axes: Mapping[str, Mapping[int, str]] | None = None,
    opset: int | None = None,
) -> pathlib.Path:
    """Export ``module`` to an ONNX file whose axis 0 is a symbolic ``batch`` dim.

    The module is exported in eval mode (and put back in the mode it was in). Weights are stored
    inside the one ``.onnx`` file; only a model of 2 GiB or more, which protobuf cannot hold, gets a
    ``.data`` file beside it. The file is written atomically and checked with ``onnx.checker``
    before it appears.

    Args:
        module: The PyTorch module to export.
        example_inputs: One tensor or a tuple of tensors, passed positionally to ``module``; their
            dtypes and non-dynamic sizes become the model's input signature.
        path: Where to write the model; parent folders are created.
        input_names: Names of the graph inputs, one per example input (default: forward's
            argument names).
        output_names: Names of the graph outputs, in the order ``module`` returns them.
        dynamic_batch: Make axis 0 of every input (and of the outputs that follow it) the
            ``batch`` dim.
        dynamic_axes: More dynamic axes, as ``{input_name: {axis: dim_name}}``, e.g.
            ``{"input_ids": {1: "seq"}}``. The same dim name on several inputs means the same size.
            Input names refer to ``input_names``.
        opset: The ONNX opset to target (default: the exporter's recommended one).

    Returns:
        The path of the written model.

    Raises:
        MissingDependency: torch (or onnxscript) is not installed.
        InvalidInput: An option is malformed, the destination is not writable, or the module
            cannot be exported with these inputs and dynamic axes (the message gives the reason).
    """
    torch = _import_torch()
    if not isinstance(module, torch.nn.Module):
        raise invalid_parameter("module", "a torch.nn.Module", type(module).__name__, where=_WHERE)
    inputs = _as_tuple(example_inputs, torch)
    names = _check_names(input_names, "input_names", len(inputs))
    outputs = _check_names(output_names, "output_names", None)
    if opset is not None and (not isinstance(opset, int) or isinstance(opset, bool) or opset < 7):
        raise invalid_parameter("opset", "an integer >= 7 or None", opset, where=_WHERE)
    if dynamic_axes and names is None:
        raise InvalidInput(
            "dynamic_axes names inputs, so input_names must be given too.", field="dynamic_axes"
        )
    dynamic_shapes = _dynamic_shapes(
        inputs,
        names or [f"input_{i}" for i in range(len(inputs))],
        dynamic_batch=dynamic_batch,
        dynamic_axes=dynamic_axes,
        torch=torch,
    )

    dest = pathlib.Path(path)
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp_dir = pathlib.Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    except OSError as exc:
        raise InvalidInput(
            f"Cannot write the model to {dest}: {exc.strerror or exc}.", field="path"
        ) from exc

    was_training = module.training
    module.eval()
    try:
        # Saved under its final name so that external data, if any, is referenced by its final name.
        staged = tmp_dir / dest.name
        external = _weights_nbytes(module) >= _INLINE_WEIGHTS_LIMIT
        try:
            with _quiet_exporter(), torch.no_grad():
                program = torch.onnx.export(
                    module,
                    inputs,
                    dynamo=True,
                    input_names=names,
                    output_names=outputs,
                    dynamic_shapes=dynamic_shapes,
                    opset_version=opset,
                    external_data=external,
                    verbose=False,
                )
                program.save(staged, external_data=external)
        except (RuntimeError, TypeError, ValueError) as exc:
            # The exporter's own errors are RuntimeErrors; bad arguments to forward are TypeErrors.
            raise InvalidInput(
                f"torch.onnx could not export {type(module).__name__}: {_reason(exc)}",
                field="module",
            ) from exc
        _check_model(staged, dynamic_shapes, names)
        # Data files first, the model last: the model never appears without its weights.
        for extra in sorted(tmp_dir.iterdir()):
            if extra != staged:
                os.replace(extra, dest.parent / extra.name)
        os.replace(staged, dest)
    finally:
        module.train(was_training)
        shutil.rmtree(tmp_dir, ignore_errors=True)
    return dest


def _reason(exc: BaseException) -> str:
    """The first line of the innermost cause, uncoloured: the exporter wraps the real reason."""
    while exc.__cause__ is not None:
        exc = exc.__cause__
    lines = [ln.strip() for ln in _ANSI.sub("", str(exc)).splitlines() if ln.strip()]
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__


def _check_model(
    path: pathlib.Path,
    dynamic_shapes: tuple[dict[int, Any], ...] | None,
    names: list[str] | None,
) -> None:
    """Check the file with onnx.checker and that every axis asked to be dynamic stayed dynamic.

    When ``torch.export`` cannot keep a dim symbolic, the exporter falls back to a draft export that
    silently fixes it to the example's size; that model would reject other sizes at serving time.
    """
    import onnx

    try:
        # By path, so that a model with external data is checked too.
        onnx.checker.check_model(str(path))
    except onnx.checker.ValidationError as exc:
        raise InvalidInput(f"The exported model is not valid ONNX: {exc}", field="module") from exc
    if dynamic_shapes is None:
        return
    graph_inputs = onnx.load(str(path), load_external_data=False).graph.input
    for i, (graph_input, axes) in enumerate(zip(graph_inputs, dynamic_shapes, strict=False)):
        dims = graph_input.type.tensor_type.shape.dim
        for axis, dim in axes.items():
            if axis < len(dims) and dims[axis].HasField("dim_value"):
                label = names[i] if names else graph_input.name
                raise InvalidInput(
                    f"Axis {axis} of input {label!r} was asked to be dynamic ({dim.__name__!r}) "
                    f"but the module's code fixes it to {dims[axis].dim_value}; make the code "
                    "independent of that size or leave the axis static.",
                    field="dynamic_axes" if axis else "dynamic_batch",
                )
