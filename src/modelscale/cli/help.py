"""Help pages that read plainly: an example on each, usage lines and value types in words.

``modelscale profile --help`` ends with the commands below its name in ``EXAMPLES``, one table so
that no page goes without. Each fits an 80-column terminal (and a pipe, which help is rendered 80
columns wide for), so none wraps. Every command is a ``HelpCommand``: its usage line names its
arguments as click always did (``Usage: modelscale profile [OPTIONS] MODEL``, not ``{model}``),
and values are typed in words (``PATH``, ``TEXT``, ``INTEGER``, ``NAME=V``; flags not at all)
rather than Python's type names (``<list[str]>``, ``<bool>``).
"""

from __future__ import annotations

import datetime as dt
import functools
import pathlib
from collections.abc import Iterable, Mapping
from typing import Any, get_args, get_origin

import typer
from rich.markup import escape
from typer.core import TyperArgument, TyperCommand

__all__ = ["EXAMPLES", "HelpCommand", "PlainParams", "add_examples", "epilog", "plain_params"]

EXAMPLES: Mapping[str, tuple[str, ...]] = {
    "": (
        "modelscale demo",
        "modelscale profile model.onnx --batch 1,8,32 --threads 1,2",
    ),
    "profile": (
        "modelscale profile model.onnx --batch 1,8,32 --threads 1,2 --plot p.png",
        "modelscale profile minilm.onnx --dim seq=32,128 --batch 1,8",
        "modelscale profile detector.onnx --shape images=1,3,640,640",
    ),
    "assess": (
        "modelscale assess model.onnx --eval eval.npz",
        "modelscale assess model.onnx --baseline 12 --no-load",
        "modelscale assess digits --emit cron --schedule '0 3 * * *'",
    ),
    "compress": (
        "modelscale compress model.onnx --eval eval.npz --max-drop 0.01",
        "modelscale compress minilm.onnx --eval sample.npz --output embedding",
    ),
    "serve": (
        "modelscale serve model.onnx --replicas 2 --max-batch 8 --max-wait-ms 2",
        "modelscale serve --config deploy/deploy.yaml",
        "modelscale serve model.onnx --keys-file keys.json",
    ),
    "logs": (
        "modelscale logs tail http://127.0.0.1:8000",
        "modelscale logs stats .modelscale/logs --by version --since 1h",
    ),
    "logs tail": (
        "modelscale logs tail http://127.0.0.1:8000 --status error",
        "modelscale logs tail .modelscale/logs --no-follow -n 50",
    ),
    "logs query": ("modelscale logs query .modelscale/logs 'SELECT count(*) FROM requests'",),
    "logs slo": (
        "modelscale logs slo --deploy deploy.yaml",
        "modelscale logs slo -f deploy.yaml --model digits --window-days 7 --json",
    ),
    "logs stats": (
        "modelscale logs stats .modelscale/logs --by version --since 1h",
        "modelscale logs stats s3://bucket/logs --by model --by hour --json",
    ),
    "monitor": (
        "modelscale monitor baseline model.onnx --data reference.npz",
        "modelscale monitor status http://127.0.0.1:8000",
        "modelscale monitor rules -c deploy.yaml --out rules.yaml",
    ),
    "monitor baseline": (
        "modelscale monitor baseline model.onnx --data reference.npz",
        "modelscale monitor baseline clf.onnx --data eval.npz --labels y",
    ),
    "monitor status": (
        "modelscale monitor status http://127.0.0.1:8000",
        "modelscale monitor status digits -n 5 --json",
    ),
    "monitor run": (
        "modelscale monitor run --logs .modelscale/logs",
        "modelscale monitor run --logs s3://bucket/logs --window 3600 --since 1d",
    ),
    "monitor rules": (
        "modelscale monitor rules -c deploy.yaml --out prometheus/rules.yaml",
        "promtool test rules prometheus/rules.test.yaml",
    ),
    "experiment": (
        "modelscale experiment status http://127.0.0.1:8000 digits",
        "modelscale experiment promote http://127.0.0.1:8000 digits",
    ),
    "experiment status": (
        "modelscale experiment status http://127.0.0.1:8000 digits",
        "modelscale experiment status http://127.0.0.1:8000 digits --json",
    ),
    "experiment stop": ("modelscale experiment stop http://127.0.0.1:8000 digits",),
    "experiment promote": ("modelscale experiment promote http://127.0.0.1:8000 digits",),
    "experiment rollback": ("modelscale experiment rollback http://127.0.0.1:8000 digits",),
    "privacy": (
        "modelscale privacy audit --deploy deploy.yaml",
        "modelscale privacy purge --deploy deploy.yaml --dry-run",
    ),
    "report": (
        "modelscale report digits",
        "modelscale report digits --out reports/digits.html --since 30d",
        "modelscale report digits --format md --out pr/report.md",
    ),
    "check": (
        "modelscale check digits",
        "modelscale check digits --policy checklist.yaml --json",
        "modelscale check digits --deploy deploy.yaml",
    ),
    "note": (
        'modelscale note add digits "int8 ships: same accuracy" --run 2 -t decision',
        "modelscale note list digits --tag decision",
    ),
    "note add": (
        'modelscale note add digits "int8 ships: same accuracy" --run 2 -t decision',
        'modelscale note add digits "p99 budget is 25 ms, agreed with the API team"',
    ),
    "note list": (
        "modelscale note list",
        "modelscale note list digits --tag decision --json",
    ),
    "privacy audit": (
        "modelscale privacy audit --deploy deploy.yaml",
        "modelscale privacy audit --log .modelscale/logs --since 7d --json",
    ),
    "privacy purge": (
        "modelscale privacy purge --deploy deploy.yaml --dry-run",
        "modelscale privacy purge --log .modelscale/logs",
    ),
    "keys": (
        "modelscale keys create web --scope infer",
        "modelscale keys list",
        "modelscale keys revoke 3e7a01bc",
    ),
    "keys create": (
        "modelscale keys create web --scope infer --scope feedback",
        "modelscale keys create ops --scope admin --keys-file /etc/ms/keys.json",
    ),
    "keys list": ("modelscale keys list --keys-file /etc/ms/keys.json --json",),
    "keys revoke": ("modelscale keys revoke 3e7a01bc --keys-file /etc/ms/keys.json",),
    "load": (
        "modelscale load http://127.0.0.1:8000 -m minilm --rate 200 -d 30",
        "modelscale load http://127.0.0.1:8000 -m minilm --dim seq=128 --rate 50",
        "modelscale load http://127.0.0.1:8000 -m digits --find-max --p99-ms 20",
    ),
    "plan": (
        "modelscale plan model.onnx --rps 500 --p99-ms 50 --phases 100,5000",
        "modelscale plan model.onnx --rps 500 --p99-ms 50 --emit k8s --out deploy/",
        "modelscale plan model.onnx --rps 200 --p99-ms 50 --validate-local",
    ),
    "laws": ("modelscale laws fit runs.csv --plot fit.html",),
    "laws fit": (
        "modelscale laws fit runs.csv --plot fit.html",
        "modelscale laws fit runs.csv --columns N=n_params,D=tokens,L=val_loss",
    ),
    "laws optimal": (
        "modelscale laws optimal --flops 1e21,1e22,1e23",
        "modelscale laws optimal --from runs.csv --target-loss 2.1",
    ),
    "runs": (
        "modelscale runs --kind profile --limit 10",
        "modelscale runs show 3",
    ),
    "runs show": ("modelscale runs show 3 --json",),
    "examples": ("modelscale examples build digits",),
    "examples list": ("modelscale examples list",),
    "examples build": ("modelscale examples build minilm --out models/",),
    "db": ("modelscale db current",),
    "db current": ("modelscale db current --url postgresql://user@host/db",),
    "db upgrade": ("modelscale db upgrade",),
    "demo": ("modelscale demo --out demo/",),
}
"""Example command lines per command path ('' is the root, 'laws fit' a sub-command)."""


