from __future__ import annotations

import pathlib

import numpy as np

from modelscale.compress.evaluate import measure_rounds, output_batch_axis, predict
from modelscale.model import ModelArtifact
from modelscale.runtime import Engine
from tests.compress.conftest import FAST, run_plain
from tests.exported_models import save_minus_one_batch, save_stateful
from tests.onnx_models import save_conv


def test_predict_pads_the_last_run_of_a_fixed_batch_model(tmp_path: pathlib.Path) -> None:
    path = save_conv(tmp_path / "fixed.onnx", batch=4)
    art = ModelArtifact.load(path)
    x = np.random.default_rng(0).standard_normal((10, 3, 8, 8)).astype(np.float32)
    got = predict(Engine(art), {"x": x}, "y", signature=art.signature, chunk=64)
    assert got.shape == (10, 8, 8, 8)
    np.testing.assert_allclose(
        got[8:], run_plain(path, {"x": np.concatenate([x[8:10], x[8:10]])}, "y")[:2], rtol=1e-5
    )


def test_rounds_time_every_model_at_every_batch(
    mlp_path: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not a model")
    art = ModelArtifact.load(mlp_path)
    data = {"x": np.ones((3, 16), np.float32)}
    latency, errors = measure_rounds(
        {"a": mlp_path, "b": mlp_path, "bad": broken},
        signature=art.signature,
        data=data,
        batches=(1, 8),
        engine_options=Engine(art).options,
        measure=FAST,
        rounds=3,
    )
    assert set(latency) == {"a", "b"} and set(errors) == {"bad"}
    for lat in latency.values():
        assert set(lat) == {1, 8}
        assert all(point.runs >= 9 and point.items_per_s > 0 for point in lat.values())


def test_predict_on_a_minus_one_batch(tmp_path: pathlib.Path) -> None:
    """A batch axis of -1 is no fixed batch of -1 (which ran nothing, then failed to concatenate)."""
    path = save_minus_one_batch(tmp_path / "m.onnx")
    art = ModelArtifact.load(path)
    x = np.random.default_rng(0).standard_normal((5, 3, 6, 6)).astype(np.float32)
    got = predict(Engine(art), {"x": x}, "y", signature=art.signature, chunk=2)
    np.testing.assert_allclose(got, run_plain(path, {"x": x}, "y"), rtol=1e-5)


def test_predict_along_batch_axes(tmp_path: pathlib.Path) -> None:
    path = save_stateful(tmp_path / "s.onnx")
    art = ModelArtifact.load(path).with_batch_axes({"state": 1})
    rng = np.random.default_rng(0)
    feeds = {
        "x": rng.standard_normal((5, 16)).astype(np.float32),
        "state": rng.standard_normal((2, 5, 8)).astype(np.float32),
        "sr": np.array(1, np.int64),
    }
    assert output_batch_axis(art.signature, "state_out") == 1
    state = predict(Engine(art), feeds, "state_out", signature=art.signature, chunk=2)
    assert state.shape == (5, 2, 8)  # rows first, whichever axis the model puts them on
    ref = run_plain(path, feeds, "state_out")
    np.testing.assert_allclose(state, np.moveaxis(ref, 1, 0), rtol=1e-5)
    y = predict(Engine(art), feeds, "y", signature=art.signature, chunk=2)
    np.testing.assert_allclose(y, run_plain(path, feeds, "y"), rtol=1e-5)
