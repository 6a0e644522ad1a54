from __future__ import annotations

import dataclasses
import pathlib
from typing import Any, ClassVar

from modelscale.result import Result
from modelscale.store import open_store
from tests.cli.helpers import invoke


def test_empty_knowledge_base() -> None:
    result = invoke("runs")
    assert result.exit_code == 0
    assert "No runs yet" in result.stdout


def test_list_and_show(mlp_path: pathlib.Path) -> None:
    assert (
        invoke(
            "profile", str(mlp_path), "--batch", "1", "--threads", "1", "--max-time", "0.3"
        ).exit_code
        == 0
    )
    listed = invoke("runs")
    assert listed.exit_code == 0
    assert "profile" in listed.stdout and "mlp" in listed.stdout
    shown = invoke("runs", "show", "1")
    assert shown.exit_code == 0
    for section in ("params", "results", "machine"):
        assert section in shown.stdout


def test_bad_input() -> None:
    missing = invoke("runs", "show", "42")
    assert missing.exit_code == 2
    assert "No run with id 42" in missing.stderr
    kind = invoke("runs", "--kind", "bogus")
    assert kind.exit_code == 2
    assert "Unknown run kind 'bogus'; expected one of profile" in kind.stderr
    not_int = invoke("runs", "show", "abc")
    assert not_int.exit_code == 2  # usage error from the parser
    assert invoke("runs", "--limit", "0").exit_code == 2


@dataclasses.dataclass(frozen=True)
class Produced(Result):
    """A run that produced a new model version, as a compress search does."""

    kind: ClassVar[str] = "compress"
    chosen_sha256: str
    params: dict[str, Any] = dataclasses.field(default_factory=dict)


def test_show_prints_the_lineage_of_a_produced_model() -> None:
    store = open_store()
    store.register_model("a" * 64, name="digits")
    store.register_model("b" * 64, name="digits.int8", parent_sha256="a" * 64)
    run_id = store.record(Produced(chosen_sha256="b" * 64), model_version="a" * 64)
    shown = invoke("runs", "show", str(run_id))
    assert shown.exit_code == 0
    assert "produced  digits.int8 (bbbbbbbbbbbb) <- digits (aaaaaaaaaaaa)" in shown.stdout
