"""`modelscale examples list|build`: output, JSON, and one-line errors with exit code 2."""

from __future__ import annotations

import json
import pathlib
from collections.abc import Iterator

import pytest
from typer.testing import CliRunner

import modelscale.cli.examples  # noqa: F401  (registers the commands)
from modelscale.cli.app import app
from modelscale.config import get_settings

runner = CliRunner()


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    return tmp_path_factory.mktemp("cli-cache")


@pytest.fixture(autouse=True)
def _use_cache(cache_dir: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("MODELSCALE_CACHE_DIR", str(cache_dir))
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def test_list_shows_every_example() -> None:
    result = runner.invoke(app, ["examples", "list"])
    assert result.exit_code == 0, result.output
    assert "digits" in result.stdout
    assert "minilm" in result.stdout


def test_list_json() -> None:
    result = runner.invoke(app, ["examples", "list", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert [row["name"] for row in rows] == ["digits", "minilm"]
    assert all(row["description"] for row in rows)


@pytest.mark.torch
def test_build_prints_where_the_files_are(tmp_path: pathlib.Path) -> None:
    pytest.importorskip("torch")
    out = tmp_path / "digits"
    result = runner.invoke(app, ["examples", "build", "digits", "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)  # stdout is JSON alone; progress went to stderr
    assert data["model_path"] == str(out / "digits.onnx")
    assert data["cached"] is False
    assert (out / "digits.onnx").is_file()

    again = runner.invoke(app, ["examples", "build", "digits"])
    assert again.exit_code == 0, again.output
    assert "cached" in again.stdout
    assert "digits.onnx" in again.stdout
    assert "accuracy" in again.stdout

    listed = json.loads(runner.invoke(app, ["examples", "list", "--json"]).stdout)
    assert {row["name"]: row["built"] for row in listed}["digits"] is True


def test_unknown_name_is_one_line_and_exit_2() -> None:
    result = runner.invoke(app, ["examples", "build", "mnist"])
    assert result.exit_code == 2
    assert result.stdout == ""
    assert "Unknown example 'mnist'. Known examples: digits, minilm." in result.stderr
    assert "Traceback" not in result.output


def test_unwritable_out_names_the_path(tmp_path: pathlib.Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    result = runner.invoke(app, ["examples", "build", "digits", "--out", str(blocker / "sub")])
    assert result.exit_code == 2
    assert "Cannot write the example to" in result.stderr
    assert str(blocker / "sub") in result.stderr.replace("\n", "")
