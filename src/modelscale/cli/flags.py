"""Library errors name parameters ('max_drop'); the command line says which flag sets each one.

The library quotes the parameter an error is about, as in "The 'max_drop' parameter of compress
must be a number in [0, 1]. Got 3 instead." Before the CLI prints such an error it rewrites every
quoted parameter name that one of the running command's options sets to that option's flag:
"The --max-drop parameter of compress ...". A parameter named like the option's own Python name
(``max_drop`` for ``--max-drop``) needs nothing here; the tables below name the others.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

__all__ = ["COMMAND_FLAGS", "FLAGS", "command_flags", "with_flags"]

FLAGS: Mapping[str, str] = {
    "batches": "--batch",
    "dims": "--dim",
    "shapes": "--shape",
    "int_ranges": "--int-range",
    "batch_axes": "--batch-axis",
    "max_time_s": "--max-time",
    "max_fallback_steps": "--fallback-steps",
    "eval": "--eval",
    "outputs": "--output",
    "duration_s": "--duration",
    "timeout_s": "--timeout",
    "warmup_s": "--warmup",
    "api_key": "--api-key-file",
    "target_loss": "--target-loss",
    "runs": "--from",
}
"""Parameter -> flag, wherever the running command has that flag."""

COMMAND_FLAGS: Mapping[str, Mapping[str, str]] = {
    # Plan validation's load test is set by the --validate-* options, not load's own.
    "plan": {
        "duration_s": "--validate-seconds",
        "repeats": "--validate-repeats",
        "max_other_cores": "--validate-max-other-cores",
        "url": "--validate",
    },
}
"""Per command: parameter -> flag, where it differs from ``FLAGS``."""


def command_flags(command: Any) -> dict[str, str]:
    """Parameter -> flag for the options of a (click) ``command`` (empty for None)."""
    options = [
        p for p in getattr(command, "params", ()) if getattr(p, "param_type_name", "") == "option"
    ]
    if not options:
        return {}
    opts = {
        p.name: next((o for o in p.opts if o.startswith("--")), p.opts[0])
        for p in options
        if p.name
    }
    present = {o for p in options for o in p.opts}
    out = dict(opts)
    for table in (FLAGS, COMMAND_FLAGS.get(command.name or "", {})):
        out.update({name: flag for name, flag in table.items() if flag in present})
    return out


def with_flags(message: str, flags: Mapping[str, str]) -> str:
    """``message`` with every quoted parameter in ``flags`` replaced by its flag."""
    if not flags:
        return message
    names = sorted(flags, key=len, reverse=True)
    pattern = re.compile("'(" + "|".join(re.escape(n) for n in names) + ")'")
    return pattern.sub(lambda m: flags[m.group(1)], message)
