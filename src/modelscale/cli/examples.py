"""`modelscale examples`: list the built-in examples and build them."""

from __future__ import annotations

import pathlib
from typing import Any

import typer
from rich.table import Table

from modelscale.cli.app import CommandGroup, app
from modelscale.cli.render import (
    ProgressBar,
    console,
    fmt_bytes,
    fmt_count,
    print_json,
    print_table,
)
from modelscale.errors import MissingDependency
from modelscale.examples import EXAMPLES, build_example, cached_example, list_examples

__all__ = ["examples_app"]

examples_app = typer.Typer(
    cls=CommandGroup, help="Built-in real models and data to try modelscale on."
)
app.add_typer(examples_app, name="examples")


@examples_app.command("list")
def list_command(
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """List the built-in examples and whether they are built."""
    rows: list[dict[str, Any]] = []
    for name in list_examples():
        try:
            folder = cached_example(name)
        except MissingDependency as exc:
            # Listing must work without the torch extra; building will say what to install.
            folder, note = None, f'needs: pip install "modelscale[{exc.extra}]"'
        else:
            note = "not built"
        rows.append(
            {
                "name": name,
                "description": EXAMPLES[name],
                "built": folder is not None,
                "path": str(folder) if folder is not None else None,
                "note": None if folder is not None else note,
            }
        )
    if as_json:
        print_json(rows)
        return
    table = Table(title="Built-in examples")
    table.add_column("name")
    table.add_column("description")
    # Folded, not cut: the path is what the reader came for.
    table.add_column("built", overflow="fold")
    for row in rows:
        table.add_row(row["name"], row["description"], row["path"] or row["note"])
    print_table(table)
    console.print("Build one with: modelscale examples build NAME")


@examples_app.command("build")
def build_command(
    name: str = typer.Argument(
        ..., help="Example to build, as listed by `modelscale examples list`."
    ),
    out: pathlib.Path | None = typer.Option(
        None, "--out", "-o", help="Also copy the files into this folder."
    ),
    force: bool = typer.Option(False, "--force", help="Build again even if a cached build exists."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Build an example (or reuse its cached build) and print where its files are."""
    bar = ProgressBar(prefix=f"{name}: ")
    # Drawn from the first step on, so a cached build or a rejected option shows no bar at all.
    with bar.showing(f"Building {name}", lazy=True):
        build = build_example(name, out_dir=out, force=force, on_progress=bar)
    if as_json:
        print_json(build.to_dict())
        return
    meta = build.meta
    state = "cached" if build.cached else f"built in {meta.get('build_seconds', 0):.1f} s"
    console.rule(f"example {build.name} · {state}")
    lines = [f"model     {build.model_path}  ({fmt_bytes(meta.get('model_bytes'))})"]
    for label, path in (("eval", build.eval_path), ("calib", build.calib_path)):
        if path is not None:
            lines.append(f"{label:<9} {path}")
    if build.sample_path is not None and build.sample_path not in (
        build.eval_path,
        build.calib_path,
    ):
        lines.append(f"sample    {build.sample_path}")
    lines.append(f"params    {fmt_count(meta.get('torch_param_count'))}")
    if "test_accuracy" in meta:
        lines.append(f"accuracy  {meta['test_accuracy']:.4f} (ONNX Runtime, held-out split)")
    for line in lines:
        # Unwrapped and without markup, so every path can be copied whole.
        console.print(line, markup=False, soft_wrap=True)