def epilog(path: str) -> str:
    """The examples section of the help page of ``path`` (Rich markup, escaped)."""
    lines = EXAMPLES[path]
    title = "Example:" if len(lines) == 1 else "Examples:"
    return title + "\n" + "\n".join(escape(f"  $ {line}") for line in lines)


_FORMATS: Mapping[str, str] = {
    "--dim": "NAME=V",
    "--shape": "INPUT=D0,D1,...",
    "--int-range": "NAME=LOW,HIGH",
    "--batch-axis": "INPUT=AXIS",
}
"""Values with a syntax of their own, shown as that syntax."""

_WORDS: Mapping[Any, str] = {
    str: "TEXT",
    int: "INTEGER",
    float: "NUMBER",
    pathlib.Path: "PATH",
    dt.datetime: "DATETIME",
}


def _word(annotation: Any) -> str | None:
    """'PATH' for pathlib.Path, 'TEXT' for list[str], None for a flag."""
    if get_origin(annotation) in (list, tuple):
        args = [a for a in get_args(annotation) if a is not Ellipsis]
        annotation = args[0] if args else str
    if annotation is bool:
        return None
    return _WORDS.get(annotation, "VALUE")


def _shown(text: str | None, ctx: Any = None) -> str | None:
    return text


def plain_params(params: Iterable[Any]) -> None:
    """Show each parameter's value type in words in the help's type column (nothing for flags)."""
    for param in params:
        descriptor = getattr(param, "type_descriptor", None)
        if descriptor is None or not hasattr(param, "display_type_rich"):
            continue
        flag = next((o for o in param.opts if o.startswith("--")), "")
        text = param.metavar or _FORMATS.get(flag) or _word(descriptor.annotation)
        # An instance attribute: the help panel asks each parameter for its type text here.
        vars(param)["display_type_rich"] = functools.partial(_shown, text)


