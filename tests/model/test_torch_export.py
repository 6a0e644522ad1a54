"""export_torch: ONNX Runtime agrees with PyTorch at several sizes; failed exports leave nothing."""

from __future__ import annotations

import pathlib
import sys

import numpy as np
import pytest

from modelscale.errors import InvalidInput, MissingDependency
from modelscale.model.torch_export import BATCH_DIM, export_torch

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

pytestmark = pytest.mark.torch


class TinyCNN(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 4, kernel_size=3, padding=1)
        self.norm = torch.nn.BatchNorm2d(4)
        self.head = torch.nn.Linear(4 * 8 * 8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.norm(self.conv(x))).flatten(1))


class TinyEncoder(torch.nn.Module):
    """Embedding, one masked self-attention layer and mean pooling: a transformer in miniature."""

    def __init__(self, vocab: int = 50, dim: int = 16, heads: int = 2) -> None:
        super().__init__()
        self.heads = heads
        self.embed = torch.nn.Embedding(vocab, dim)
        self.position = torch.nn.Embedding(32, dim)
        self.qkv = torch.nn.Linear(dim, 3 * dim)
        self.out = torch.nn.Linear(dim, dim)
        self.norm = torch.nn.LayerNorm(dim)

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        batch, seq = ids.shape
        positions = torch.arange(seq, device=ids.device).unsqueeze(0)
        h = self.embed(ids) + self.position(positions)
        q, k, v = self.qkv(h).chunk(3, dim=-1)

        def split(t: torch.Tensor) -> torch.Tensor:
            return t.reshape(batch, seq, self.heads, -1).transpose(1, 2)

        keep = mask[:, None, None, :].bool()
        attended = torch.nn.functional.scaled_dot_product_attention(
            split(q), split(k), split(v), attn_mask=keep
        )
        h = self.norm(h + self.out(attended.transpose(1, 2).reshape(batch, seq, -1)))
        weights = mask.unsqueeze(-1).to(h.dtype)
        pooled = (h * weights).sum(1) / weights.sum(1).clamp(min=1.0)
        return h, pooled


def _dims(value_info: onnx.ValueInfoProto) -> list[str | int]:
    return [d.dim_param or d.dim_value for d in value_info.type.tensor_type.shape.dim]


def _session(path: pathlib.Path) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


@pytest.fixture(scope="module")
def cnn() -> TinyCNN:
    torch.manual_seed(0)
    module = TinyCNN()
    # Non-trivial running statistics, so the exported BatchNorm is checked for real.
    module.train()
    with torch.no_grad():
        module(torch.randn(16, 1, 8, 8) * 3 + 1)
    return module.eval()


