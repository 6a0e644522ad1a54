"""Small classifiers for experiment tests, with the dims converters write ('?', odd names): a
control, a treatment that agrees with it, one that answers wrong classes, one that is slow."""

from __future__ import annotations

import pathlib

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

D_IN, CLASSES = 6, 3
W = np.random.default_rng(3).standard_normal((D_IN, CLASSES)).astype(np.float32)


def save_classifier(
    path: pathlib.Path, *, wrong: bool = False, slow: int = 0, nudge: float = 0.0
) -> pathlib.Path:
    """x['?', 6] -> MatMul -> Softmax -> probs['batch_size', 3].

    ``wrong`` rolls the class columns (every answer a different class); ``slow`` adds that many
    512x512 matrix products whose result is multiplied by zero (same answers, more time);
    ``nudge`` adds a small constant to the weights (a different file, nearly the same answers).
    """
    w = np.roll(W, 1, axis=1) if wrong else W + np.float32(nudge)
    nodes = [helper.make_node("MatMul", ["x", "w"], ["z0"])]
    inits = [numpy_helper.from_array(w.astype(np.float32), "w")]
    last = "z0"
    if slow:
        rng = np.random.default_rng(5)
        inits.append(
            numpy_helper.from_array(rng.standard_normal((D_IN, 512)).astype(np.float32), "up")
        )
        nodes.append(helper.make_node("MatMul", ["x", "up"], ["h0"]))
        for i in range(slow):
            inits.append(
                numpy_helper.from_array(
                    (rng.standard_normal((512, 512)) / 32).astype(np.float32), f"k{i}"
                )
            )
            nodes.append(helper.make_node("MatMul", [f"h{i}", f"k{i}"], [f"h{i + 1}"]))
        inits.append(numpy_helper.from_array(np.zeros((512, CLASSES), np.float32), "zero"))
        nodes += [
            helper.make_node("MatMul", [f"h{slow}", "zero"], ["extra"]),
            helper.make_node("Add", ["z0", "extra"], ["z1"]),
        ]
        last = "z1"
    nodes.append(helper.make_node("Softmax", [last], ["probs"], axis=-1))
    graph = helper.make_graph(
        nodes,
        "clf",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["?", D_IN])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["batch_size", CLASSES])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def predict(x: np.ndarray) -> np.ndarray:
    """The control's classes."""
    return (x @ W).argmax(axis=1)
