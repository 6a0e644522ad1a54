"""The root Typer app and the one place that maps modelscale errors to a clean exit."""

from __future__ import annotations

import os
from typing import Any

import typer
from rich.markup import escape
from typer.core import TyperGroup

from modelscale.cli.flags import command_flags, with_flags
from modelscale.cli.help import PlainParams
from modelscale.cli.render import err_console
from modelscale.errors import ModelscaleError

__all__ = ["EXIT_BAD_INPUT", "CommandGroup", "app"]

EXIT_BAD_INPUT = 2

_COMMAND = "modelscale.command"


class CommandGroup(PlainParams, TyperGroup):
    """A command group that notes which command runs (``ctx.meta`` is shared by every level)
    and types its options' values in words in its help (``plain_params``)."""

    def resolve_command(self, ctx: typer.Context, args: list[str]) -> Any:  # type: ignore[override]
        name, command, rest = super().resolve_command(ctx, args)
        ctx.meta[_COMMAND] = command
        return name, command, rest


class _ErrorMappingGroup(CommandGroup):
    """Turns a ModelscaleError anywhere below into one line on stderr and exit code 2.

    Sub-commands run inside the root group's ``invoke``, so wrapping it here covers every command.
    Parameters the message quotes are shown as the running command's flags (``cli/flags.py``).
    A traceback is shown only with ``--debug`` (or MODELSCALE_DEBUG=1).
    """

    # typer.Context is the vendored click Context under its public name; mypy sees two classes.
    def invoke(self, ctx: typer.Context) -> Any:  # type: ignore[override]
        try:
            return super().invoke(ctx)
        except ModelscaleError as exc:
            if ctx.params.get("debug") or os.environ.get("MODELSCALE_DEBUG") == "1":
                raise
            message = with_flags(str(exc), command_flags(ctx.meta.get(_COMMAND)))
            err_console.print(
                f"[bold red]Error:[/] {escape(message)}", highlight=False, soft_wrap=True
            )
            raise typer.Exit(EXIT_BAD_INPUT) from None


app = typer.Typer(
    cls=_ErrorMappingGroup,
    name="modelscale",
    help="Take a trained model from one machine to production scale, measuring every step.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _print_version(value: bool) -> None:
    if value:
        from modelscale import __version__

        typer.echo(f"modelscale {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks for errors."),
    version: bool = typer.Option(
        False,
        "--version",
        callback=_print_version,
        is_eager=True,
        help="Print modelscale's version and exit.",
    ),
) -> None:
    """modelscale: profile, compress, plan, serve and load-test models; keep every finding."""
