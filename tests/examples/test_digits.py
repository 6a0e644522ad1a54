"""The digits example, built for real once: ONNX Runtime accuracy, clean splits, honest meta."""

from __future__ import annotations

import pathlib
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from modelscale.config import get_settings
from modelscale.examples import ExampleBuild, build_example
from modelscale.examples import digits as digits_builder

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

pytestmark = pytest.mark.torch


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    return tmp_path_factory.mktemp("digits-cache")


@pytest.fixture(autouse=True)
def _use_cache(cache_dir: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("MODELSCALE_CACHE_DIR", str(cache_dir))
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.fixture(scope="module")
def build(cache_dir: pathlib.Path) -> Iterator[ExampleBuild]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MODELSCALE_CACHE_DIR", str(cache_dir))
        get_settings.cache_clear()
        try:
            yield build_example("digits")
        finally:
            get_settings.cache_clear()


def _load(path: pathlib.Path | None) -> dict[str, np.ndarray]:
    assert path is not None
    with np.load(path) as data:
        return {key: data[key] for key in data.files}


def test_the_first_build_is_fresh_and_complete(build: ExampleBuild) -> None:
    assert not build.cached
    folder = build.model_path.parent
    assert sorted(p.name for p in folder.iterdir()) == [
        "digits.onnx",
        "digits_calib.npz",
        "digits_eval.npz",
        "meta.json",
    ]
    assert build.meta["name"] == "digits"
    assert build.meta["versions"]["torch"] == torch.__version__


def test_model_signature_has_a_dynamic_batch(build: ExampleBuild) -> None:
    model = onnx.load(str(build.model_path))
    onnx.checker.check_model(model, full_check=True)

    def dims(value: Any) -> list[Any]:
        return [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]

    assert [(i.name, dims(i)) for i in model.graph.input] == [("pixels", ["batch", 1, 8, 8])]
    assert [(o.name, dims(o)) for o in model.graph.output] == [("logits", ["batch", 10])]
    assert build.meta["inputs"][0]["name"] == "pixels"
    assert build.meta["outputs"][0]["name"] == "logits"


def test_accuracy_measured_with_onnx_runtime_on_the_held_out_split(build: ExampleBuild) -> None:
    held_out = _load(build.eval_path)
    assert held_out["pixels"].dtype == np.float32
    assert held_out["pixels"].shape[1:] == (1, 8, 8)
    assert held_out["labels"].dtype == np.int64
    assert set(held_out["labels"].tolist()) == set(range(10))
    session = ort.InferenceSession(str(build.model_path), providers=["CPUExecutionProvider"])
    (logits,) = session.run(["logits"], {"pixels": held_out["pixels"]})
    accuracy = float((logits.argmax(axis=1) == held_out["labels"]).mean())
    assert accuracy >= 0.95
    assert accuracy == pytest.approx(build.meta["test_accuracy"])
    # Any batch size works, and gives the same answers.
    (few,) = session.run(["logits"], {"pixels": held_out["pixels"][:3]})
    np.testing.assert_allclose(few, logits[:3], rtol=1e-5, atol=1e-5)


def test_eval_and_calibration_sets_are_disjoint(build: ExampleBuild) -> None:
    held_out = _load(build.eval_path)
    calib = _load(build.calib_path)
    n_eval, n_calib = len(held_out["labels"]), len(calib["pixels"])
    assert n_eval == build.meta["eval_count"] == pytest.approx(0.25 * 1797, abs=1)
    assert n_calib == build.meta["calib_count"] == digits_builder.CALIB_SIZE
    assert not set(held_out["index"].tolist()) & set(calib["index"].tolist())
    eval_rows = {row.tobytes() for row in held_out["pixels"]}
    assert not any(row.tobytes() in eval_rows for row in calib["pixels"])


def test_meta_param_count_is_torchs(build: ExampleBuild) -> None:
    module = digits_builder.make_model()
    assert build.meta["torch_param_count"] == sum(p.numel() for p in module.parameters())
    # The graph's float initializers are those weights (its int64 ones are shapes for Reshape).
    model = onnx.load(str(build.model_path))
    floats = [t for t in model.graph.initializer if t.data_type == onnx.TensorProto.FLOAT]
    assert sum(int(np.prod(t.dims)) for t in floats) == build.meta["torch_param_count"]


def test_second_build_is_cached_without_training(
    build: ExampleBuild, monkeypatch: pytest.MonkeyPatch
) -> None:
    def must_not_run(*args: object, **kwargs: object) -> None:
        raise AssertionError("the cached build should have been reused")

    monkeypatch.setattr(digits_builder, "build", must_not_run)
    again = build_example("digits")
    assert again.cached
    assert again.model_path == build.model_path
    assert again.meta == build.meta


def test_torch_rng_of_the_caller_is_untouched(tmp_path: pathlib.Path) -> None:
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    build_example("digits", out_dir=tmp_path)  # cached: must not touch the RNG either way
    assert torch.equal(torch.rand(3), expected)


def test_the_scaling_study_writes_real_training_runs(tmp_path: pathlib.Path) -> None:
    from modelscale.laws import load_runs

    csv = digits_builder.scaling_runs(
        tmp_path / "runs.csv", widths=(0.25, 1.0), fractions=(0.125, 0.5)
    )
    lines = csv.read_text(encoding="utf-8").splitlines()
    assert lines[0] == "params,tokens,loss,width,data_share" and len(lines) == 5
    table = load_runs(csv)
    params = sorted(set(table.role("N").tolist()))
    assert params[-1] == sum(p.numel() for p in digits_builder.make_model(1.0).parameters())
    assert params[0] < params[-1] / 8
    tokens = sorted(set(table.role("D").tolist()))
    assert tokens[1] == pytest.approx(4 * tokens[0], rel=0.01)  # nested shares, same epochs
    loss = dict(
        zip(zip(table.role("N"), table.role("D"), strict=True), table.role("L"), strict=True)
    )
    # more parameters and more data each lower the held-out loss of this small network
    assert loss[(params[-1], tokens[1])] < loss[(params[0], tokens[1])]
    assert loss[(params[-1], tokens[1])] < loss[(params[-1], tokens[0])]
    assert not (tmp_path / ".runs.csv.tmp").exists()
