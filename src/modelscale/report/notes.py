"""Findings and decisions people write down, kept as ``note`` runs beside the runs they discuss."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from modelscale.errors import InvalidInput
from modelscale.result import Result, RunLinks
from modelscale.store import Store

__all__ = ["MAX_NOTE_CHARS", "NoteResult", "make_note"]

MAX_NOTE_CHARS = 10_000
_TAG = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:/-]{0,63}$")


@dataclass(frozen=True)
class NoteResult(Result):
    """A note about a model version, optionally about one of its runs.

    Attributes:
        text: What was found or decided.
        model_sha256: The version it is filed under.
        summary: The text's first line (what ``modelscale runs`` shows).
        params: ``run`` (the run it refers to, or None) and ``tags``.
    """

    kind: ClassVar[str] = "note"

    text: str
    model_sha256: str
    summary: str
    params: dict[str, Any] = field(default_factory=dict)

    def links(self) -> RunLinks:
        """Filed under the model version it is about."""
        return RunLinks(model_version=self.model_sha256)


def make_note(
    store: Store,
    model: str,
    text: str,
    *,
    run: int | None = None,
    tags: Sequence[str] = (),
) -> NoteResult:
    """A note on ``model`` (name, sha256 or prefix), checked against the knowledge base.

    Raises:
        InvalidInput: empty or over-long text, an unknown model, a run that does not exist, or
            a malformed tag.
    """
    body = text.strip()
    if not body:
        raise InvalidInput(
            "The note is empty. Expected the finding or decision, in words.", field="text"
        )
    if len(body) > MAX_NOTE_CHARS:
        raise InvalidInput(
            f"The note is {len(body):,} characters. Expected at most {MAX_NOTE_CHARS:,}; link "
            "to a longer document instead.",
            field="text",
        )
    version = store.model(model)
    if version is None:
        raise InvalidInput(
            f"No model {model!r} in the knowledge base. Expected a model's name or sha256 "
            "(see modelscale runs).",
            field="model",
        )
    if run is not None:
        store.run(run)  # raises InvalidInput naming the id when there is no such run
    for tag in tags:
        if not _TAG.match(tag):
            raise InvalidInput(
                f"The tag {tag!r} is not allowed. Expected 1-64 letters, digits or _ . : / - "
                "starting with a letter or digit (e.g. decision, capacity).",
                field="tag",
            )
    return NoteResult(
        text=body,
        model_sha256=version.sha256,
        summary=body.splitlines()[0][:200],
        params={"run": run, "tags": sorted(set(tags))},
    )
