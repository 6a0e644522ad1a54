"""API keys: who a request's bearer key is. The check per route is the pipeline's auth stage
(``stages``); the scoped keys and their file are in ``keys``.

A server takes the single key of ``auth.api_key_file`` (allowed everything, its id the first 8
hex digits of its sha256), the scoped keys of ``auth.keys_file``, or both. Every comparison is
made in constant time over fixed-length digests, so neither a key's content nor its length, nor
whether an id exists, shows in the response time.
"""

from __future__ import annotations

import hashlib
import hmac
import pathlib
from typing import TYPE_CHECKING

from modelscale.config import get_settings
from modelscale.errors import InvalidInput
from modelscale.secret import check_private, read_secret
from modelscale.serve.keys import ADMIN, ApiKey, KeyStore, pepper_of

if TYPE_CHECKING:
    from modelscale.config import DeploymentSpec

__all__ = [
    "SECRET_NAME",
    "Authenticator",
    "default_secret_file",
    "key_id",
    "load_authenticator",
    "read_api_key",
]

SECRET_NAME = "secret"
"""The secret file's name beside the keys file when nothing else names one."""


def key_id(key: str) -> str:
    """A short id for ``key`` that logs may carry (the first 8 hex digits of its sha256)."""
    return hashlib.sha256(key.encode()).hexdigest()[:8]


def read_api_key(path: str | pathlib.Path) -> str:
    """The key on the first line of ``path`` (surrounding whitespace stripped)."""
    p = pathlib.Path(path).expanduser()
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInput(
            f"Cannot read the API key file {p}: {exc}. Expected a text file with the key on its "
            "first line.",
            field="api_key_file",
        ) from None
    lines = text.strip().splitlines()
    key = lines[0].strip() if lines else ""
    if not key:
        raise InvalidInput(
            f"The API key file {p} is empty. Expected the key on its first line.",
            field="api_key_file",
        )
    return key


def _digest(value: bytes) -> bytes:
    return hashlib.sha256(value).digest()


class Authenticator:
    """Who an ``Authorization`` header's bearer key is: the single key, or a scoped one."""

    def __init__(self, *, api_key: str | None = None, store: KeyStore | None = None) -> None:
        if api_key is None and store is None:
            raise InvalidInput(
                "An authenticator needs an API key or a keys file.", field="api_key_file"
            )
        self.store = store
        self._single: tuple[bytes, ApiKey] | None = None
        if api_key is not None:
            single = ApiKey(key_id(api_key), "api_key_file", (ADMIN,), "", "")
            self._single = (_digest(api_key.encode()), single)

    def identify(self, header: bytes | None) -> ApiKey | None:
        """The active key the header carries (None: missing, malformed, unknown, revoked or
        wrong, which the answer must not tell apart)."""
        if header is None:
            return None
        scheme, _, token = header.partition(b" ")
        token = token.strip()
        found = None
        # Each kind of key is always checked, and a wrong scheme too: every failure costs the
        # same comparisons as a wrong key.
        if self._single is not None:
            expected, single = self._single
            if hmac.compare_digest(_digest(token), expected):
                found = single
        if self.store is not None:
            found = self.store.verify(token) or found
        return found if scheme.lower() == b"bearer" else None


def default_secret_file(keys_file: str | pathlib.Path) -> pathlib.Path:
    """``MODELSCALE_SECRET_FILE``, else the file ``secret`` beside ``keys_file``."""
    configured = get_settings().secret_file
    if configured is not None:
        return configured.expanduser()
    return pathlib.Path(keys_file).expanduser().parent / SECRET_NAME


def load_authenticator(spec: DeploymentSpec) -> Authenticator | None:
    """The keys ``spec.auth`` names (None: the server is open).

    The secret of a keys file is ``server.secret_file``, else ``MODELSCALE_SECRET_FILE``, else
    the file ``secret`` beside the keys file (where ``modelscale keys create`` makes it).
    Files that others can read are warned about (``FileModeWarning``).
    """
    auth = spec.auth
    api_key = read_api_key(auth.api_key_file) if auth.api_key_file is not None else None
    store = None
    if auth.keys_file is not None:
        path = spec.server.secret_file or default_secret_file(auth.keys_file)
        if not path.is_file():
            raise InvalidInput(
                f"auth.keys_file ({auth.keys_file}) needs the server secret its keys were "
                f"hashed with, and there is none at {path}. Set server.secret_file in deploy.yaml "
                "(or MODELSCALE_SECRET_FILE) to the secret file `modelscale keys create` made "
                "(it makes one beside the keys file when none is given).",
                field="server.secret_file",
            )
        check_private(path, what="The server secret file")
        store = KeyStore(auth.keys_file, pepper=pepper_of(read_secret(path)))
    if api_key is None and store is None:
        return None
    return Authenticator(api_key=api_key, store=store)
