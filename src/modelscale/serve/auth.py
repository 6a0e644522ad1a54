"""API keys: reading the key file. The check itself is the pipeline's auth stage (``stages``)."""

from __future__ import annotations

import pathlib

from modelscale.errors import InvalidInput

__all__ = ["read_api_key"]


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
