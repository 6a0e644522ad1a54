"""Reading JSON from a running server's routes, for the commands that take a server's URL."""

from __future__ import annotations

import pathlib
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

import orjson

from modelscale.errors import InvalidInput

__all__ = ["fetch_json", "is_url", "read_api_key"]


def is_url(target: str) -> bool:
    """Whether ``target`` is a server's URL (not a path or a model name)."""
    return target.startswith(("http://", "https://"))


def read_api_key(path: pathlib.Path | None, *, remote: bool) -> str | None:
    """The API key in the first line of ``path`` (None without one)."""
    if path is None:
        return None
    if not remote:
        raise InvalidInput(
            "--api-key-file is for a server's URL, not a directory or a model.",
            field="api-key-file",
        )
    try:
        return path.read_text(encoding="utf-8").splitlines()[0].strip()
    except (OSError, IndexError, UnicodeDecodeError) as exc:
        raise InvalidInput(
            f"cannot read an API key from {path}: {exc}", field="api-key-file"
        ) from None


def fetch_json(
    url: str, route: str, key: str | None, params: dict[str, Any], *, post: Any = None
) -> Any:
    """GET ``route`` of the server at ``url`` (POST ``post`` as JSON when given); its JSON, or
    InvalidInput naming what went wrong."""
    query = urllib.parse.urlencode({k: v for k, v in params.items() if v is not None})
    request = urllib.request.Request(f"{url.rstrip('/')}{route}" + (f"?{query}" if query else ""))
    if post is not None:
        request.data = orjson.dumps(post)
        request.method = "POST"
        request.add_header("Content-Type", "application/json")
    if key:
        request.add_header("Authorization", f"Bearer {key}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return orjson.loads(response.read())
    except urllib.error.HTTPError as exc:
        try:
            message = orjson.loads(exc.read()).get("error", exc.reason)
        except (orjson.JSONDecodeError, AttributeError):
            message = exc.reason
        raise InvalidInput(f"{url} answered {exc.code}: {message}", field="target") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise InvalidInput(
            f"cannot reach {url}: {reason}. Is `modelscale serve` running there?", field="target"
        ) from None
    except orjson.JSONDecodeError:
        raise InvalidInput(
            f"{url}{route} did not answer JSON; is it a modelscale server?", field="target"
        ) from None
