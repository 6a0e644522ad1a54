"""Optional API-key authentication: ``Authorization: Bearer <key>`` on everything but health checks.

Keys are compared in constant time, over their sha256 digests, so neither the content nor the
length of the key leaks through response timing.
"""

from __future__ import annotations

import hashlib
import hmac
import pathlib

from starlette.types import ASGIApp, Receive, Scope, Send

from modelscale.errors import InvalidInput

__all__ = ["OPEN_PATHS", "ApiKeyAuth", "read_api_key"]

OPEN_PATHS = frozenset({"/v2/health/live", "/v2/health/ready"})
"""Probes must work without credentials (orchestrators do not hold the key)."""


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


class ApiKeyAuth:
    """ASGI middleware answering 401 unless the request carries the bearer key."""

    def __init__(self, app: ASGIApp, *, key: str) -> None:
        self.app = app
        self._digest = _digest(key.encode())

    def allowed(self, header: bytes | None) -> bool:
        """Whether an ``Authorization`` header value carries the key."""
        if header is None:
            return False
        scheme, _, token = header.partition(b" ")
        ok_scheme = scheme.lower() == b"bearer"
        # Always compare, so a wrong scheme costs the same time as a wrong key.
        ok_token = hmac.compare_digest(_digest(token.strip()), self._digest)
        return ok_scheme and ok_token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Let health checks and authorised requests through; answer others 401."""
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        header = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                header = value
                break
        if self.allowed(header):
            await self.app(scope, receive, send)
            return
        body = (
            b'{"error":"missing or wrong API key; send the header Authorization: Bearer <key>",'
            b'"field":"Authorization"}'
        )
        await send(
            {
                "type": "http.response.start",
                "status": 401,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"www-authenticate", b'Bearer realm="modelscale"'),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
