"""The one progress report every long-running capability gives: a ``ProgressEvent`` per step.

    def on_progress(event: ProgressEvent) -> None:
        print(f"{event.stage}: {event.done}/{event.total or '?'}")

    profile_model("model.onnx", on_progress=on_progress)

A capability takes ``on_progress: OnProgress | None`` and calls it as its work moves on; the
command line turns the events into its progress bar, a script may log them or ignore them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["OnProgress", "ProgressEvent", "report"]


@dataclass(frozen=True)
class ProgressEvent:
    """Where a long-running call stands.

    Attributes:
        stage: What it is doing now, in words ('latency sweep', 'int8-dynamic: evaluating').
        done: Steps of this stage done so far.
        total: Steps the stage has (None: not known in advance).
        detail: What the step produced, for callers that want it (a profile's measured point);
            None for most events.
    """

    stage: str
    done: int = 0
    total: int | None = None
    detail: Any = None


OnProgress = Callable[[ProgressEvent], None]
"""The one progress callback type: called with each ``ProgressEvent``."""


def report(
    on_progress: OnProgress | None,
    stage: str,
    done: int = 0,
    total: int | None = None,
    detail: Any = None,
) -> None:
    """Call ``on_progress`` (when given) with a ``ProgressEvent`` of these fields."""
    if on_progress is not None:
        on_progress(ProgressEvent(stage, done, total, detail))