@pytest.fixture(scope="module")
def cnn_path(cnn: TinyCNN, tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    out = tmp_path_factory.mktemp("cnn") / "nested" / "cnn.onnx"
    return export_torch(
        cnn, torch.randn(2, 1, 8, 8), out, input_names=["pixels"], output_names=["logits"]
    )


def test_cnn_round_trip_at_two_batch_sizes(cnn: TinyCNN, cnn_path: pathlib.Path) -> None:
    model = onnx.load(str(cnn_path))
    onnx.checker.check_model(model, full_check=True)
    assert [_dims(i) for i in model.graph.input] == [[BATCH_DIM, 1, 8, 8]]
    assert [_dims(o) for o in model.graph.output] == [[BATCH_DIM, 10]]
    session = _session(cnn_path)
    for batch in (1, 7):
        x = torch.randn(batch, 1, 8, 8)
        (got,) = session.run(["logits"], {"pixels": x.numpy()})
        with torch.no_grad():
            want = cnn(x).numpy()
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_weights_are_inside_the_one_file(cnn_path: pathlib.Path) -> None:
    assert [p.name for p in cnn_path.parent.iterdir()] == ["cnn.onnx"]
    model = onnx.load(str(cnn_path), load_external_data=False)
    assert model.graph.initializer
    assert not any(t.data_location == onnx.TensorProto.EXTERNAL for t in model.graph.initializer)


def test_transformer_like_module_with_dynamic_batch_and_sequence(tmp_path: pathlib.Path) -> None:
    torch.manual_seed(1)
    module = TinyEncoder().eval()
    ids = torch.randint(1, 50, (2, 6))
    mask = torch.ones(2, 6, dtype=torch.int64)
    path = export_torch(
        module,
        (ids, mask),
        tmp_path / "encoder.onnx",
        input_names=["ids", "mask"],
        output_names=["hidden", "pooled"],
        dynamic_axes={"ids": {1: "seq"}, "mask": {1: "seq"}},
    )
    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)
    assert [_dims(i) for i in model.graph.input] == [[BATCH_DIM, "seq"], [BATCH_DIM, "seq"]]
    assert [_dims(o) for o in model.graph.output] == [[BATCH_DIM, "seq", 16], [BATCH_DIM, 16]]
    session = _session(path)
    for batch, seq in ((1, 3), (5, 11)):
        ids = torch.randint(1, 50, (batch, seq))
        mask = torch.ones(batch, seq, dtype=torch.int64)
        mask[0, seq // 2 :] = 0  # padding in one row, so the mask path is exercised
        hidden, pooled = session.run(None, {"ids": ids.numpy(), "mask": mask.numpy()})
        with torch.no_grad():
            want_hidden, want_pooled = module(ids, mask)
        np.testing.assert_allclose(hidden, want_hidden.numpy(), rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(pooled, want_pooled.numpy(), rtol=1e-4, atol=1e-5)


def test_an_example_batch_of_one_still_exports_a_dynamic_batch(
    cnn: TinyCNN, tmp_path: pathlib.Path
) -> None:
    path = export_torch(cnn, torch.randn(1, 1, 8, 8), tmp_path / "m.onnx", input_names=["x"])
    assert _dims(onnx.load(str(path)).graph.input[0]) == [BATCH_DIM, 1, 8, 8]
    x = torch.randn(4, 1, 8, 8)
    (got,) = _session(path).run(None, {"x": x.numpy()})
    with torch.no_grad():
        np.testing.assert_allclose(got, cnn(x).numpy(), rtol=1e-4, atol=1e-5)


def test_static_batch_when_asked(cnn: TinyCNN, tmp_path: pathlib.Path) -> None:
    path = export_torch(cnn, torch.randn(3, 1, 8, 8), tmp_path / "m.onnx", dynamic_batch=False)
    model = onnx.load(str(path))
    assert _dims(model.graph.input[0]) == [3, 1, 8, 8]


def test_training_mode_is_restored(tmp_path: pathlib.Path) -> None:
    module = TinyCNN().train()
    export_torch(module, torch.randn(2, 1, 8, 8), tmp_path / "m.onnx")
    assert module.training


class Broken(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("this module cannot run")


def test_failed_export_leaves_no_file_and_keeps_the_old_one(tmp_path: pathlib.Path) -> None:
    dest = tmp_path / "model.onnx"
    with pytest.raises(InvalidInput, match=r"could not export Broken.*this module cannot run"):
        export_torch(Broken(), torch.randn(2, 3), dest)
    assert list(tmp_path.iterdir()) == []

    dest.write_bytes(b"previous model")
    with pytest.raises(InvalidInput):
        export_torch(Broken(), torch.randn(2, 3), dest)
    assert dest.read_bytes() == b"previous model"
    assert [p.name for p in tmp_path.iterdir()] == ["model.onnx"]


class FixedLength(torch.nn.Module):
    """Its code depends on the sequence length, so that axis cannot stay dynamic."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(x.shape[0], 5, -1) if x.shape[1] == 5 else x


def test_axis_fixed_by_the_code_is_reported_not_silently_baked_in(tmp_path: pathlib.Path) -> None:
    with pytest.raises(InvalidInput, match=r"Axis 1 of input 'x' .*'seq'.* fixes it to 5"):
        export_torch(
            FixedLength(),
            torch.randn(2, 5),
            tmp_path / "m.onnx",
            input_names=["x"],
            dynamic_axes={"x": {1: "seq"}},
        )
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"input_names": ["a", "b"]},
            "'input_names' parameter of export_torch must be a list of 1",
        ),
        ({"input_names": ["x"], "dynamic_axes": {"y": {1: "s"}}}, "keys are input names \\(x\\)"),
        ({"input_names": ["x"], "dynamic_axes": {"x": {4: "s"}}}, "integers in \\[0, 4\\)"),
        ({"input_names": ["x"], "dynamic_axes": {"x": {1: "no name"}}}, "identifiers"),
        ({"dynamic_axes": {"x": {1: "seq"}}}, "input_names must be given"),
        ({"opset": 3}, "'opset' parameter"),
    ],
)
def test_bad_options_are_rejected_before_exporting(
    cnn: TinyCNN, tmp_path: pathlib.Path, kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(InvalidInput, match=message):
        export_torch(cnn, torch.randn(2, 1, 8, 8), tmp_path / "m.onnx", **kwargs)  # type: ignore[arg-type]
    assert list(tmp_path.iterdir()) == []


def test_bad_module_and_inputs(cnn: TinyCNN, tmp_path: pathlib.Path) -> None:
    with pytest.raises(InvalidInput, match="'module' parameter"):
        export_torch(object(), torch.randn(2, 1, 8, 8), tmp_path / "m.onnx")  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match="'example_inputs' parameter"):
        export_torch(cnn, [np.zeros((2, 1, 8, 8))], tmp_path / "m.onnx")  # type: ignore[list-item]


def test_unwritable_destination_names_the_path(cnn: TinyCNN, tmp_path: pathlib.Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(InvalidInput, match=r"Cannot write the model to .*a-file"):
        export_torch(cnn, torch.randn(2, 1, 8, 8), blocker / "m.onnx")


def test_missing_torch_names_the_extra(
    monkeypatch: pytest.MonkeyPatch, tmp_path: pathlib.Path
) -> None:
    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(MissingDependency, match=r'pip install "modelscale\[torch\]"'):
        export_torch(object(), (), tmp_path / "m.onnx")  # type: ignore[arg-type]


def test_model_artifact_from_torch(cnn: TinyCNN, tmp_path: pathlib.Path) -> None:
    """The public path: a module in, a loaded artifact with a dynamic batch axis out."""
    from modelscale.model import ModelArtifact
    from modelscale.profile import static_profile

    art = ModelArtifact.from_torch(
        cnn, (torch.zeros(2, 1, 8, 8),), tmp_path / "cnn.onnx", name="cnn", input_names=["x"]
    )
    assert art.name == "cnn"
    assert art.signature.input("x").shape == (BATCH_DIM, 1, 8, 8)
    # The exporter folds the eval-mode BatchNorm into the conv before it: its 8 affine parameters
    # (and its running statistics, which are buffers) become part of the conv's weight and bias.
    expected = sum(p.numel() for p in cnn.parameters())
    assert (
        static_profile(art).parameters == expected - cnn.norm.weight.numel() - cnn.norm.bias.numel()
    )
