"""Which arm a unit gets: a salted hash of its key, the same on every server and after restarts.

The key's hash is read as a number ``u`` in [0, 1); the unit is in the treatment when
``u < share``. So raising a canary's share only moves units from control to treatment, never
back, and every server in a fleet agrees without talking to the others. The salt (the
experiment's name) makes two experiments' assignments independent of each other.
"""

from __future__ import annotations

import hashlib
import random
from typing import TYPE_CHECKING

from modelscale.serve import ApiError

if TYPE_CHECKING:
    from modelscale.serve import Exchange

__all__ = ["Assigner", "UnitReader"]

_SCALE = float(1 << 64)


class Assigner:
    """Maps unit keys to numbers in [0, 1), salted per experiment."""

    def __init__(self, salt: str) -> None:
        self._salt = salt.encode() + b"\x00"
        self._random = random.Random()

    def position(self, key: str | None) -> float:
        """``key``'s place in [0, 1) (a fresh random draw when there is no key)."""
        if key is None:
            return self._random.random()
        digest = hashlib.blake2b(self._salt + key.encode(), digest_size=8).digest()
        return int.from_bytes(digest, "big") / _SCALE


class UnitReader:
    """Reads a request's unit key as ``experiment.unit`` says: a header, a request parameter, or
    none (``request``: every request is a unit of its own)."""

    def __init__(self, unit: str, *, required: bool) -> None:
        self.unit = unit
        self.required = required
        kind, _, name = unit.partition(":")
        self.kind = kind
        self.name = name
        self._header = name.lower().encode("latin-1") if kind == "header" else b""

    def read(self, ex: Exchange) -> str | None:
        """The unit key of ``ex`` (None: assign by request); 400 when required and missing."""
        if self.kind == "request":
            return None
        value: object = None
        if self.kind == "header":
            for k, v in ex.scope.get("headers", ()):
                if k == self._header:
                    value = v.decode("latin-1").strip() or None
                    break
        else:
            params = ex.decoded.parameters if ex.decoded is not None else None
            if params:
                value = params.get(self.name)
                if isinstance(value, bool) or not isinstance(value, str | int):
                    if value is not None and self.required:
                        raise ApiError(
                            400,
                            f"parameters.{self.name} must be a string or an integer (the unit "
                            f"this model's experiment assigns by). Got {type(value).__name__}.",
                            field=f"parameters.{self.name}",
                        )
                    value = None if not isinstance(value, str | int) else value
        if value is None and self.required:
            where = f"header {self.name}" if self.kind == "header" else f"parameters.{self.name}"
            raise ApiError(
                400,
                f"this model runs an experiment by {self.unit}: send the {where} with each "
                "request (or name a version in the path to bypass the experiment).",
                field=self.name,
            )
        return None if value is None else str(value)
