"""Structured pruning of PyTorch models: remove whole neurons and channels, then re-export.

Unstructured sparsity gives ONNX Runtime no speedup (the matrices stay dense); removing whole
Linear neurons and Conv2d channels makes the matrices themselves smaller. The units with the
smallest L2 norm of their weights go, and the next layer loses the matching input slices. Whether
that pays is judged by measured latency, never assumed from the parameter count.

Supported: chains of ``nn.Linear`` / ``nn.Conv2d`` (groups 1) with element-wise layers, pooling,
``Flatten`` and ``BatchNorm`` between them, in the order ``module.modules()`` lists them. The last
Linear/Conv2d keeps its outputs (they are the model's outputs).
"""

from __future__ import annotations

import copy
import os
import pathlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from modelscale.errors import InvalidInput, invalid_parameter
from modelscale.model import import_torch

__all__ = ["PruneResult", "PruneSpec", "prune_torch"]

_WHERE = "prune_torch"


@dataclass(frozen=True)
class PruneResult:
    """A pruned copy of a module and what was removed.

    Attributes:
        module: The pruned (and, if a callback was given, fine-tuned) copy.
        ratio: The fraction of units asked to be removed per layer.
        kept: Per pruned layer (by its name in the module): units kept of units before.
        parameters_before: Parameter count before pruning.
        parameters_after: Parameter count after.
        path: The exported ONNX file, when ``path`` was given.
    """

    module: Any
    ratio: float
    kept: dict[str, tuple[int, int]]
    parameters_before: int
    parameters_after: int
    path: pathlib.Path | None


@dataclass(frozen=True)
class PruneSpec:
    """Pruning candidates for ``compress``: a PyTorch module, its example inputs and ratios."""

    module: Any
    example_inputs: Any
    ratios: Sequence[float] = (0.25, 0.5)
    fine_tune: Callable[[Any], None] | None = None
    input_names: Sequence[str] | None = None
    output_names: Sequence[str] | None = None
    export_kwargs: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        ratios = self.ratios
        if isinstance(ratios, str | bytes) or not ratios:
            raise invalid_parameter("ratios", "a non-empty list of numbers in [0, 1)", ratios)
        for r in ratios:
            if isinstance(r, bool) or not isinstance(r, int | float) or not 0 <= r < 1:
                raise invalid_parameter("ratios", "a non-empty list of numbers in [0, 1)", ratios)


def _layers(module: Any, torch: Any) -> list[tuple[str, Any]]:
    nn = torch.nn
    return [
        (name, m)
        for name, m in module.named_modules()
        if isinstance(m, nn.Linear | nn.Conv2d | nn.BatchNorm1d | nn.BatchNorm2d)
    ]


def _keep_index(weight: Any, ratio: float, torch: Any) -> Any:
    norms = weight.detach().reshape(weight.shape[0], -1).norm(dim=1)
    keep = max(1, round(weight.shape[0] * (1 - ratio)))
    return torch.sort(torch.topk(norms, keep).indices).values


def _slice_out(layer: Any, index: Any, torch: Any) -> None:
    nn = torch.nn
    with torch.no_grad():
        if isinstance(layer, nn.BatchNorm1d | nn.BatchNorm2d):
            layer.weight = nn.Parameter(layer.weight[index].clone())
            layer.bias = nn.Parameter(layer.bias[index].clone())
            layer.running_mean = layer.running_mean[index].clone()
            layer.running_var = layer.running_var[index].clone()
            layer.num_features = len(index)
            return
        layer.weight = nn.Parameter(layer.weight[index].clone())
        if layer.bias is not None:
            layer.bias = nn.Parameter(layer.bias[index].clone())
        if isinstance(layer, nn.Linear):
            layer.out_features = len(index)
        else:
            layer.out_channels = len(index)


def _slice_in(layer: Any, index: Any, per_unit: int, torch: Any) -> None:
    nn = torch.nn
    if per_unit > 1:
        # A Flatten between a Conv2d and this Linear: each channel owns per_unit features.
        index = (index[:, None] * per_unit + torch.arange(per_unit)[None, :]).reshape(-1)
    with torch.no_grad():
        layer.weight = nn.Parameter(layer.weight[:, index].clone())
    if isinstance(layer, nn.Linear):
        layer.in_features = len(index)
    else:
        layer.in_channels = len(index)


