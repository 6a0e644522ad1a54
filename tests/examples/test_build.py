"""build_example's cache: reuse, force, a lost race, failures and --out, with a stand-in builder."""

from __future__ import annotations

import json
import os
import pathlib
import re
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from modelscale.config import get_settings
from modelscale.errors import InvalidInput
from modelscale.examples import (
    EXAMPLES,
    ExampleBuild,
    build_example,
    cached_example,
    example_cache_dir,
    list_examples,
)
from modelscale.examples import digits as digits_builder
from modelscale.progress import ProgressEvent, report


@pytest.fixture(autouse=True)
def cache_dir(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[pathlib.Path]:
    path = tmp_path / "cache"
    monkeypatch.setenv("MODELSCALE_CACHE_DIR", str(path))
    get_settings.cache_clear()
    yield path
    get_settings.cache_clear()


def _write_fake(dest: pathlib.Path, marker: str) -> dict[str, Any]:
    (dest / "digits.onnx").write_bytes(b"not really onnx")
    for name in ("digits_eval.npz", "digits_calib.npz"):
        np.savez(dest / name, pixels=np.zeros((1, 1, 8, 8), np.float32))
    return {"marker": marker}


@pytest.fixture(autouse=True)
def fake_digits(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Stands in for training: these tests are about the cache, not the model."""
    calls: list[str] = []

    def build(dest: pathlib.Path, *, on_progress: Any = None) -> dict[str, Any]:
        calls.append(str(dest))
        report(on_progress, "Faking", 0, 1)
        return _write_fake(dest, f"build {len(calls)}")

    monkeypatch.setattr(digits_builder, "build", build)
    monkeypatch.setattr(digits_builder, "cache_inputs", lambda: {"fake": "1"})
    return calls


def _entries(folder: pathlib.Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_examples_are_listed_with_descriptions() -> None:
    assert list_examples() == ["digits", "minilm"]
    assert all(EXAMPLES[name] for name in list_examples())


def test_second_build_reuses_the_cache(cache_dir: pathlib.Path, fake_digits: list[str]) -> None:
    assert cached_example("digits") is None
    steps: list[ProgressEvent] = []
    first = build_example("digits", on_progress=steps.append)
    assert cached_example("digits") == first.model_path.parent
    assert not first.cached
    assert steps == [ProgressEvent("Faking", 0, 1)]
    assert first.model_path == example_cache_dir("digits") / "digits.onnx"
    assert first.model_path.parent.parent == cache_dir / "examples"
    assert first.meta["marker"] == "build 1"
    assert first.meta["files"]["model"] == "digits.onnx"

    second = build_example("digits")
    assert second.cached
    assert len(fake_digits) == 1
    assert second.meta == first.meta
    assert (second.model_path, second.eval_path, second.calib_path) == (
        first.model_path,
        first.eval_path,
        first.calib_path,
    )
    assert _entries(cache_dir / "examples") == [first.model_path.parent.name]


def test_force_builds_again_and_replaces(cache_dir: pathlib.Path, fake_digits: list[str]) -> None:
    build_example("digits")
    again = build_example("digits", force=True)
    assert not again.cached
    assert again.meta["marker"] == "build 2"
    assert _entries(cache_dir / "examples") == [again.model_path.parent.name]


def test_losing_a_race_uses_the_winners_build(
    cache_dir: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    final = example_cache_dir("digits")

    def racing(dest: pathlib.Path, *, on_progress: Any = None) -> dict[str, Any]:
        # Another process finishes first, while this build is still running.
        final.mkdir(parents=True)
        _write_fake(final, "winner")
        (final / "meta.json").write_text(json.dumps({"marker": "winner"}))
        return _write_fake(dest, "loser")

    monkeypatch.setattr(digits_builder, "build", racing)
    build = build_example("digits")
    assert build.meta == {"marker": "winner"}
    assert build.model_path.parent == final
    assert _entries(cache_dir / "examples") == [final.name]


def test_an_unfinished_folder_is_not_a_build(cache_dir: pathlib.Path) -> None:
    final = example_cache_dir("digits")
    final.mkdir(parents=True)
    (final / "digits.onnx").write_bytes(b"half written")
    build = build_example("digits")
    assert not build.cached
    assert build.meta["marker"] == "build 1"
    assert build.model_path.read_bytes() == b"not really onnx"


def test_a_failed_build_leaves_nothing(
    cache_dir: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def failing(dest: pathlib.Path, *, on_progress: Any = None) -> dict[str, Any]:
        _write_fake(dest, "partial")
        raise RuntimeError("training diverged")

    monkeypatch.setattr(digits_builder, "build", failing)
    with pytest.raises(RuntimeError, match="training diverged"):
        build_example("digits")
    assert _entries(cache_dir / "examples") == []


def test_out_dir_gets_a_copy(tmp_path: pathlib.Path) -> None:
    out = tmp_path / "out" / "digits"
    build = build_example("digits", out_dir=out)
    assert build.model_path == out / "digits.onnx"
    assert build.eval_path == out / "digits_eval.npz"
    assert build.sample_path == build.eval_path
    assert _entries(out) == ["digits.onnx", "digits_calib.npz", "digits_eval.npz", "meta.json"]
    assert json.loads((out / "meta.json").read_text()) == build.meta
    assert build_example("digits", out_dir=out).cached


def test_result_is_json_ready() -> None:
    build = build_example("digits")
    assert isinstance(build, ExampleBuild)
    data = json.loads(json.dumps(build.to_dict()))
    assert data["name"] == "digits"
    assert data["model_path"] == str(build.model_path)
    assert data["cached"] is False


def test_unknown_name_lists_the_known_ones() -> None:
    with pytest.raises(
        InvalidInput, match=r"Unknown example 'mnist'. Known examples: digits, minilm"
    ):
        build_example("mnist")


def test_unwritable_out_names_the_path_and_builds_nothing(
    tmp_path: pathlib.Path, fake_digits: list[str]
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(
        InvalidInput, match=re.escape(f"Cannot write the example to {blocker / 'sub'}")
    ) as info:
        build_example("digits", out_dir=blocker / "sub")
    assert info.value.field == "out"
    assert fake_digits == []


def test_unwritable_cache_says_how_to_move_it(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("MODELSCALE_CACHE_DIR", str(blocker))
    get_settings.cache_clear()
    with pytest.raises(InvalidInput, match="MODELSCALE_CACHE_DIR"):
        build_example("digits")


def test_staging_left_by_a_killed_build_is_cleared_later(cache_dir: pathlib.Path) -> None:
    root = cache_dir / "examples"
    old = root / ".digits-0123.999.building"
    running = root / ".digits-0123.998.building"
    for folder in (old, running):
        folder.mkdir(parents=True)
    two_days_ago = time.time() - 2 * 24 * 3600
    os.utime(old, (two_days_ago, two_days_ago))
    build = build_example("digits")
    assert _entries(root) == sorted([running.name, build.model_path.parent.name])
