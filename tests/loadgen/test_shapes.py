"""Shapes of synthetic requests: dynamic axes are given (--dim, --shape) or come from the model's
latest stored profile, never guessed."""

from __future__ import annotations

import pathlib
import shutil
from typing import Any

import pytest

from modelscale.errors import InvalidInput
from modelscale.loadgen import RequestShapes, request_shapes
from modelscale.model import ModelArtifact
from modelscale.profile import MeasureOptions, ProfileOptions, profile_model
from modelscale.serve.contract import ModelContract
from modelscale.store import Store, open_store
from modelscale.workflow import Recorder
from tests.onnx_models import save_seq_model

FAST = MeasureOptions(warmup_runs=1, warmup_s=0.0, min_runs=3, min_time_s=0.005, max_time_s=0.05)


def _meta(path: pathlib.Path) -> dict[str, Any]:
    """The V2 metadata a modelscale server publishes for the model: -1 for every dynamic axis."""
    contract = ModelContract.from_artifact(
        ModelArtifact.load(path), name="seq", version="1", max_batch=8
    )
    return contract.metadata(versions=("1",))


def _profile(path: pathlib.Path, store: Store, **options: Any) -> int:
    result = profile_model(
        path,
        options=ProfileOptions(
            batches=[1],
            threads=[1],
            measure=FAST,
            isolate=False,
            int_ranges={"ids": (0, 49)},
            **options,
        ),
    )
    run_id = Recorder(store).run_id(result)
    assert run_id is not None
    return run_id


@pytest.fixture
def seq_copy(seq_path: pathlib.Path, tmp_path: pathlib.Path) -> pathlib.Path:
    return pathlib.Path(shutil.copy(seq_path, tmp_path / "seq.onnx"))


def test_a_dynamic_axis_nothing_sizes_is_refused_not_guessed(seq_path: pathlib.Path) -> None:
    meta = _meta(seq_path)
    assert [t["shape"] for t in meta["inputs"]] == [[-1, -1], [-1, -1]]
    with pytest.raises(InvalidInput) as err:
        request_shapes(meta, store=open_store())
    message = str(err.value)
    assert "'ids' axis 1, 'mask' axis 1" in message and "will not guess" in message
    # Without the model file the dims' names are unknown: only whole shapes can help.
    assert "'shapes' (e.g. ids=D0,D1,...)" in message and "profile the model first" in message


def test_the_latest_profile_s_dims_are_used_and_named(seq_path: pathlib.Path) -> None:
    store = open_store()
    _profile(seq_path, store, dims={"seq": [32]})
    run_id = _profile(seq_path, store, dims={"seq": [8, 16]})  # the latest wins: its first value
    got = request_shapes(_meta(seq_path), batch=2, store=store)
    assert got.shapes == {"ids": (2, 8), "mask": (2, 8)}
    assert got.dims == {"seq": 8} and got.source == f"profile run {run_id}"
    assert got.describe() == f"ids 2x8, mask 2x8 (seq=8, from profile run {run_id})"
    assert RequestShapes.from_dict(got.to_dict()) == got


def test_dims_are_placed_by_the_model_file_the_knowledge_base_knows(
    seq_path: pathlib.Path,
) -> None:
    store = open_store()
    _profile(seq_path, store, dims={"seq": [8]})
    got = request_shapes(_meta(seq_path), dims={"seq": 4}, store=store)
    assert got.shapes == {"ids": (1, 4), "mask": (1, 4)}
    assert got.dims == {"seq": 4} and got.source == "--dim"
    with pytest.raises(InvalidInput, match=r"names 'len', which the model does not have.*seq"):
        request_shapes(_meta(seq_path), dims={"len": 4}, store=store)


def test_dims_without_a_known_model_file_ask_for_whole_shapes(seq_path: pathlib.Path) -> None:
    with pytest.raises(
        InvalidInput, match=r"needs the names of the model's dims.*'shapes' \(e.g. ids="
    ):
        request_shapes(_meta(seq_path), dims={"seq": 4}, store=open_store())


def test_whole_shapes_need_no_knowledge_base(seq_path: pathlib.Path) -> None:
    opened = []
    got = request_shapes(
        _meta(seq_path),
        batch=3,
        shapes={"ids": (1, 5), "mask": (1, 5)},
        store=lambda: opened.append(1),  # type: ignore[arg-type,func-returns-value]
    )
    assert got.shapes == {"ids": (3, 5), "mask": (3, 5)} and got.source == "--shape"
    assert opened == []  # nothing needed the knowledge base, so it was not opened
    with pytest.raises(InvalidInput, match="gives input 'ids' 3 dims; the model expects 2"):
        request_shapes(_meta(seq_path), shapes={"ids": (1, 5, 1)})
    with pytest.raises(InvalidInput, match="names input 'x', which the model does not have"):
        request_shapes(_meta(seq_path), shapes={"x": (1, 5)})


def test_a_profile_whose_model_file_is_gone_still_gives_its_measured_shapes(
    seq_copy: pathlib.Path,
) -> None:
    store = open_store()
    run_id = _profile(seq_copy, store, dims={"seq": [12]})
    meta = _meta(seq_copy)
    seq_copy.unlink()
    got = request_shapes(meta, store=store)
    assert got.shapes == {"ids": (1, 12), "mask": (1, 12)}
    assert got.source == f"profile run {run_id}" and got.dims == {"seq": 12}


def test_unnamed_axes_take_the_profile_s_whole_shapes(tmp_path: pathlib.Path) -> None:
    path = save_seq_model(tmp_path / "unnamed.onnx", seq=None)
    store = open_store()
    run_id = _profile(path, store, shapes={"ids": [1, 6], "mask": [1, 6]})
    got = request_shapes(_meta(path), store=store)
    assert got.shapes == {"ids": (1, 6), "mask": (1, 6)} and got.dims == {}
    assert got.source == f"profile run {run_id}"


def test_fixed_axes_need_nothing(mlp_path: pathlib.Path) -> None:
    contract = ModelContract.from_artifact(
        ModelArtifact.load(mlp_path), name="mlp", version="1", max_batch=8
    )
    got = request_shapes(contract.metadata(versions=("1",)), batch=4)
    assert got.shapes == {"x": (4, 16)} and got.source == "model metadata"
    with pytest.raises(InvalidInput, match="sets input 'x' axis 1 to 8; the model fixes it at 16"):
        request_shapes(contract.metadata(versions=("1",)), shapes={"x": (1, 8)})