def prune_torch(
    module: Any,
    ratio: float,
    example_inputs: Any,
    *,
    path: str | os.PathLike[str] | None = None,
    fine_tune: Callable[[Any], None] | None = None,
    input_names: Sequence[str] | None = None,
    output_names: Sequence[str] | None = None,
    **export_kwargs: Any,
) -> PruneResult:
    """Remove ``ratio`` of the neurons/channels of every Linear/Conv2d but the last, by L2 norm.

    Args:
        module: The PyTorch module (left untouched; a copy is pruned).
        ratio: Fraction of units to remove per layer, in [0, 1); at least one unit stays.
        example_inputs: A tensor or tuple of tensors the module takes (to check the result runs,
            and for the export).
        path: Export the pruned module to this ONNX file (dynamic batch axis).
        fine_tune: Called with the pruned module before export, to recover accuracy.
        input_names: Names of the exported inputs.
        output_names: Names of the exported outputs.
        **export_kwargs: More options for ``export_torch`` (e.g. ``dynamic_axes``).

    Raises:
        InvalidInput: ``ratio`` is outside [0, 1), or the module is not a chain this can prune.
    """
    torch = import_torch()
    if isinstance(ratio, bool) or not isinstance(ratio, int | float) or not 0 <= ratio < 1:
        raise invalid_parameter("ratio", "a number in [0, 1)", ratio, where=_WHERE)
    if not isinstance(module, torch.nn.Module):
        raise invalid_parameter("module", "a torch.nn.Module", type(module).__name__, where=_WHERE)
    inputs = example_inputs if isinstance(example_inputs, tuple | list) else (example_inputs,)
    pruned = copy.deepcopy(module).eval()
    before = sum(p.numel() for p in pruned.parameters())
    layers = _layers(pruned, torch)
    compute = [
        i
        for i, (_, m) in enumerate(layers)
        if not isinstance(m, torch.nn.modules.batchnorm._BatchNorm)
    ]
    kept: dict[str, tuple[int, int]] = {}
    for pos, i in enumerate(compute[:-1]):
        name, layer = layers[i]
        if isinstance(layer, torch.nn.Conv2d) and layer.groups != 1:
            continue
        nxt_name, nxt = layers[compute[pos + 1]]
        if isinstance(nxt, torch.nn.Conv2d) and nxt.groups != 1:
            continue
        units = layer.weight.shape[0]
        width = nxt.weight.shape[1]
        if width % units:
            raise InvalidInput(
                f"{nxt_name} takes {width} inputs, not a multiple of the {units} outputs of "
                f"{name}; prune_torch handles chains of Linear/Conv2d layers only.",
                field="module",
            )
        index = _keep_index(layer.weight, ratio, torch)
        kept[name] = (len(index), units)
        _slice_out(layer, index, torch)
        for j in range(i + 1, compute[pos + 1]):
            _slice_out(layers[j][1], index, torch)  # BatchNorm between the two
        _slice_in(nxt, index, width // units, torch)
    try:
        with torch.no_grad():
            pruned(*inputs)
    except RuntimeError as exc:
        raise InvalidInput(
            f"The pruned module no longer runs ({str(exc).splitlines()[0]}); prune_torch "
            "handles chains of Linear/Conv2d layers only.",
            field="module",
        ) from exc
    if fine_tune is not None:
        fine_tune(pruned)
        pruned.eval()
    out = None
    if path is not None:
        from modelscale.model.torch_export import export_torch

        out = export_torch(
            pruned,
            tuple(inputs),
            path,
            input_names=input_names,
            output_names=output_names,
            **export_kwargs,
        )
    return PruneResult(
        module=pruned,
        ratio=float(ratio),
        kept=kept,
        parameters_before=before,
        parameters_after=sum(p.numel() for p in pruned.parameters()),
        path=out,
    )
