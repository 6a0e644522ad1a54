"""Scoped API keys, stored hashed in a JSON keys file the server re-reads when it changes.

A key is ``msk_<id>_<secret>``: ``id`` is 8 hex digits, public (logs and ``modelscale keys list``
name a key by it, and the server looks the key up by it), and ``secret`` is 32 random bytes,
base64url. The keys file (``keyfile``) holds no key, only its hash.

The hash is HMAC-SHA256 of the whole key, keyed by a pepper derived from the server secret
(``modelscale.secret``, purpose ``api-keys``); ``secret_id`` fingerprints that pepper, so a keys
file used with another secret is refused instead of answering 401 to every key. The file's
format and the scopes are in ``keyfile``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import hmac
import logging
import os
import pathlib
import secrets
import time
from collections.abc import Callable, Iterable

from modelscale.errors import InvalidInput
from modelscale.secret import check_private, derive
from modelscale.serve.keyfile import (
    ADMIN,
    SCOPES,
    ApiKey,
    KeysFile,
    check_scopes,
    locked,
    parse_keys,
    read_keys,
    write_keys,
)

__all__ = [
    "ADMIN",
    "KEY_PREFIX",
    "PEPPER_PURPOSE",
    "SCOPES",
    "ApiKey",
    "KeyStore",
    "KeysFile",
    "check_scopes",
    "create_key",
    "hash_key",
    "parse_key_id",
    "pepper_of",
    "read_keys",
    "revoke_key",
    "secret_id",
    "write_keys",
]

log = logging.getLogger("modelscale.serve")

KEY_PREFIX = "msk_"
PEPPER_PURPOSE = "api-keys"
"""The purpose the key hashes' pepper is derived from the server secret for."""

_ID_LEN = 8
_HEX = frozenset(b"0123456789abcdef")


def pepper_of(secret: bytes) -> bytes:
    """The pepper of the key hashes, derived from the server secret."""
    return derive(secret, PEPPER_PURPOSE)


def secret_id(pepper: bytes) -> str:
    """A fingerprint of ``pepper`` that tells which secret a keys file was made with.

    It is an HMAC output, so it gives nothing away about the pepper itself.
    """
    return hmac.new(pepper, b"modelscale keys file", hashlib.sha256).hexdigest()[:_ID_LEN]


def hash_key(pepper: bytes, key: str | bytes) -> str:
    """The stored hash of ``key``: HMAC-SHA256(pepper, key), hex."""
    # Keys are 256-bit random, so nobody can guess one and a slow password hash (argon2,
    # bcrypt) would add its latency to every request for nothing. The pepper lives outside the
    # keys file: whoever has only the file cannot even confirm a guessed key against it.
    raw = key.encode("latin-1") if isinstance(key, str) else key
    return hmac.new(pepper, raw, hashlib.sha256).hexdigest()


