"""The one recorder: every result goes into the knowledge base through ``record``.

A result says what recording it needs beyond its own fields in ``Result.links()``: the model
version its run is filed under, the versions to register first, its child runs and the model
versions it made. ``record`` turns that into ``Store`` calls, so no caller (the command line,
a workflow, a script) registers models or links runs by hand:

    recorder = Recorder.open(enabled=True)   # opens the knowledge base now: a bad URL fails early
    recorded = recorder.record(profile_model("model.onnx"))
    print(recorded.run_id if recorded else "not stored")

It lives with the workflows rather than in ``store`` because it knows result types that only
workflows produce (``Validation``: a load test and the comparison that points at it), while the
store stays a plain table of runs and model versions.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from modelscale.result import Result
from modelscale.store import Store, open_store
from modelscale.workflow.validate import Validation

__all__ = ["Recorded", "Recorder", "record"]


@dataclass(frozen=True)
class Recorded:
    """Where a result went in the knowledge base.

    Attributes:
        run_id: Its run.
        children: Related runs by name: a compress search's trials, a validation's 'load' test.
        new_versions: Model versions the result made and registered (a compressed model).
    """

    run_id: int
    children: dict[str, int] = field(default_factory=dict)
    new_versions: tuple[str, ...] = ()


def record(
    result: Result | Validation,
    store: Store,
    *,
    parent_run_id: int | None = None,
    model_version: str | None = None,
) -> Recorded:
    """Store ``result`` (with its model versions and child runs) in ``store``.

    Args:
        result: A capability's result, or a plan ``Validation``.
        store: The knowledge base.
        parent_run_id: The run this one belongs under (a plan's validation, a fit's optimum).
        model_version: Files the run under this version when the result does not name one
            itself (e.g. a ``ServeResult``, which serves several).
    """
    if isinstance(result, Validation):
        return _record_validation(result, store, parent_run_id)
    links = result.links()
    version = links.model_version or model_version
    for mv in links.models:
        store.register_model(
            mv.sha256,
            name=mv.name,
            path=mv.path,
            size_bytes=mv.size_bytes,
            parent_sha256=mv.parent_sha256,
            meta=mv.meta or None,
        )
    run_id = store.record(result, model_version=version, parent_run_id=parent_run_id)
    children = {
        c.key: store.record(
            c.result, model_version=version, parent_run_id=run_id, status=c.status, note=c.note
        )
        for c in links.children
    }
    for mv in links.derived:
        store.register_model(
            mv.sha256,
            name=mv.name,
            path=mv.path,
            size_bytes=mv.size_bytes,
            parent_sha256=mv.parent_sha256,
            meta={f"{result.kind}_run": run_id, **mv.meta},
        )
    return Recorded(run_id, children, tuple(mv.sha256 for mv in links.derived))


def _record_validation(v: Validation, store: Store, plan_run_id: int | None) -> Recorded:
    # The load test first: the comparison points at it. Both are children of the plan run.
    load = record(v.load, store, parent_run_id=plan_run_id, model_version=_sha(v))
    final = dataclasses.replace(v.result, load_run_id=load.run_id)
    run = record(final, store, parent_run_id=plan_run_id)
    return Recorded(run.run_id, {"load": load.run_id})


def _sha(v: Validation) -> str | None:
    sha = v.result.model.get("sha256")
    return str(sha) if sha else None


class Recorder:
    """``record`` into one knowledge base, or nowhere (``--no-store``).

    Args:
        store: The knowledge base; None records nothing.
    """

    def __init__(self, store: Store | None) -> None:
        self.store = store

    @classmethod
    def open(cls, enabled: bool = True, *, url: str | None = None) -> Recorder:
        """A recorder into the knowledge base at ``url`` (default: the configured one), opened now
        so a bad database fails before any work; with ``enabled=False`` one that stores nothing."""
        return cls(open_store(url) if enabled else None)

    @property
    def enabled(self) -> bool:
        """Whether results are stored."""
        return self.store is not None

    def record(
        self,
        result: Result | Validation,
        *,
        parent_run_id: int | None = None,
        model_version: str | None = None,
    ) -> Recorded | None:
        """``record`` ``result`` (None when this recorder stores nothing)."""
        if self.store is None:
            return None
        return record(result, self.store, parent_run_id=parent_run_id, model_version=model_version)

    def run_id(self, result: Result) -> int | None:
        """``record`` ``result`` and return its run id (None when this recorder stores nothing).

        A ``modelscale.result.RecordRun``: what ``plan_model`` is given to keep a profile.
        """
        recorded = self.record(result)
        return None if recorded is None else recorded.run_id
