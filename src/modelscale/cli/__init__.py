"""The command line: thin modules that parse, call the library and render results."""

from __future__ import annotations

from modelscale.cli import assess as _assess  # noqa: F401  (each import registers commands)
from modelscale.cli import compress as _compress  # noqa: F401
from modelscale.cli import db as _db  # noqa: F401
from modelscale.cli import demo as _demo  # noqa: F401
from modelscale.cli import drift as _drift  # noqa: F401
from modelscale.cli import examples as _examples  # noqa: F401
from modelscale.cli import experiment as _experiment  # noqa: F401
from modelscale.cli import keys as _keys  # noqa: F401
from modelscale.cli import laws as _laws  # noqa: F401
from modelscale.cli import load as _load  # noqa: F401
from modelscale.cli import logs as _logs  # noqa: F401
from modelscale.cli import monitor as _monitor  # noqa: F401
from modelscale.cli import plan as _plan  # noqa: F401
from modelscale.cli import privacy as _privacy  # noqa: F401
from modelscale.cli import profile as _profile  # noqa: F401
from modelscale.cli import report as _report  # noqa: F401
from modelscale.cli import runs as _runs  # noqa: F401
from modelscale.cli import serve as _serve  # noqa: F401
from modelscale.cli.app import app
from modelscale.cli.help import add_examples

__all__ = ["app", "main"]

add_examples(app)  # every command is registered by now


def main() -> None:
    """Entry point of the ``modelscale`` console script."""
    app()
