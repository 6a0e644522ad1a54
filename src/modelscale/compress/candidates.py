"""Build candidate models: graph pre-processing, INT8 (dynamic and static QDQ), FP16, BF16 weights.

Builders are thin over ``onnxruntime.quantization``. Every quantized candidate starts from the
pre-processed base (shape inference plus ORT's portable graph optimisations), as ORT recommends,
and takes ``exclude``: node names kept in float, which the accuracy-guarded fallback grows.
"""

from __future__ import annotations

import contextlib
import io
import logging
import pathlib
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from modelscale.compress.graphfix import unique_weight_names
from modelscale.errors import RuntimeFailure
from modelscale.model.rows import count_rows, take_rows

__all__ = [
    "DYNAMIC_OP_TYPES",
    "NOTHING_TO_QUANTIZE",
    "CandidateSpec",
    "Method",
    "build_candidate",
    "default_specs",
    "name_nodes_file",
    "prepare_base",
    "quantization_ops",
    "quantized_nodes",
    "quiet",
]

Method = Literal["original", "optimized", "dynamic", "static", "fp16", "bf16", "pruned"]

DYNAMIC_OP_TYPES = ("MatMul", "Gemm", "Gather")
"""MatMul/Gemm weights, plus embedding tables (Gather on a weight), which are half of a small
transformer's bytes. Conv is left out: ConvInteger is often slower than float on CPU."""

_MINMAX_BATCH = 16
"""Rows per MinMax calibration run (a model with a fixed batch size takes that many)."""

NOTHING_TO_QUANTIZE = "no-op: nothing to quantize"
"""Why a quantization candidate that quantized no node is skipped (a model of convolutions only
gives int8-dynamic nothing to do): it would be the unquantized model under an INT8 name."""

_QUANT_OPS = frozenset(
    {
        "QuantizeLinear",
        "DequantizeLinear",
        "DynamicQuantizeLinear",
        "MatMulInteger",
        "ConvInteger",
        "DynamicQuantizeMatMul",
        "MatMulIntegerToFloat",
        "QGemm",
        "QAttention",
        "DynamicQuantizeLSTM",
        "QEmbedLayerNormalization",
    }
)


@dataclass(frozen=True)
class CandidateSpec:
    """One way to compress a model."""

    name: str
    method: Method
    options: Mapping[str, Any] = field(default_factory=dict)
    description: str = ""


