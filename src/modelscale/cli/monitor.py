"""`modelscale monitor`: what a monitoring system needs to watch a deployment's SLOs."""

from __future__ import annotations

import contextlib
import os
import pathlib
import tempfile

import typer
from rich.markup import escape

from modelscale.cli.app import CommandGroup, app
from modelscale.cli.render import console, print_json
from modelscale.config import load_deployment
from modelscale.errors import InvalidInput
from modelscale.observe.rules import prometheus_rules

__all__ = ["monitor_app", "rules_command"]

monitor_app = typer.Typer(
    cls=CommandGroup,
    help="Watch served models: drift, data quality and accuracy against a baseline; Prometheus "
    "rules that alert on SLO error budget burn.",
    no_args_is_help=True,
)
app.add_typer(monitor_app, name="monitor")


@monitor_app.command("rules")
def rules_command(
    config: pathlib.Path = typer.Option(
        ..., "--config", "-c", help="Deployment spec (deploy.yaml) with the models' SLOs."
    ),
    out: pathlib.Path = typer.Option(
        pathlib.Path("rules.yaml"), "--out", "-o", help="The Prometheus rule file to write."
    ),
    tests: pathlib.Path | None = typer.Option(
        None,
        "--tests",
        help="The promtool test file to write (default: beside --out, named *.test.yaml).",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Write the SLOs as Prometheus recording and alerting rules, and promtool tests of them.

    One alert per model, SLI and burn-rate window pair of the SRE workbook; the tests replay an
    outage (pages on time), errors at the budget rate (no page) and a trickle (no alert).
    """
    tests = tests if tests is not None else out.with_name(_test_name(out))
    if tests.resolve() == out.resolve():
        raise InvalidInput(
            f"--tests and --out are the same file ({out}). Give the tests another path.",
            field="tests",
        )
    spec = load_deployment(config)
    rules_name = os.path.relpath(out.resolve(), tests.resolve().parent)
    result = prometheus_rules(spec, rules_file_name=rules_name, source=str(config))
    _write_all({out: result.to_yaml(), tests: result.tests_yaml()})
    check = f"promtool check rules {out} && promtool test rules {tests}"
    if as_json:
        print_json(
            {
                "rules_file": str(out),
                "tests_file": str(tests),
                "models": list(result.models),
                "alerts": result.alerts,
                "records": result.records,
                "warnings": list(result.warnings),
                "check": check,
            }
        )
        return
    console.print(
        f"{len(result.models)} model(s) with SLOs ({escape(', '.join(result.models))}): "
        f"{result.alerts} alerts, {result.records} recording rules.",
        soft_wrap=True,
    )
    console.print(f"rules  {escape(str(out))}", soft_wrap=True)
    console.print(f"tests  {escape(str(tests))}", soft_wrap=True)
    for warning in result.warnings:
        console.print(f"[yellow]! {escape(warning)}[/]", soft_wrap=True)
    console.print(f"Check them: {escape(check)}", soft_wrap=True)


def _test_name(out: pathlib.Path) -> str:
    """rules.yaml -> rules.test.yaml (rules.yml -> rules.test.yml)."""
    if out.suffix in (".yaml", ".yml"):
        return f"{out.stem}.test{out.suffix}"
    return f"{out.name}.test.yaml"


def _write_all(files: dict[pathlib.Path, str]) -> None:
    """Write every file or none: each goes to a temporary name beside it, then into place."""
    for path in files:
        if path.is_dir():
            raise InvalidInput(f"Cannot write {path}: it is a folder. Give a file path.")
        if not path.parent.exists():
            raise InvalidInput(
                f"Cannot write {path}: the folder {path.parent} does not exist. Create it first."
            )
        if not path.parent.is_dir():
            raise InvalidInput(f"Cannot write {path}: {path.parent} is not a folder.")
    temps: list[str] = []
    try:
        for path, text in files.items():
            temps.append(_write_temp(path, text))
        for path, temp in zip(files, temps, strict=True):
            try:
                os.replace(temp, path)
            except OSError as exc:
                raise _unwritable(path, exc) from None
    finally:
        for temp in temps:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp)


def _write_temp(path: pathlib.Path, text: str) -> str:
    """``text`` in a new file beside ``path``, with the mode ``path`` has or would get."""
    try:
        fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise _unwritable(path, exc) from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(temp, path.stat().st_mode & 0o777 if path.exists() else 0o666 & ~_umask())
    except OSError as exc:
        os.unlink(temp)
        raise _unwritable(path, exc) from None
    return temp


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _unwritable(path: pathlib.Path, exc: OSError) -> InvalidInput:
    return InvalidInput(
        f"Cannot write {path}: {exc.strerror or exc}. Choose a folder you can write to."
    )
