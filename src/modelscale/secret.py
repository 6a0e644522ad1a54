"""The server secret: 32 random bytes in a file of its own, from which purpose keys are derived.

The secret is never used directly: each use derives its own key with ``derive(secret, purpose)``
(HMAC-SHA256 keyed by the secret over the purpose's name), so one purpose's key says nothing about
another's. Purposes in use: ``api-keys`` (the pepper of the API key hashes) and ``privacy-hash``
(hashed request fields).

The file holds the bytes as hex on one line and is created with mode 0600. Where it lives is
deploy.yaml's ``server.secret_file``, else ``MODELSCALE_SECRET_FILE``.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import pathlib
import secrets
import stat
import warnings

from modelscale.errors import InvalidInput, ModelscaleWarning

__all__ = [
    "SECRET_BYTES",
    "FileModeWarning",
    "check_private",
    "create_secret",
    "derive",
    "read_secret",
]

SECRET_BYTES = 32
"""The size of a secret ``create_secret`` makes, and the least ``read_secret`` takes."""


class FileModeWarning(ModelscaleWarning):
    """A file that holds secrets (or hashes of them) can be read by other users."""


def check_private(path: str | pathlib.Path, *, what: str) -> None:
    """Warn (``FileModeWarning``) when ``path`` is readable or writable by group or others."""
    if os.name == "nt":  # POSIX permission bits mean nothing there
        return
    p = pathlib.Path(path)
    try:
        mode = p.stat().st_mode
    except OSError:
        return  # whoever reads it next reports why it cannot
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        warnings.warn(
            f"{what} {p} can be read by other users (mode {stat.S_IMODE(mode):04o}); "
            f"expected 0600. Fix it with: chmod 600 {p}",
            FileModeWarning,
            stacklevel=2,
        )


def read_secret(path: str | pathlib.Path) -> bytes:
    """The secret in ``path`` (hex text, at least 32 bytes)."""
    p = pathlib.Path(path).expanduser()
    try:
        text = p.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        raise InvalidInput(
            f"The secret file {p} does not exist. Create it with `modelscale keys create` "
            "(which makes one beside the keys file) or point server.secret_file "
            "(or MODELSCALE_SECRET_FILE) at an existing one.",
            field="secret_file",
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInput(
            f"Cannot read the secret file {p}: {exc}. Expected one line of hex digits.",
            field="secret_file",
        ) from None
    try:
        secret = bytes.fromhex(text)
    except ValueError:
        secret = b""
    if len(secret) < SECRET_BYTES:
        raise InvalidInput(
            f"The secret file {p} must hold at least {SECRET_BYTES} bytes as hex "
            f"({2 * SECRET_BYTES} hex digits) on one line. Got {len(text)} characters that are "
            "not that; make a new one with `modelscale keys create` (keys made with the old "
            "secret then stop working).",
            field="secret_file",
        )
    return secret


def create_secret(path: str | pathlib.Path) -> bytes:
    """Write a new random secret to ``path`` (mode 0600) and return it; never overwrites."""
    p = pathlib.Path(path).expanduser()
    secret = secrets.token_bytes(SECRET_BYTES)
    p.parent.mkdir(parents=True, exist_ok=True)
    try:
        # O_EXCL: replacing a secret silently would invalidate every key derived from it.
        fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise InvalidInput(
            f"The secret file {p} exists already; it is never overwritten (every key made with "
            "it would stop working). Use it, or remove it first to start afresh.",
            field="secret_file",
        ) from None
    except OSError as exc:
        raise InvalidInput(
            f"Cannot create the secret file {p}: {exc.strerror}. Expected a writable directory.",
            field="secret_file",
        ) from None
    with os.fdopen(fd, "w", encoding="ascii") as f:
        f.write(secret.hex() + "\n")
    return secret


def derive(secret: bytes, purpose: str) -> bytes:
    """The 32-byte key of ``purpose`` (e.g. ``"api-keys"``): HMAC-SHA256(secret, purpose)."""
    if not purpose:
        raise InvalidInput("A derived key needs a purpose, e.g. 'api-keys'.", field="purpose")
    return hmac.new(secret, purpose.encode("utf-8"), hashlib.sha256).digest()
