"""Static profile and FLOPs of the built-in examples against PyTorch and an analytic count."""

from __future__ import annotations

import pytest

from modelscale.examples import build_example
from modelscale.model import InputChoice, ModelArtifact, make_inputs
from modelscale.profile import count_flops, static_profile


def minilm_macs(seq: int, *, layers: int = 6, hidden: int = 384, inter: int = 1536) -> int:
    """BERT encoder at batch 1, per layer: Q, K, V and output projections (4 S H^2), attention
    scores and weighted values (2 S^2 H), feed-forward up and down (2 S H I)."""
    return layers * (4 * seq * hidden**2 + 2 * seq**2 * hidden + 2 * seq * hidden * inter)


def test_digits_parameters_equal_pytorch() -> None:
    example = build_example("digits")
    static = static_profile(ModelArtifact.load(example.model_path))
    assert static.parameters == example.meta["torch_param_count"]


@pytest.mark.torch
def test_minilm_parameters_equal_pytorch() -> None:
    example = build_example("minilm")
    static = static_profile(ModelArtifact.load(example.model_path))
    assert static.parameters == example.meta["torch_param_count"]


@pytest.mark.torch
def test_minilm_flops_at_seq_128_match_the_analytic_count() -> None:
    art = ModelArtifact.load(build_example("minilm").model_path)
    feeds = make_inputs(art.signature, batch=1, choice=InputChoice(dims={"seq": 128}))
    counted = count_flops(art, feeds)
    analytic_macs = minilm_macs(128)
    assert counted.macs == pytest.approx(analytic_macs, rel=0.10)
    # elementwise work (softmax, GELU, layer norms) adds a little on top of 2 x MACs, not 10%
    assert counted.flops == pytest.approx(2 * analytic_macs, rel=0.10)
    assert counted.flops > 2 * counted.macs
    assert not counted.uncounted_ops
