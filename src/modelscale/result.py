"""The shape every capability returns: a frozen dataclass with ``kind``, ``params`` and ``to_dict()``.

Results flow one way: the CLI renders them, the knowledge base stores them (``Store.record``), reports
read them back. Nothing else consumes them, so this small protocol is all they share.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import math
import pathlib
from collections.abc import Mapping
from enum import Enum
from typing import Any, ClassVar

import numpy as np

__all__ = ["Result", "jsonable"]


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
