"""Running the CLI in-process, as a user would from a shell."""

from __future__ import annotations

import json
from typing import Any

from typer.testing import CliRunner, Result

from modelscale.cli import app

__all__ = ["invoke", "invoke_json", "runner"]

runner = CliRunner()


def invoke(*args: str) -> Result:
    """Run ``modelscale ARGS`` and return the click Result (stdout and stderr both captured)."""
    return runner.invoke(app, list(args))


def invoke_json(*args: str) -> Any:
    """Run a command with --json and parse its stdout."""
    result = invoke(*args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)
