"""Tiny classifiers for assess tests: one, the same with its scores flipped, the same made slow."""

from __future__ import annotations

import dataclasses
import pathlib
from typing import ClassVar

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from modelscale.result import Result

__all__ = ["D_IN", "N_CLASSES", "LoadRun", "save_classifier", "save_eval_set", "save_files"]

D_IN = 16
N_CLASSES = 4
_W = np.random.default_rng(7).standard_normal((D_IN, N_CLASSES)).astype(np.float32)


def save_classifier(
    path: pathlib.Path, *, flipped: bool = False, waste: int = 0, hidden: int = 384
) -> pathlib.Path:
    """x[batch, 16] -> MatMul -> scores[batch, 4].

    ``flipped`` negates the weights, so the top class becomes the bottom one. ``waste`` adds that
    many hidden x hidden MatMuls on a branch whose result is scaled by 0 and added to the scores:
    the same predictions, many times the work (ONNX Runtime does not fold a product with a
    runtime tensor away).
    """
    w = -_W if flipped else _W
    inits = [numpy_helper.from_array(w, "w")]
    nodes = [helper.make_node("MatMul", ["x", "w"], ["scores" if not waste else "s0"])]
    if waste:
        rng = np.random.default_rng(3)
        inits.append(
            numpy_helper.from_array(
                (rng.standard_normal((D_IN, hidden)) * 0.1).astype(np.float32), "a0"
            )
        )
        nodes.append(helper.make_node("MatMul", ["x", "a0"], ["h0"]))
        for i in range(waste):
            m = (rng.standard_normal((hidden, hidden)) / np.sqrt(hidden)).astype(np.float32)
            inits.append(numpy_helper.from_array(m, f"m{i}"))
            nodes.append(helper.make_node("MatMul", [f"h{i}", f"m{i}"], [f"h{i + 1}"]))
        out = (rng.standard_normal((hidden, N_CLASSES)) * 0.1).astype(np.float32)
        inits += [
            numpy_helper.from_array(out, "out"),
            numpy_helper.from_array(np.array(0.0, dtype=np.float32), "zero"),
        ]
        nodes += [
            helper.make_node("MatMul", [f"h{waste}", "out"], ["wasted"]),
            helper.make_node("Mul", ["wasted", "zero"], ["nothing"]),
            helper.make_node("Add", ["s0", "nothing"], ["scores"]),
        ]
    graph = helper.make_graph(
        nodes,
        "classifier",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", D_IN])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["batch", N_CLASSES])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def save_eval_set(path: pathlib.Path, *, rows: int = 200, seed: int = 0) -> pathlib.Path:
    """Rows the unflipped classifier gets all right: labels are its own top classes."""
    x = np.random.default_rng(seed).standard_normal((rows, D_IN)).astype(np.float32)
    np.savez(path, x=x, labels=(x @ _W).argmax(axis=1).astype(np.int64))
    return path


def save_files(folder: pathlib.Path) -> dict[str, pathlib.Path]:
    """The model, its flipped and slow versions, and two different eval sets, in ``folder``."""
    return {
        "model": save_classifier(folder / "clf.onnx"),
        "flipped": save_classifier(folder / "clf_flipped.onnx", flipped=True),
        "slow": save_classifier(folder / "clf_slow.onnx", waste=6),
        "eval": save_eval_set(folder / "eval.npz"),
        "other_eval": save_eval_set(folder / "other_eval.npz", seed=1),
    }


@dataclasses.dataclass(frozen=True)
class LoadRun(Result):
    """A run of another kind ('load') to offer where an assess run is expected."""

    kind: ClassVar[str] = "load"
    summary: str = "a load test"
