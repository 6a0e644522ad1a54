from __future__ import annotations

import json
import pathlib

import numpy as np
import pytest

from modelscale.errors import InvalidInput, RuntimeFailure
from modelscale.model import ModelArtifact
from modelscale.profile import (
    MeasureOptions,
    ProfileOptions,
    ProfileResult,
    plot_profile,
    profile_model,
)
from modelscale.store import Store
from tests.exported_models import save_minus_one_batch, save_stateful

FAST = MeasureOptions(warmup_runs=2, warmup_s=0.0, min_runs=10, min_time_s=0.05, max_time_s=0.5)


@pytest.fixture(scope="module")
def mlp_profile(mlp_path: pathlib.Path) -> ProfileResult:
    return profile_model(
        mlp_path, options=ProfileOptions(batches=[1, 4], threads=[1, 2], measure=FAST)
    )


def test_sweep_grid_and_consistency(mlp_profile: ProfileResult) -> None:
    r = mlp_profile
    assert {(p.batch, p.threads) for p in r.points} == {(1, 1), (4, 1), (1, 2), (4, 2)}
    for p in r.points:
        assert p.items_per_s == pytest.approx(p.batch / (p.mean_ms / 1e3), rel=1e-6)
        assert p.gflops_per_s == pytest.approx(r.flops[0].flops * p.items_per_s / 1e9, rel=1e-6)
        assert p.ci_met or p.capped
    assert r.static.parameters == 676
    assert set(r.session_rss_bytes) == {"1", "2"}
    assert r.best() in r.points
    assert r.point(batch=4, threads=2).batch == 4
    assert "mlp: 676 params" in r.summary
    json.dumps(r.to_dict())  # storable as is


def test_stored_and_read_back(mlp_profile: ProfileResult, tmp_path: pathlib.Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'kb.db'}")
    run_id = store.record(mlp_profile, model_version=mlp_profile.model["sha256"])
    run = store.run(run_id)
    assert run.params["batches"] == [1, 4]
    assert len(run.results["points"]) == 4
    assert run.results["static"]["parameters"] == 676


def test_dim_sweep(seq_path: pathlib.Path) -> None:
    r = profile_model(
        seq_path,
        options=ProfileOptions(
            batches=[2],
            threads=[1],
            dims={"seq": [4, 16]},
            int_ranges={"ids": (0, 49)},
            measure=FAST,
            isolate=False,
        ),
    )
    assert sorted(p.dims["seq"] for p in r.points) == [4, 16]
    assert [f.input_shapes["ids"] for f in r.flops] == [[2, 4], [2, 16]]
    assert r.flops[1].macs == 4 * r.flops[0].macs
    # The summary quotes the best point, dim values included, and sizes in binary units.
    best = r.best()
    assert (
        f"best {best.items_per_s:,.0f} items/s at batch 2 x 1 threads, seq={best.dims['seq']} "
        f"(p50 {best.p50_ms:.3f} ms, p99 {best.p99_ms:.3f} ms)"
    ) in r.summary
    assert " KiB; " in r.summary and " MB" not in r.summary


def test_real_inputs(seq_path: pathlib.Path, tmp_path: pathlib.Path) -> None:
    npz = tmp_path / "in.npz"
    np.savez(npz, ids=np.full((3, 6), 7, np.int64), mask=np.ones((3, 6), np.int64))
    r = profile_model(
        seq_path,
        options=ProfileOptions(
            batches=[1, 5], threads=[1], inputs=npz, measure=FAST, isolate=False
        ),
    )
    assert {tuple(p.input_shapes["ids"]) for p in r.points} == {(1, 6), (5, 6)}


def test_fixed_batch_defaults_to_it(tmp_path: pathlib.Path) -> None:
    from tests.onnx_models import save_conv

    r = profile_model(
        save_conv(tmp_path / "c.onnx", batch=1),
        options=ProfileOptions(threads=[1], measure=FAST, isolate=False),
    )
    assert [p.batch for p in r.points] == [1]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"batches": [0]},
            "'batches' parameter of profile must be a non-empty list of integers >= 1. Got [0]",
        ),
        ({"batches": []}, "'batches' parameter of profile must be a non-empty list"),
        (
            {"threads": [1, -2]},
            "'threads' parameter of profile must be a non-empty list of integers >= 1",
        ),
        ({"dims": {"nope": [3]}}, "Unknown dim 'nope' in 'dims'"),
        (
            {"measure": MeasureOptions(max_time_s=0)},
            "'max_time_s' parameter of profile must be a number of seconds > 0",
        ),
    ],
)
def test_bad_parameters(mlp_path: pathlib.Path, kwargs: dict, message: str) -> None:
    with pytest.raises(InvalidInput) as info:
        profile_model(mlp_path, options=ProfileOptions(**kwargs))
    assert message in str(info.value)


def test_plot(mlp_profile: ProfileResult, tmp_path: pathlib.Path) -> None:
    out = plot_profile(mlp_profile, tmp_path / "p.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(InvalidInput, match=r"must name a \.png file"):
        plot_profile(mlp_profile, tmp_path / "p.jpg")


def test_accepts_a_loaded_artifact(mlp_path: pathlib.Path) -> None:
    art = ModelArtifact.load(mlp_path, name="custom")
    r = profile_model(
        art, options=ProfileOptions(batches=[1], threads=[1], measure=FAST, isolate=False)
    )
    assert r.model["name"] == "custom"
    assert r.points[0].peak_rss_bytes is None  # only isolated workers measure RSS


def test_a_minus_one_batch_is_swept(tmp_path: pathlib.Path) -> None:
    """x[-1, 3, ?, ?]: the shape's 1 on axis 0 is no conflict; each batch sets it."""
    r = profile_model(
        save_minus_one_batch(tmp_path / "m.onnx"),
        options=ProfileOptions(
            batches=[1, 3],
            threads=[1],
            shapes={"x": [1, 3, 12, 20]},
            measure=FAST,
            isolate=False,
        ),
    )
    assert {tuple(p.input_shapes["x"]) for p in r.points} == {(1, 3, 12, 20), (3, 3, 12, 20)}


def test_state_batch_axis_and_a_scalar_input(tmp_path: pathlib.Path) -> None:
    path = save_stateful(tmp_path / "s.onnx")
    options = ProfileOptions(
        batches=[1, 4],
        threads=[1],
        batch_axes={"state": 1},
        int_ranges={"sr": (0, 1)},
        measure=FAST,
    )
    r = profile_model(path, options=options)  # in a worker process, as by default
    shapes = {p.batch: p.input_shapes for p in r.points}
    assert shapes[4] == {"x": [4, 16], "state": [2, 4, 8], "sr": []}
    assert r.params["batch_axes"] == {"x": 0, "state": 1, "sr": None}
    assert r.model["signature"]["inputs"][1]["batch_axis"] == 1
    json.dumps(r.to_dict())


def test_a_model_that_rejects_a_synthetic_integer_says_to_give_a_range(
    tmp_path: pathlib.Path,
) -> None:
    path = save_stateful(tmp_path / "s.onnx")
    with pytest.raises(RuntimeFailure, match=r"give their range with 'int_ranges' sr=LO,HI\.\)$"):
        profile_model(
            path,
            options=ProfileOptions(batches=[1], threads=[1], batch_axes={"state": 1}, measure=FAST),
        )
