"""What the knowledge base keeps of experiments: a run of kind ``experiment`` per event."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from modelscale.result import Result

__all__ = ["ExperimentRun"]


@dataclass(frozen=True)
class ExperimentRun(Result):
    """An experiment's event (started, advanced, promoted, rolled back, ...) and its status then."""

    kind: ClassVar[str] = "experiment"

    params: dict[str, Any]
    event: dict[str, Any]
    status: dict[str, Any]
