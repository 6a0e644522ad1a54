from __future__ import annotations

import pathlib
import shutil

import onnx
import pytest

from modelscale.errors import ModelLoadError
from modelscale.model import ModelArtifact
from tests.onnx_models import save_onnx_ml_classifier


def test_load_reads_signature_and_hash(mlp_path: pathlib.Path) -> None:
    art = ModelArtifact.load(mlp_path)
    assert art.name == "mlp"
    assert len(art.sha256) == 64
    assert art.signature.input_names == ("x",)
    x = art.signature.input("x")
    assert x.dtype == "float32"
    assert x.shape == ("batch", 16)
    assert art.signature.outputs[0].shape == ("batch", 4)
    assert art.opsets == {"ai.onnx": 17}
    assert art.to_dict()["signature"]["inputs"][0]["shape"] == ["batch", 16]


def test_same_bytes_same_version_and_changed_bytes_new_version(
    mlp_path: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    copy = tmp_path / "copy.onnx"
    shutil.copy(mlp_path, copy)
    assert ModelArtifact.load(copy).sha256 == ModelArtifact.load(mlp_path).sha256
    model = onnx.load(str(copy))
    model.doc_string = "changed"
    onnx.save(model, str(copy))
    assert ModelArtifact.load(copy).sha256 != ModelArtifact.load(mlp_path).sha256


def test_missing_file(tmp_path: pathlib.Path) -> None:
    with pytest.raises(ModelLoadError, match=r"does not exist\. Expected a path to an \.onnx file"):
        ModelArtifact.load(tmp_path / "nope.onnx")


def test_directory(tmp_path: pathlib.Path) -> None:
    with pytest.raises(ModelLoadError, match="is a directory"):
        ModelArtifact.load(tmp_path)


def test_empty_file(tmp_path: pathlib.Path) -> None:
    p = tmp_path / "empty.onnx"
    p.write_bytes(b"")
    with pytest.raises(ModelLoadError, match=r"not a valid ONNX model \(the file is empty"):
        ModelArtifact.load(p)


@pytest.mark.parametrize(
    "content",
    [b"hello, this is a text file\n", b'{"json": true}', bytes(range(256)) * 4],
    ids=["text", "json", "binary"],
)
def test_not_onnx(tmp_path: pathlib.Path, content: bytes) -> None:
    p = tmp_path / "bad.onnx"
    p.write_bytes(content)
    with pytest.raises(ModelLoadError, match="is not a valid ONNX model"):
        ModelArtifact.load(p)


@pytest.mark.parametrize("fraction", [0.3, 0.6, 0.9, 0.99])
def test_truncated(mlp_path: pathlib.Path, tmp_path: pathlib.Path, fraction: float) -> None:
    data = mlp_path.read_bytes()
    p = tmp_path / "truncated.onnx"
    p.write_bytes(data[: int(len(data) * fraction)])
    with pytest.raises(ModelLoadError, match=r"not a valid ONNX model|ONNX Runtime cannot load"):
        # a cut that happens to land between fields parses; ORT then rejects the graph
        art = ModelArtifact.load(p)
        from modelscale.runtime import Engine

        Engine(art)


def test_onnx_ml_signature(tmp_path: pathlib.Path) -> None:
    """ONNX-ML ops with map/sequence outputs (as scikit-learn converters emit) load and describe."""
    p = save_onnx_ml_classifier(tmp_path / "linear.onnx")
    art = ModelArtifact.load(p)
    out = {o.name: o for o in art.signature.outputs}
    assert out["label"].dtype == "int64"
    assert out["probabilities"].onnx_type == "seq(map(int64,tensor(float)))"
    assert not out["probabilities"].is_tensor
