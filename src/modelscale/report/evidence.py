"""What the knowledge base holds about one model: its versions and every run filed under them.

A model is a family: the version asked for, the version it was made from and every version made
from those (a compressed copy, a fine-tuned one), so a report on ``digits`` shows the int8 copy
its compress run made and the canary that rolled it out. Runs are classified by what they are,
not only by their kind: a ``plan`` run is a plan or the validation of one, a ``drift`` run is a
monitor window or a monitor alert, a ``compress`` run is a search or one of its trials.

Reports and scorecards read stored JSON, not the capabilities' result classes: a knowledge base
outlives the modelscale that wrote it, so every reader here takes a missing field as "not
recorded" rather than as an error.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from modelscale.errors import InvalidInput
from modelscale.store import ModelVersion, Run, Store

__all__ = ["Evidence", "gather_evidence", "role"]

# What a run is, from its kind and the shape of its results.
_ROLES: dict[str, Callable[[Run], str]] = {
    # A search holds its trials (or its choice); a trial is a child run without them. The parent
    # alone does not tell: a search may be filed under the profile it started from.
    "compress": lambda r: (
        "compress"
        if "trials" in r.results or "chosen" in r.results or not r.parent_run_id
        else "compress.trial"
    ),
    "plan": lambda r: "plan.validation" if "within_tolerance" in r.results else "plan",
    "drift": lambda r: "drift.alert" if "alert" in r.results else "drift",
    "slo": lambda r: "slo.window" if "objectives" in r.results else "slo",
}


def role(run: Run) -> str:
    """What a run is: its kind, or a finer name where one kind stores two things
    (``compress.trial``, ``plan.validation``, ``drift.alert``, ``slo.window``)."""
    classify = _ROLES.get(run.kind)
    return classify(run) if classify is not None else run.kind


@dataclass(frozen=True)
class Evidence:
    """A model's versions and runs, as read at ``at``.

    Attributes:
        model: The name (or sha256 prefix) asked for.
        name: The family's name (its first version's).
        versions: Every version of the family, oldest first.
        runs: Every run filed under one of them, newest first, and the project-wide runs that
            concern it (privacy audits naming it, scaling-law fits filed under no model).
        at: When the knowledge base was read.
        since: Runs older than this were left out (None: none were).
    """

    model: str
    name: str
    versions: tuple[ModelVersion, ...]
    runs: tuple[Run, ...]
    at: dt.datetime
    since: dt.datetime | None = None
    _by_role: dict[str, list[Run]] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        for run in self.runs:
            self._by_role.setdefault(role(run), []).append(run)

    def of(self, name: str, where: Callable[[Run], bool] | None = None) -> list[Run]:
        """Runs of one role, newest first (optionally filtered)."""
        found = self._by_role.get(name, [])
        return [r for r in found if where(r)] if where is not None else list(found)

    def latest(self, name: str, where: Callable[[Run], bool] | None = None) -> Run | None:
        """The newest run of one role (optionally filtered), or None."""
        found = self.of(name, where)
        return found[0] if found else None

    def children(self, parent: Run) -> list[Run]:
        """Runs stored as children of ``parent``, oldest first."""
        return sorted((r for r in self.runs if r.parent_run_id == parent.id), key=lambda r: r.id)

    def version(self, sha256: str | None) -> ModelVersion | None:
        """A version of the family by sha256."""
        return next((v for v in self.versions if v.sha256 == sha256), None)

    def label(self, sha256: str | None) -> str:
        """A version's short name: ``name (sha256[:8])``."""
        v = self.version(sha256)
        if v is None:
            return "-" if sha256 is None else sha256[:8]
        return f"{v.name} ({v.sha256[:8]})"

    def age_days(self, run: Run) -> float:
        """How old a run is, in days, at ``at``."""
        return max(0.0, (self.at - run.created_at).total_seconds() / 86400.0)

    def notes(self) -> list[Run]:
        """Notes people wrote about the model, oldest first."""
        return sorted(self.of("note"), key=lambda r: r.id)

    def notes_about(self, runs: Iterable[Run]) -> list[Run]:
        """The notes that refer to one of ``runs``."""
        ids = {r.id for r in runs}
        return [n for n in self.notes() if n.params.get("run") in ids]


def _family(store: Store, start: ModelVersion) -> list[ModelVersion]:
    everything = store.models()
    by_sha = {m.sha256: m for m in everything}
    root = start
    seen = {root.sha256}
    while root.parent_sha256 and root.parent_sha256 in by_sha and root.parent_sha256 not in seen:
        root = by_sha[root.parent_sha256]
        seen.add(root.sha256)
    members = {root.sha256}
    grew = True
    while grew:  # descendants of the root, however deep
        grew = False
        for m in everything:
            if m.parent_sha256 in members and m.sha256 not in members:
                members.add(m.sha256)
                grew = True
    # Versions registered under the same name without lineage (a retrained model) belong too.
    members |= {m.sha256 for m in everything if m.name == root.name}
    return sorted((by_sha[s] for s in members), key=lambda m: (m.created_at, m.sha256))


def _concerns(run: Run, names: set[str]) -> bool:
    """A run filed under no model that is about this one."""
    if run.kind == "privacy":
        policies: Any = run.results.get("policies") or {}
        return isinstance(policies, dict) and bool(names & set(policies))
    if run.kind == "laws":
        return True  # a project's scaling-law fits describe every model it trains
    return run.params.get("model") in names


def gather_evidence(store: Store, model: str, *, since: dt.datetime | None = None) -> Evidence:
    """Read what the knowledge base holds about ``model`` (a name, sha256 or unique prefix).

    Raises:
        InvalidInput: no model of that name or sha256 is in the knowledge base.
    """
    if not model or not model.strip():
        raise InvalidInput(
            "The model name is empty. Expected a model's name or sha256.", field="model"
        )
    start = store.model(model)
    if start is None:
        known = sorted({m.name for m in store.models()})
        hint = (
            f"Known models: {', '.join(known[:20])}." if known else "The knowledge base is empty."
        )
        raise InvalidInput(
            f"No model {model!r} in the knowledge base at "
            f"{store.url.render_as_string(hide_password=True)}. {hint} Profile it first "
            "(modelscale profile MODEL.onnx) or name one of those.",
            field="model",
        )
    versions = _family(store, start)
    shas = {v.sha256 for v in versions}
    names = {v.name for v in versions}
    runs = [
        r
        for r in store.runs()
        if (r.model_version in shas if r.model_version else _concerns(r, names))
        and (since is None or r.created_at >= since)
    ]
    return Evidence(
        model=model,
        name=versions[0].name,
        versions=tuple(versions),
        runs=tuple(runs),
        at=dt.datetime.now(dt.UTC),
        since=since,
    )
