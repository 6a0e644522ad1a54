"""What every command prints: whole tables (piped or narrow), one line per run, labelled RSS, one
size unit, --version, usage lines and flag types a reader understands, an example on every help
page."""

from __future__ import annotations

import dataclasses
import io
import pathlib
import re
from collections.abc import Iterator
from typing import Any, ClassVar

import pytest
import typer
from rich.console import Console
from rich.table import Table

from modelscale import __version__
from modelscale.cli import app
from modelscale.cli.help import EXAMPLES
from modelscale.cli.render import print_table
from modelscale.result import Result
from modelscale.store import open_store
from tests.cli.helpers import invoke


def _paths(command: Any, prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    yield prefix
    for name, sub in getattr(command, "commands", {}).items():  # a group's sub-commands
        yield from _paths(sub, (*prefix, name))


ALL = list(_paths(typer.main.get_command(app)))


def test_version() -> None:
    result = invoke("--version")
    assert result.exit_code == 0 and result.stdout == f"modelscale {__version__}\n"


def test_every_command_has_an_example_table_entry() -> None:
    assert {" ".join(p) for p in ALL} == set(EXAMPLES)


@pytest.mark.parametrize("path", ALL, ids=lambda p: " ".join(p) or "modelscale")
def test_every_help_page_ends_with_examples_that_fit_80_columns(path: tuple[str, ...]) -> None:
    result = invoke(*path, "--help")
    assert result.exit_code == 0, result.output
    text = result.stdout
    assert re.search(r"^ *Examples?: *$", text, re.M), text
    for example in EXAMPLES[" ".join(path)]:
        assert f"$ {example}" in text  # whole, on one line
        assert len(f"  $ {example}") <= 78
    usage = next(line for line in text.splitlines() if "Usage:" in line)
    assert "{" not in usage and "}" not in usage, usage
    # Flag types read as words a user knows, not Python's type names.
    assert not re.search(r"<(bool|list\[str\]|str|int|float)>", text), text


def test_usage_line_names_the_argument() -> None:
    text = invoke("profile", "--help").stdout
    assert "Usage: modelscale profile [OPTIONS] MODEL" in text


@dataclasses.dataclass(frozen=True)
class Noted(Result):
    kind: ClassVar[str] = "profile"
    summary: str
    params: dict[str, Any] = dataclasses.field(default_factory=dict)


def test_runs_lists_one_line_per_run_and_a_pipe_gets_the_whole_summary() -> None:
    store = open_store()
    long = "mlp: " + ", ".join(f"point {i} measured at some length" for i in range(12))
    for _ in range(3):
        store.record(Noted(summary=long))
    result = invoke("runs")
    assert result.exit_code == 0
    rows = [line for line in result.stdout.splitlines() if re.match(r"^\W*\d+\W+profile", line)]
    assert len(rows) == 3
    assert all(long in row for row in rows)  # whole, not cut at 80 columns
    assert "…" not in result.stdout


def _wide_table() -> Table:
    table = Table()
    for col in ("name", "value", "summary"):
        table.add_column(col, no_wrap=True)
    table.add_row("a-rather-long-candidate-name", "12345.678 items/s", "x" * 60)
    return table


def test_a_piped_table_is_printed_at_its_natural_width() -> None:
    out = io.StringIO()
    print_table(_wide_table(), to=Console(file=out, width=80))
    assert "x" * 60 in out.getvalue() and "…" not in out.getvalue()
    assert max(len(line) for line in out.getvalue().splitlines()) > 80


def test_on_a_narrow_terminal_cells_wrap_instead_of_being_cut() -> None:
    out = io.StringIO()
    terminal = Console(file=out, width=50, force_terminal=True, color_system=None)
    print_table(_wide_table(), to=terminal)
    text = out.getvalue()
    assert "…" not in text and max(len(line) for line in text.splitlines()) <= 50
    assert "".join(re.findall(r"x+", text)) == "x" * 60  # every x is there, over several lines
    out.truncate(0)
    out.seek(0)
    print_table(_wide_table(), to=terminal, shorten=("summary",))
    assert "…" in out.getvalue()  # a column named in shorten stays one line, cut


def test_profile_labels_both_rss_figures_and_uses_binary_units(mlp_path: pathlib.Path) -> None:
    result = invoke("profile", str(mlp_path), "--batch", "1", "--threads", "1", "--max-time", "0.2")
    assert result.exit_code == 0, result.output
    assert "session RSS, net of the worker's own (1 thr)" in result.stdout
    assert "peak RSS MiB" in result.stdout and "whole worker process" in result.stdout
    assert " MB" not in result.stdout and "KiB" in result.stdout
