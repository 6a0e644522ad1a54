from __future__ import annotations

import pathlib

import numpy as np
import onnx
import pytest

from modelscale.errors import InvalidInput, ModelLoadError, RuntimeFailure
from modelscale.model import ModelArtifact
from modelscale.runtime import Engine, EngineOptions
from tests.exported_models import save_minus_one_batch, save_stateful
from tests.onnx_models import save_onnx_ml_classifier, save_unloadable


def test_runs_and_matches_numpy(mlp_path: pathlib.Path) -> None:
    engine = Engine(ModelArtifact.load(mlp_path), EngineOptions(intra_op_threads=2))
    proto = onnx.load(str(mlp_path))
    w = {t.name: onnx.numpy_helper.to_array(t) for t in proto.graph.initializer}
    x = np.random.default_rng(0).standard_normal((3, 16)).astype(np.float32)
    (y,) = engine.run({"x": x})
    expected = np.maximum(x @ w["w1"] + w["b1"], 0) @ w["w2"].T + w["b2"]
    np.testing.assert_allclose(y, expected, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(engine.bind({"x": x})()[0], y)


def test_session_options_are_explicit() -> None:
    so = EngineOptions(
        intra_op_threads=3, graph_optimization="basic", allow_spinning=False
    ).session_options()
    assert so.intra_op_num_threads == 3
    assert so.inter_op_num_threads == 1
    assert so.get_session_config_entry("session.intra_op.allow_spinning") == "0"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"intra_op_threads": 0},
            "'intra_op_threads' parameter of Engine must be an integer >= 1. Got 0",
        ),
        (
            {"inter_op_threads": -1},
            "'inter_op_threads' parameter of Engine must be an integer >= 1",
        ),
        (
            {"graph_optimization": "max"},
            "'graph_optimization' parameter must be one of disable, basic",
        ),
        ({"providers": ()}, "'providers' parameter must be a non-empty list"),
    ],
)
def test_bad_options(kwargs: dict, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        EngineOptions(**kwargs)


def test_unavailable_provider(mlp_path: pathlib.Path) -> None:
    with pytest.raises(
        InvalidInput, match="Execution provider NopeExecutionProvider is not available"
    ):
        Engine(mlp_path, EngineOptions(providers=("NopeExecutionProvider",)))


def test_model_ort_cannot_load(tmp_path: pathlib.Path) -> None:
    p = save_unloadable(tmp_path / "bad.onnx")
    art = ModelArtifact.load(p)  # parses: it is ONNX
    with pytest.raises(ModelLoadError, match=r"ONNX Runtime cannot load .*bad.onnx: .*NoSuchOp"):
        Engine(art)


def test_bad_feeds(mlp_path: pathlib.Path) -> None:
    engine = Engine(mlp_path)
    with pytest.raises(InvalidInput, match="Missing input"):
        engine.run({})
    with pytest.raises(RuntimeFailure, match="ONNX Runtime failed to run the model"):
        engine.run({"x": np.zeros((2, 15), np.float32)})


def test_onnx_ml_model_runs(tmp_path: pathlib.Path) -> None:
    engine = Engine(save_onnx_ml_classifier(tmp_path / "m.onnx"))
    label, probs = engine.run({"x": np.ones((2, 4), np.float32)})
    assert label.shape == (2,)
    assert isinstance(probs, list) and set(probs[0]) == {0, 1, 2}


def test_a_minus_one_batch_runs_at_any_batch(tmp_path: pathlib.Path) -> None:
    engine = Engine(save_minus_one_batch(tmp_path / "m.onnx"))
    (y,) = engine.run({"x": np.ones((3, 3, 5, 7), np.float32)})
    assert y.shape == (3, 4)


def test_an_error_naming_an_integer_input_suggests_a_range(tmp_path: pathlib.Path) -> None:
    engine = Engine(save_stateful(tmp_path / "s.onnx"))
    feeds = {
        "x": np.ones((2, 16), np.float32),
        "state": np.zeros((2, 2, 8), np.float32),
        "sr": np.array(57, np.int64),  # the table it indexes has two entries
    }
    with pytest.raises(RuntimeFailure) as err:
        engine.run(feeds)
    message = str(err.value)
    assert "\n" not in message
    assert message.endswith(
        "(The error names integer input 'sr': if the model accepts only some values of it, give "
        "their range with 'int_ranges' sr=LO,HI.)"
    )
    (y, _) = engine.run({**feeds, "sr": np.array(1, np.int64)})
    assert y.shape == (2, 4)