class PlainParams:
    """Mixed into a click command or group: its help types option values in words
    (``plain_params``), the --help option included."""

    params: list[Any]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        plain_params(self.params)

    def get_help_option(self, ctx: Any) -> Any:
        """The --help option, made when help is asked for, typed like the others."""
        option = super().get_help_option(ctx)  # type: ignore[misc]
        plain_params([option] if option is not None else [])
        return option


class HelpCommand(PlainParams, TyperCommand):
    """A command whose usage line names its arguments in capitals and whose help types values
    in words (``plain_params``)."""

    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        """'[OPTIONS] MODEL', '[OPTIONS] [NAME]' for an optional argument."""
        pieces = [self.options_metavar] if self.options_metavar else []
        for param in self.get_params(ctx):
            if not isinstance(param, TyperArgument):
                pieces.extend(param.get_usage_pieces(ctx))
                continue
            name = (param.metavar or param.name or "ARG").upper()
            name = name if param.required else f"[{name}]"
            pieces.append(name + ("..." if param.nargs != 1 else ""))
        return pieces


def add_examples(app: typer.Typer, path: str = "") -> None:
    """Give ``app``, its commands and its sub-groups their examples (those in ``EXAMPLES``), and
    make every command a ``HelpCommand``."""
    if path in EXAMPLES:
        app.info.epilog = epilog(path)
    for command in app.registered_commands:
        name = command.name or (command.callback.__name__ if command.callback else "")
        full = f"{path} {name}".strip()
        if full in EXAMPLES:
            command.epilog = epilog(full)
        if command.cls in (
            None,
            TyperCommand,
        ):  # typer's default: a command with no class of its own
            command.cls = HelpCommand
    for group in app.registered_groups:
        if group.typer_instance is None or not group.name:
            continue
        full = f"{path} {group.name}".strip()
        if full in EXAMPLES:
            group.epilog = epilog(full)
        add_examples(group.typer_instance, full)