def default_specs(*, reduce_range: bool) -> list[CandidateSpec]:
    """The candidates tried by default, cheapest first."""
    rr = {"reduce_range": reduce_range}
    return [
        CandidateSpec(
            "optimized", "optimized", {}, "shape inference + ORT basic graph optimisation"
        ),
        CandidateSpec(
            "int8-dynamic",
            "dynamic",
            {"per_channel": False, **rr},
            "dynamic INT8 MatMul/Gemm/embeddings, per-tensor weights",
        ),
        CandidateSpec(
            "int8-dynamic-pc",
            "dynamic",
            {"per_channel": True, **rr},
            "dynamic INT8 MatMul/Gemm/embeddings, per-channel weights",
        ),
        CandidateSpec(
            "int8-static-minmax",
            "static",
            {"calibrate": "minmax", "per_channel": True, **rr},
            "static INT8 QDQ S8S8, MinMax calibration, per-channel weights",
        ),
        CandidateSpec(
            "int8-static-pct",
            "static",
            {"calibrate": "percentile", "per_channel": True, **rr},
            "static INT8 QDQ S8S8, 99.99th percentile calibration, per-channel weights",
        ),
        CandidateSpec("fp16", "fp16", {}, "FP16 weights and compute, FP32 inputs and outputs"),
        CandidateSpec(
            "bf16-weights",
            "bf16",
            {},
            "BF16-stored weights cast to FP32 at load (ORT's CPU provider has no BF16 MatMul)",
        ),
    ]


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Silence the quantization tools' prints, log lines and warnings for one build.

    They print progress to stdout (which carries ``--json`` output) and log advice at WARNING.
    """
    before = logging.root.manager.disable
    logging.disable(logging.WARNING)
    ort.set_default_logger_severity(3)
    try:
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        ort.set_default_logger_severity(2)
        logging.disable(before)


def _name_nodes(model: onnx.ModelProto) -> None:
    """Give every node a unique name: the fallback refers to nodes by name."""
    seen: set[str] = set()
    for i, node in enumerate(model.graph.node):
        if not node.name or node.name in seen:
            node.name = f"{node.op_type}_{i}"
        seen.add(node.name)


def name_nodes_file(source: pathlib.Path, dest: pathlib.Path) -> None:
    """Copy a model with every node named, for quantizing when pre-processing fails."""
    model = onnx.load(str(source))
    _name_nodes(model)
    onnx.save(model, str(dest))


def prepare_base(source: pathlib.Path, dest: pathlib.Path) -> str | None:
    """Pre-process ``source`` into ``dest`` for quantization; returns a note when it fell back.

    Symbolic shape inference is tried first (best for transformers); exported graphs it cannot
    follow are retried with ONNX shape inference only.
    """
    from onnxruntime.quantization import quant_pre_process

    note = None
    source, dest = source.resolve(), dest.resolve()
    # When symbolic shape inference gives up, onnxruntime dumps the model and its weights into
    # the current folder; run it from the (temporary) destination folder instead.
    with quiet(), contextlib.chdir(dest.parent):
        try:
            quant_pre_process(str(source), str(dest))
        except Exception:
            note = "symbolic shape inference failed; used ONNX shape inference only"
            quant_pre_process(str(source), str(dest), skip_symbolic_shape=True)
    model = onnx.load(str(dest))
    _name_nodes(model)
    onnx.save(model, str(dest))
    return note


class _Reader:
    """CalibrationDataReader over in-memory rows, ``chunk`` rows per batch along each batch axis.

    Every batch has exactly ``chunk`` rows: the last one is filled up with rows from the start.
    Histogram calibration stacks each tensor's values across batches, which fails on a smaller
    last batch ("setting an array element with a sequence"), and a model with a fixed batch size
    takes no other.
    """

    def __init__(
        self,
        inputs: Mapping[str, np.ndarray],
        chunk: int,
        axes: Mapping[str, int | None] | None = None,
    ) -> None:
        rows = count_rows(inputs, axes)
        self._batches = iter(
            [take_rows(inputs, np.arange(i, i + chunk) % rows, axes) for i in range(0, rows, chunk)]
        )

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._batches, None)

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        return self._batches

    def set_range(self, start_index: int, end_index: int) -> None:  # part of ORT's reader API
        pass


def _dynamic(
    base: pathlib.Path, dest: pathlib.Path, opts: Mapping[str, Any], exclude: Sequence[str]
) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(
        str(base),
        str(dest),
        op_types_to_quantize=list(DYNAMIC_OP_TYPES),
        per_channel=bool(opts.get("per_channel")),
        reduce_range=bool(opts.get("reduce_range")),
        weight_type=QuantType.QInt8,
        nodes_to_exclude=list(exclude),
    )


def _static(
    base: pathlib.Path,
    dest: pathlib.Path,
    opts: Mapping[str, Any],
    exclude: Sequence[str],
    calibration: Mapping[str, np.ndarray],
    cache: pathlib.Path,
    axes: Mapping[str, int | None] | None,
    fixed_batch: int | None,
) -> None:
    method = opts.get("calibrate", "minmax")
    extra: dict[str, Any] = {"ActivationSymmetric": True}
    if method == "percentile":
        extra["CalibPercentile"] = 99.99
    # Percentile calibration stacks each activation over the batches, which fails when its shape
    # changes from one batch to the next (data-dependent shapes, a short last batch): one batch
    # of every row avoids both, and costs no more memory, since ORT keeps every batch's
    # activations until the end anyway. MinMax reduces each batch as it goes.
    if fixed_batch is not None:
        chunk = fixed_batch
    elif method == "percentile":
        chunk = count_rows(calibration, axes)
    else:
        chunk = _MINMAX_BATCH
    try:
        _quantize_static(base, dest, opts, exclude, _Reader(calibration, chunk, axes), cache, extra)
    except ValueError as exc:
        if "inhomogeneous" not in str(exc):
            raise
        raise RuntimeFailure(
            "static calibration failed: the model's activations change shape from one "
            f"calibration batch of {chunk} rows to the next (shapes that depend on the data), "
            f"which {method} calibration cannot pool"
        ) from exc


def _quantize_static(
    base: pathlib.Path,
    dest: pathlib.Path,
    opts: Mapping[str, Any],
    exclude: Sequence[str],
    reader: _Reader,
    cache: pathlib.Path,
    extra: dict[str, Any],
) -> None:
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    method = opts.get("calibrate", "minmax")
    # The cached activation ranges make a fallback rebuild skip calibration entirely.
    quantize_static(
        str(base),
        str(dest),
        reader,
        quant_format=QuantFormat.QDQ,
        per_channel=bool(opts.get("per_channel")),
        reduce_range=bool(opts.get("reduce_range")),
        activation_type=QuantType.QInt8,
        weight_type=QuantType.QInt8,
        nodes_to_exclude=list(exclude),
        calibrate_method=(
            CalibrationMethod.Percentile if method == "percentile" else CalibrationMethod.MinMax
        ),
        extra_options=extra,
        calibration_cache_path=str(cache),
    )


def _fp16(base: pathlib.Path, dest: pathlib.Path) -> None:
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = onnx.load(str(base))
    unique_weight_names(model)
    model = convert_float_to_float16(model, keep_io_types=True)
    onnx.save(model, str(dest))


def _to_bf16_bits(values: np.ndarray) -> np.ndarray:
    """float32 -> bfloat16 bit patterns, rounding to nearest even (NaN stays NaN)."""
    bits = np.ascontiguousarray(values, dtype=np.float32).view(np.uint32).astype(np.uint64)
    rounded = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16
    nan = np.isnan(values)
    out = rounded.astype(np.uint16)
    out[nan] = 0x7FC0
    return out


def _bf16_weights(base: pathlib.Path, dest: pathlib.Path, *, min_elements: int = 1024) -> None:
    model = onnx.load(str(base))
    graph = model.graph
    casts = []
    kept = []
    for init in graph.initializer:
        if init.data_type != TensorProto.FLOAT or int(np.prod(init.dims)) < min_elements:
            kept.append(init)
            continue
        bits = _to_bf16_bits(numpy_helper.to_array(init))
        stored = TensorProto(name=f"{init.name}__bf16", data_type=TensorProto.BFLOAT16)
        stored.dims.extend(init.dims)
        stored.raw_data = bits.tobytes()
        kept.append(stored)
        casts.append(
            helper.make_node(
                "Cast", [stored.name], [init.name], to=TensorProto.FLOAT, name=f"{init.name}__cast"
            )
        )
    del graph.initializer[:]
    graph.initializer.extend(kept)
    nodes = casts + list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes)
    onnx.save(model, str(dest))


def build_candidate(
    spec: CandidateSpec,
    *,
    base: pathlib.Path,
    dest: pathlib.Path,
    calibration: Mapping[str, np.ndarray] | None,
    cache_dir: pathlib.Path,
    exclude: Sequence[str] = (),
    batch_axes: Mapping[str, int | None] | None = None,
    fixed_batch: int | None = None,
) -> str | None:
    """Write the candidate ``spec`` built from ``base`` to ``dest``.

    Returns why the candidate should be skipped (``NOTHING_TO_QUANTIZE``), or None. Calibration
    rows are taken along ``batch_axes``, ``fixed_batch`` rows per run for a model that takes
    only that many.
    """
    with quiet():
        if spec.method == "dynamic":
            _dynamic(base, dest, spec.options, exclude)
        elif spec.method == "static":
            if calibration is None:
                raise ValueError("static quantization needs calibration data")
            cache = cache_dir / f"{spec.options.get('calibrate', 'minmax')}.calib.json"
            _static(base, dest, spec.options, exclude, calibration, cache, batch_axes, fixed_batch)
        elif spec.method == "fp16":
            _fp16(base, dest)
        elif spec.method == "bf16":
            _bf16_weights(base, dest)
        else:
            raise ValueError(f"no builder for method {spec.method!r}")
    if spec.method in ("dynamic", "static"):
        before = quantization_ops(onnx.load(str(base), load_external_data=False))
        if quantization_ops(onnx.load(str(dest), load_external_data=False)) <= before:
            return NOTHING_TO_QUANTIZE
    return None


def quantization_ops(model: onnx.ModelProto) -> int:
    """How many nodes of ``model``'s main graph quantize, dequantize or compute on integers."""
    return sum(
        1 for n in model.graph.node if n.op_type in _QUANT_OPS or n.op_type.startswith("QLinear")
    )


def quantized_nodes(base: onnx.ModelProto, quantized: onnx.ModelProto) -> list[str]:
    """Names of base nodes that the quantized model no longer runs as they were (in graph order).

    A node that kept its name, op type and inputs was left in float; any other was quantized
    (dynamic mode replaces it, QDQ mode feeds it dequantized inputs).
    """
    after = {n.name: (n.op_type, tuple(n.input)) for n in quantized.graph.node}
    return [
        node.name
        for node in base.graph.node
        if after.get(node.name) != (node.op_type, tuple(node.input))
    ]