def parse_key_id(token: bytes) -> str | None:
    """The id of a key shaped ``msk_<8 hex>_<secret>``, or None for anything else."""
    n = len(KEY_PREFIX)
    if (
        len(token) <= n + _ID_LEN + 1
        or not token.startswith(KEY_PREFIX.encode())
        or token[n + _ID_LEN] != ord("_")
    ):
        return None
    raw = token[n : n + _ID_LEN]
    if not _HEX.issuperset(raw):
        return None
    return raw.decode("ascii")


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def create_key(
    path: str | pathlib.Path, *, name: str, scopes: Iterable[str], pepper: bytes
) -> tuple[ApiKey, str]:
    """Add a new key named ``name`` to the keys file (made if missing); (its entry, the key).

    The key is returned once and stored only as its hash. Names need not be unique: a key is
    known by its id, and replacing a key means making its successor (under the same name)
    before revoking it.
    """
    p = pathlib.Path(path).expanduser()
    label = name.strip()
    if not label or len(label) > 100 or not label.isprintable():
        raise InvalidInput(
            f"A key's name must be 1 to 100 printable characters. Got {name!r} instead.",
            field="name",
        )
    wanted = check_scopes(scopes)
    sid = secret_id(pepper)
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InvalidInput(
            f"Cannot make the directory of the keys file {p}: {exc.strerror}.", field="keys_file"
        ) from None
    with locked(p):
        current = read_keys(p, missing_ok=True)
        if current.secret_id is not None and current.secret_id != sid:
            raise InvalidInput(
                f"The keys in {p} were made with another secret (secret id {current.secret_id}, "
                f"this one's is {sid}); a key made now would never match on the server. Give "
                "the secret file the server uses (--secret-file or MODELSCALE_SECRET_FILE).",
                field="secret_file",
            )
        taken = {k.id for k in current.keys}
        key_id = secrets.token_hex(_ID_LEN // 2)
        while key_id in taken:
            key_id = secrets.token_hex(_ID_LEN // 2)
        key = f"{KEY_PREFIX}{key_id}_{secrets.token_urlsafe(32)}"
        entry = ApiKey(key_id, label, wanted, hash_key(pepper, key), _now())
        write_keys(p, KeysFile((*current.keys, entry), sid))
    return entry, key


def revoke_key(path: str | pathlib.Path, key_id: str) -> tuple[ApiKey, bool]:
    """Revoke the key ``key_id``: (its entry, whether it was active until now)."""
    p = pathlib.Path(path).expanduser()
    with locked(p):
        current = read_keys(p)
        entry = current.find(key_id)
        if entry is None:
            known = ", ".join(k.id for k in current.keys) or "none"
            raise InvalidInput(
                f"No key with id {key_id!r} in {p}; the ids there are: {known} "
                "(`modelscale keys list`).",
                field="id",
            )
        if not entry.active:
            return entry, False
        revoked = dataclasses.replace(entry, revoked_at=_now())
        keys = tuple(revoked if k.id == key_id else k for k in current.keys)
        write_keys(p, KeysFile(keys, current.secret_id))
    return revoked, True


class KeyStore:
    """The active keys of a keys file, for the server: verifies keys, follows the file's changes.

    At most once per ``check_every_s`` a request's check stats the file; a new size, time or
    inode reloads it, so keys made or revoked take effect without a restart. A file that cannot
    be read or parsed on reload leaves the keys loaded before in force, and is logged.
    """

    def __init__(
        self,
        path: str | pathlib.Path,
        *,
        pepper: bytes,
        check_every_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = pathlib.Path(path).expanduser()
        self.check_every_s = check_every_s
        self._pepper = pepper
        self._secret_id = secret_id(pepper)
        self._clock = clock
        # An unknown id is checked against this, so that it costs what a wrong key costs.
        self._dummy = secrets.token_bytes(32)
        self._active: dict[str, tuple[ApiKey, bytes]] = {}
        self._stamp: tuple[int, int, int] | None = None
        check_private(self.path, what="The API keys file")
        self._load()
        self._checked = clock()
        if not self._active:
            log.warning(
                "the keys file %s has no active key: every request but the health probes "
                "gets 401 until one is made (`modelscale keys create`)",
                self.path,
            )

    @property
    def keys(self) -> list[ApiKey]:
        """The active keys."""
        return [k for k, _ in self._active.values()]

    def _load(self) -> None:
        with self.path.open("rb") as f:
            st = os.fstat(f.fileno())
            raw = f.read()
        parsed = parse_keys(self.path, raw)
        if parsed.secret_id is not None and parsed.secret_id != self._secret_id:
            raise InvalidInput(
                f"The keys in {self.path} were made with another secret (secret id "
                f"{parsed.secret_id}; this server's is {self._secret_id}). Point "
                "server.secret_file (or MODELSCALE_SECRET_FILE) at the secret file "
                "`modelscale keys create` used.",
                field="secret_file",
            )
        self._active = {k.id: (k, bytes.fromhex(k.hash)) for k in parsed.keys if k.active}
        self._stamp = (st.st_mtime_ns, st.st_size, st.st_ino)

    def refresh(self) -> None:
        """Reload the file if it changed since it was read."""
        try:
            st = os.stat(self.path)
        except OSError as exc:
            if self._stamp is not None:  # logged once, not on every request
                log.error(
                    "the keys file %s cannot be read (%s); the %d keys loaded before stay in force",
                    self.path,
                    exc.strerror,
                    len(self._active),
                )
                self._stamp = None
            return
        if (st.st_mtime_ns, st.st_size, st.st_ino) == self._stamp:
            return
        try:
            self._load()
        except (OSError, InvalidInput) as exc:
            # Remember the broken version, so that it is logged once, not on every request.
            self._stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
            log.error(
                "the keys file %s changed and cannot be used (%s); the %d keys loaded before "
                "stay in force",
                self.path,
                exc,
                len(self._active),
            )
        else:
            log.info("the keys file %s reloaded: %d active keys", self.path, len(self._active))

    def verify(self, token: bytes) -> ApiKey | None:
        """The active key ``token`` is, or None (malformed, unknown, revoked or wrong)."""
        now = self._clock()
        if now - self._checked >= self.check_every_s:
            self._checked = now
            self.refresh()
        key_id = parse_key_id(token)
        found = self._active.get(key_id) if key_id is not None else None
        expected = found[1] if found is not None else self._dummy
        digest = hmac.new(self._pepper, token, hashlib.sha256).digest()
        # Always one comparison of equal-length digests: an unknown, malformed or revoked key
        # takes the time a wrong one does.
        ok = hmac.compare_digest(digest, expected)
        return found[0] if ok and found is not None else None
