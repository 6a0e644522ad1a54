"""The keys file: the scoped API keys a server takes, stored hashed, as JSON.

::

    {"version": 1, "secret_id": "9f1c22ab",
     "keys": [{"id": "3e7a01bc", "name": "web", "scopes": ["infer"], "hash": "<64 hex>",
               "created_at": "2025-05-01T12:00:00+00:00", "revoked_at": null}]}

The file holds no key, only each key's hash (``modelscale.serve.keys``). It is written whole, to a
new file renamed over the old one (mode 0600), so a server that re-reads it never sees half a
file. Scopes: ``infer`` (inference, model metadata and readiness), ``feedback`` (labels and
outcomes), ``logs:read`` (the request log, SLOs, drift, experiment status, /metrics) and
``admin`` (everything, experiment actions included).
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import re
import secrets
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import orjson

from modelscale.errors import InvalidInput

__all__ = [
    "ADMIN",
    "SCOPES",
    "ApiKey",
    "KeysFile",
    "check_scopes",
    "locked",
    "parse_keys",
    "read_keys",
    "write_keys",
]

ADMIN = "admin"
SCOPES = ("infer", "feedback", "logs:read", ADMIN)
"""What a key may be allowed; ``admin`` allows every route."""

_FORMAT = 1
_ID = re.compile(r"^[0-9a-f]{8}$")
_HASH = re.compile(r"^[0-9a-f]{64}$")


def check_scopes(scopes: Iterable[str]) -> tuple[str, ...]:
    """``scopes`` without repeats, in the order of ``SCOPES`` (InvalidInput for unknown ones)."""
    given = list(scopes)
    unknown = [s for s in given if s not in SCOPES]
    if unknown:
        raise InvalidInput(
            f"Unknown scope {unknown[0]!r}; expected one or more of {', '.join(SCOPES)}.",
            field="scope",
        )
    if not given:
        raise InvalidInput(
            f"A key needs at least one scope, one of {', '.join(SCOPES)}.", field="scope"
        )
    return tuple(s for s in SCOPES if s in given)


@dataclass(frozen=True)
class ApiKey:
    """One entry of the keys file (the key itself is never stored)."""

    id: str
    name: str
    scopes: tuple[str, ...]
    hash: str
    created_at: str
    revoked_at: str | None = None

    @property
    def active(self) -> bool:
        """Not revoked."""
        return self.revoked_at is None

    def allows(self, scope: str) -> bool:
        """Whether this key may use a route that needs ``scope``."""
        return ADMIN in self.scopes or scope in self.scopes

    def public(self) -> dict[str, Any]:
        """What ``keys list`` shows: everything but the hash."""
        return {
            "id": self.id,
            "name": self.name,
            "scopes": list(self.scopes),
            "created_at": self.created_at,
            "revoked_at": self.revoked_at,
        }

    def to_dict(self) -> dict[str, Any]:
        """The entry as the keys file holds it."""
        return {**self.public(), "hash": self.hash}


@dataclass(frozen=True)
class KeysFile:
    """What a keys file holds."""

    keys: tuple[ApiKey, ...] = ()
    secret_id: str | None = None
    """Fingerprint of the pepper the hashes were made with (None: no key made yet)."""

    def find(self, key_id: str) -> ApiKey | None:
        """The entry with id ``key_id``."""
        return next((k for k in self.keys if k.id == key_id), None)


def _bad(path: pathlib.Path, problem: str) -> InvalidInput:
    return InvalidInput(
        f"The keys file {path} is not a modelscale keys file: {problem}. It was left as it is; "
        "fix it, or move it away and make keys afresh with `modelscale keys create`.",
        field="keys_file",
    )


def _entry(path: pathlib.Path, i: int, item: Any) -> ApiKey:
    if not isinstance(item, dict):
        raise _bad(path, f"keys[{i}] is a {type(item).__name__}, expected an object")
    for name, ok in (
        ("id", lambda v: isinstance(v, str) and _ID.match(v)),
        ("name", lambda v: isinstance(v, str) and v),
        ("hash", lambda v: isinstance(v, str) and _HASH.match(v)),
        ("created_at", lambda v: isinstance(v, str)),
        ("revoked_at", lambda v: v is None or isinstance(v, str)),
        ("scopes", lambda v: isinstance(v, list) and v and all(s in SCOPES for s in v)),
    ):
        if not ok(item.get(name)):
            # A hash is not shown, even a broken one: error messages end up in logs.
            shown = "" if name == "hash" else f" ({item.get(name)!r})"
            raise _bad(path, f"keys[{i}].{name} is missing or not valid{shown}")
    return ApiKey(
        id=item["id"],
        name=item["name"],
        scopes=check_scopes(item["scopes"]),
        hash=item["hash"],
        created_at=item["created_at"],
        revoked_at=item["revoked_at"],
    )


def parse_keys(path: pathlib.Path, raw: bytes) -> KeysFile:
    """The keys file ``path`` read as ``raw`` (InvalidInput naming what is wrong)."""
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise _bad(path, f"not valid JSON ({exc})") from None
    if not isinstance(data, dict) or not isinstance(data.get("keys"), list):
        raise _bad(path, 'expected an object with a "keys" list')
    if data.get("version", _FORMAT) != _FORMAT:
        raise _bad(path, f"version {data.get('version')!r}; this modelscale reads {_FORMAT}")
    sid = data.get("secret_id")
    if sid is not None and not (isinstance(sid, str) and _ID.match(sid)):
        raise _bad(path, f"secret_id {sid!r} is not 8 hex digits")
    keys = tuple(_entry(path, i, item) for i, item in enumerate(data["keys"]))
    ids = [k.id for k in keys]
    if len(set(ids)) != len(ids):
        raise _bad(path, "two keys have the same id")
    return KeysFile(keys, sid)


def read_keys(path: str | pathlib.Path, *, missing_ok: bool = False) -> KeysFile:
    """The keys in ``path`` (an empty ``KeysFile`` for a missing file with ``missing_ok``)."""
    p = pathlib.Path(path).expanduser()
    try:
        raw = p.read_bytes()
    except FileNotFoundError:
        if missing_ok:
            return KeysFile()
        raise InvalidInput(
            f"The keys file {p} does not exist. Make a key with `modelscale keys create NAME "
            f"--scope infer --keys-file {p}`.",
            field="keys_file",
        ) from None
    except OSError as exc:
        raise InvalidInput(
            f"Cannot read the keys file {p}: {exc.strerror}.", field="keys_file"
        ) from None
    return parse_keys(p, raw)


def _unwritable(path: pathlib.Path, exc: OSError) -> InvalidInput:
    return InvalidInput(
        f"Cannot write the keys file {path}: {exc.strerror}. Expected a writable directory "
        "(--keys-file picks another place).",
        field="keys_file",
    )


def write_keys(path: str | pathlib.Path, keys: KeysFile) -> None:
    """Replace ``path`` with ``keys`` at once (mode 0600): a running server never reads half."""
    p = pathlib.Path(path).expanduser()
    data = {
        "version": _FORMAT,
        "secret_id": keys.secret_id,
        "keys": [k.to_dict() for k in keys.keys],
    }
    tmp = p.with_name(f".{p.name}.{secrets.token_hex(4)}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as exc:
        raise _unwritable(p, exc) from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(orjson.dumps(data, option=orjson.OPT_INDENT_2) + b"\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, p)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def locked(path: pathlib.Path) -> Iterator[None]:
    """Hold a lock beside ``path``, so that two commands changing it at once lose no key."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no advisory locks; changes are rare and made by hand
        yield
        return
    lock = path.with_name(f".{path.name}.lock")
    try:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise _unwritable(path, exc) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
