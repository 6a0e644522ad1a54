"""The shape every capability returns: a frozen dataclass with ``kind``, ``params`` and ``to_dict()``.

Results flow one way: the CLI renders them, the knowledge base stores them (one recorder,
``modelscale.workflow.record``), reports read them back. Nothing else consumes them, so this small
protocol is all they share. ``links()`` tells the recorder what a result's fields do not: the
model version its run is filed under, the versions to register, its child runs, and the model
versions it made.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import math
import pathlib
from collections.abc import Callable, Mapping
from dataclasses import field
from enum import Enum
from typing import Any, ClassVar

import numpy as np

__all__ = ["ChildRun", "ModelVersionInfo", "RecordRun", "Result", "RunLinks", "jsonable"]


def jsonable(value: Any) -> Any:
    """Turn dataclasses, numpy scalars/arrays, paths, enums and datetimes into JSON-ready values.

    Non-finite floats become None, since JSON (and PostgreSQL's JSON type) has no NaN or infinity.
    """
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, np.generic):
        return jsonable(value.item())
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, pathlib.PurePath):
        return str(value)
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, _dt.datetime | _dt.date):
        return value.isoformat()
    return value


@dataclasses.dataclass(frozen=True)
class ModelVersionInfo:
    """A model version as the knowledge base registers it.

    Attributes:
        sha256: The version's identity.
        name: Its name.
        path: Where its file is.
        size_bytes: The file's size.
        parent_sha256: The version it was made from (lineage).
        meta: Anything else worth keeping with it.
    """

    sha256: str
    name: str
    path: str | None = None
    size_bytes: int | None = None
    parent_sha256: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, model: Mapping[str, Any]) -> ModelVersionInfo:
        """From a result's ``model`` mapping (sha256, name, and path and size_bytes if known)."""
        size = model.get("size_bytes")
        return cls(
            sha256=str(model["sha256"]),
            name=str(model.get("name") or str(model["sha256"])[:12]),
            path=None if model.get("path") is None else str(model["path"]),
            size_bytes=None if size is None else int(size),
        )


@dataclasses.dataclass(frozen=True)
class ChildRun:
    """A result stored as a child run of another (a compress search's trials).

    Attributes:
        key: What names it among its siblings (a trial's name).
        result: The result.
        status: 'ok' or 'failed'.
        note: One line stored with the run.
    """

    key: str
    result: Result
    status: str = "ok"
    note: str | None = None


@dataclasses.dataclass(frozen=True)
class RunLinks:
    """What recording a result needs beyond its own fields.

    Attributes:
        model_version: The model version (sha256) the run is filed under.
        models: Model versions to register before the run (idempotent).
        children: Results stored as child runs of this one.
        derived: Model versions the run made; registered after it, their ``meta`` gains
            ``'<kind>_run'``, the run's id.
    """

    model_version: str | None = None
    models: tuple[ModelVersionInfo, ...] = ()
    children: tuple[ChildRun, ...] = ()
    derived: tuple[ModelVersionInfo, ...] = ()


@dataclasses.dataclass(frozen=True)
class Result:
    """Base of capability results.

    Subclasses are frozen dataclasses that set ``kind`` (the run kind in the knowledge base) and carry
    ``params``: the options that produced them, so a stored run can be reproduced.
    """

    kind: ClassVar[str] = "result"

    def to_dict(self) -> dict[str, Any]:
        """All fields as JSON-ready values."""
        out = jsonable(self)
        assert isinstance(out, dict)  # a dataclass always maps to a dict; not input validation
        return out

    def results_dict(self) -> dict[str, Any]:
        """The fields minus ``params``: what the knowledge base stores as the run's results."""
        out = self.to_dict()
        out.pop("params", None)
        return out

    def params_dict(self) -> dict[str, Any]:
        """The options that produced this result (empty if the subclass has none)."""
        params = getattr(self, "params", None)
        return jsonable(params) if params is not None else {}

    def links(self) -> RunLinks:
        """The model version, registrations and child runs recording this result needs."""
        return RunLinks()


RecordRun = Callable[[Result], "int | None"]
"""Stores a result and returns its run id (None: not stored); ``Recorder.run_id`` is one. A
capability that keeps what it measured (plan's profile of a model) is handed one of these
instead of writing to the knowledge base itself."""
