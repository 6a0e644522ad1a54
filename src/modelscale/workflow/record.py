"""The one recorder: every result goes into the knowledge base through ``record``.

A result says what recording it needs beyond its own fields in ``Result.links()``: the model
version its run is filed under, the versions to register first, its child runs and the model
versions it made. ``record`` turns that into ``Store`` calls, so no caller (the command line,
a workflow, a script) registers models or links runs by hand:

    recorder = Recorder.open(enabled=True)   # opens the knowledge base now: a bad URL fails early
    recorded = recorder.record(profile_model("model.onnx"))
    print(recorded.run_id if recorded else "not stored")

A measurement worth minutes must not be lost to a knowledge base that is down or read-only:
``Recorder.open(tolerant=True)`` keeps going when the database cannot be opened, and ``keep``
records a result or, when the knowledge base cannot take it, saves it as a JSON file and says
where (``NotStored``):

    recorder = Recorder.open(tolerant=True)
    kept = recorder.keep(run_load(...))
    if isinstance(kept, NotStored):
        print(f"not stored ({kept.error}); saved to {kept.saved}")

It lives with the workflows rather than in ``store`` because it knows result types that only
workflows produce (``Validation``: a load test and the comparison that points at it), while the
store stays a plain table of runs and model versions.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import pathlib
import tempfile
from dataclasses import dataclass, field
from typing import Any

from modelscale.errors import StoreError
from modelscale.machine import machine_info
from modelscale.result import Result, jsonable
from modelscale.store import Store, open_store
from modelscale.workflow.validate import Validation

__all__ = ["NotStored", "Recorded", "Recorder", "record", "save_json"]


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


@dataclass(frozen=True)
class NotStored:
    """A result the knowledge base could not take.

    Attributes:
        error: Why, in one line.
        saved: The JSON file the result was saved to instead (None: that failed too).
        save_error: Why saving failed, when it did.
    """

    error: str
    saved: pathlib.Path | None
    save_error: str | None = None

    def message(self) -> str:
        """One line for the user: what was not stored, and where the result is instead."""
        where = (
            f"The results are saved in {self.saved}."
            if self.saved is not None
            else f"Saving them as JSON failed too ({self.save_error})."
        )
        return f"The results were not stored in the knowledge base: {self.error} {where}"


def save_json(result: Result | Validation, folder: pathlib.Path | None = None) -> pathlib.Path:
    """Write ``result`` as JSON into ``folder`` (default: the working directory; the temporary
    folder if that cannot be written) and return the file's path.

    The file holds what a run would: kind, params, results and the machine, as ``runs show
    --json`` prints them.
    """
    doc = _run_document(result)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S%fZ")
    name = f"modelscale-{doc['kind']}-{stamp}.json"
    text = json.dumps(jsonable(doc), indent=2) + "\n"
    folders = (
        [folder]
        if folder is not None
        else [pathlib.Path.cwd(), pathlib.Path(tempfile.gettempdir())]
    )
    error: OSError | None = None
    for where in folders:
        path = where / name
        try:
            with path.open("x", encoding="utf-8") as f:
                f.write(text)
        except OSError as exc:
            error = exc
            continue
        return path.resolve()
    assert error is not None  # the loop ran at least once and every write failed
    raise error


def _run_document(result: Result | Validation) -> dict[str, Any]:
    machine = machine_info().to_dict()
    if isinstance(result, Validation):
        return {
            "kind": result.result.kind,
            "params": result.result.params_dict(),
            "results": result.result.results_dict(),
            "machine": machine,
            "load": _run_document(result.load),
        }
    return {
        "kind": result.kind,
        "model_version": result.links().model_version,
        "params": result.params_dict(),
        "results": result.results_dict(),
        "machine": machine,
    }


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
        open_error: Why the knowledge base could not be opened, for a recorder that was asked to
            store but cannot (``open(tolerant=True)``); ``keep`` then saves results as JSON.
    """

    def __init__(self, store: Store | None, *, open_error: str | None = None) -> None:
        self.store = store
        self.open_error = open_error

    @classmethod
    def open(
        cls, enabled: bool = True, *, url: str | None = None, tolerant: bool = False
    ) -> Recorder:
        """A recorder into the knowledge base at ``url`` (default: the configured one), opened now
        so a bad database fails before any work; with ``enabled=False`` one that stores nothing.

        ``tolerant``: a knowledge base that cannot be opened (unreachable, read-only) does not
        raise; the recorder keeps the reason in ``open_error`` and ``keep`` saves results as JSON.
        """
        if not enabled:
            return cls(None)
        try:
            return cls(open_store(url))
        except StoreError as exc:
            if not tolerant:
                raise
            return cls(None, open_error=str(exc))

    @property
    def enabled(self) -> bool:
        """Whether results are stored."""
        return self.store is not None

    def keep(
        self,
        result: Result | Validation,
        *,
        parent_run_id: int | None = None,
        model_version: str | None = None,
        save_dir: pathlib.Path | None = None,
    ) -> Recorded | NotStored | None:
        """``record`` ``result``; when the knowledge base cannot take it (it could not be opened,
        is read-only, went away), save it as JSON (``save_json``) and say so in a ``NotStored``.

        None when this recorder stores nothing by choice (``--no-store``).
        """
        if self.store is None and self.open_error is None:
            return None
        error = self.open_error
        if self.store is not None:
            try:
                return self.record(result, parent_run_id=parent_run_id, model_version=model_version)
            except StoreError as exc:
                error = str(exc)
        assert error is not None  # either opening failed or recording did
        try:
            return NotStored(error, save_json(result, save_dir))
        except OSError as exc:
            return NotStored(error, None, exc.strerror or str(exc))

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
