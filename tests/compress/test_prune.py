from __future__ import annotations

import pathlib

import numpy as np
import pytest

from modelscale.compress import CompressOptions, PruneSpec, compress, prune_torch
from modelscale.errors import InvalidInput
from modelscale.examples import ExampleBuild
from tests.compress.conftest import fast, run_plain

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.torch


def _trained_digits(digits: ExampleBuild):
    """The digits CNN with the example's architecture, trained briefly on the train split."""
    from modelscale.examples.digits import _split, make_model

    pixels, labels, train_idx, _ = _split()
    torch.manual_seed(0)
    model = make_model()
    _fit(model, pixels[train_idx], labels[train_idx], epochs=8)
    return model, pixels, labels, train_idx


def _fit(model, pixels: np.ndarray, labels: np.ndarray, *, epochs: int) -> None:
    x, y = torch.from_numpy(pixels), torch.from_numpy(labels)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(0)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=gen)
        for start in range(0, len(x), 64):
            idx = order[start : start + 64]
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
    model.eval()


def test_pruned_digits_cnn_is_smaller_runs_and_recovers_with_a_fine_tune(
    digits: ExampleBuild, tmp_path: pathlib.Path
) -> None:
    model, pixels, labels, train_idx = _trained_digits(digits)
    example = torch.from_numpy(pixels[:2])
    tuned = []

    def fine_tune(module) -> None:
        _fit(module, pixels[train_idx], labels[train_idx], epochs=3)
        tuned.append(module)

    result = prune_torch(
        model,
        0.5,
        example,
        path=tmp_path / "pruned.onnx",
        fine_tune=fine_tune,
        input_names=["pixels"],
        output_names=["logits"],
    )
    assert result.kept == {"0": (8, 16), "2": (16, 32), "6": (32, 64)}
    assert result.parameters_after < result.parameters_before / 3
    assert tuned and tuned[0] is result.module
    assert result.path.stat().st_size < digits.model_path.stat().st_size / 2
    data = np.load(digits.eval_path)
    logits = run_plain(result.path, {"pixels": data["pixels"]}, "logits")
    assert (logits.argmax(1) == data["labels"]).mean() > 0.9
    # The original module is untouched.
    assert model[0].out_channels == 16


def test_pruning_keeps_the_largest_units() -> None:
    layer1, layer2 = torch.nn.Linear(3, 4), torch.nn.Linear(4, 2)
    with torch.no_grad():
        layer1.weight.copy_(torch.tensor([[1.0, 0, 0], [5, 0, 0], [0.1, 0, 0], [3, 0, 0]]))
        layer2.weight.copy_(torch.arange(8.0).reshape(2, 4))
    result = prune_torch(torch.nn.Sequential(layer1, layer2), 0.5, torch.ones(1, 3))
    pruned1, pruned2 = result.module[0], result.module[1]
    assert pruned1.weight[:, 0].tolist() == [5.0, 3.0]
    assert pruned2.weight.tolist() == [[1.0, 3.0], [5.0, 7.0]]


def test_bad_ratio_is_refused() -> None:
    with pytest.raises(
        InvalidInput, match=r"'ratio' parameter of prune_torch must be a number in \[0, 1\)"
    ):
        prune_torch(torch.nn.Linear(2, 2), 1.0, torch.ones(1, 2))


def test_pruning_candidates_join_a_search(digits: ExampleBuild) -> None:
    model, pixels, _, _ = _trained_digits(digits)
    spec = PruneSpec(
        module=model,
        example_inputs=(torch.from_numpy(pixels[:2]),),
        ratios=(0.25,),
        input_names=["pixels"],
        output_names=["logits"],
    )
    result = compress(
        digits.model_path,
        digits.eval_path,
        options=CompressOptions(candidates=["optimized"], prune=spec, max_drop=1.0, **fast()),
    )
    pruned = result.trial("pruned-25%")
    assert pruned.ok and pruned.method == "pruned" and pruned.params["ratio"] == 0.25
    assert pruned.size_bytes < result.original.size_bytes
