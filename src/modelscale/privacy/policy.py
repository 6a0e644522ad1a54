"""Field policies: what happens to a value before anything stores it.

``keep`` as is; ``drop`` left out; ``mask`` all but its last 4 characters starred; ``hash`` its
HMAC-SHA256 under a key derived from the server secret (so equal values still join: the same
user's requests, an outcome posted later by the same unit, without the value itself being
kept); ``redact`` the personal data the detector finds in it replaced by ``<KIND>``.

Unlisted text gets the default: a value that is wholly one piece of personal data (a unit id
that is an e-mail address) is hashed when a secret is configured, so joins keep working, and
redacted otherwise; personal data inside longer text is redacted.
"""

from __future__ import annotations

import hashlib
import hmac
from collections import Counter
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from modelscale.privacy.detect import Detector

__all__ = ["DROP", "HASH_PREFIX", "Redactor", "mask"]

DROP = object()
"""What ``Redactor.apply`` returns for a value the policy leaves out."""

HASH_PREFIX = "hmac:"

_MAX_ELEMENTS = 4096
"""Numeric tensors longer than this are not copied into a payload (only their shape)."""


def mask(text: str) -> str:
    """All but the last 4 characters starred (all of a value of 4 or fewer)."""
    if len(text) <= 4:
        return "*" * len(text)
    return "*" * (len(text) - 4) + text[-4:]


class Redactor:
    """Applies policies with one detector and (when configured) one hash key; counts findings."""

    def __init__(self, detector: Detector, hash_key: bytes | None) -> None:
        self.detector = detector
        self.hash_key = hash_key
        self.found: Counter[str] = Counter()
        """Personal data found, by kind, since start."""

    def hash(self, value: str) -> str:
        """``hmac:`` and the first 32 hex digits of the value's HMAC-SHA256."""
        if self.hash_key is None:
            raise RuntimeError("hash policies need the server secret")  # checked at build
        digest = hmac.new(self.hash_key, value.encode("utf-8"), hashlib.sha256).hexdigest()
        return HASH_PREFIX + digest[:32]

    def redact(self, text: str, found: Counter[str] | None = None) -> str:
        """``text`` with every finding replaced by ``<KIND>``."""
        out, counts = self.detector.redact(text)
        if counts:
            self.found.update(counts)
            if found is not None:
                found.update(counts)
        return out

    def default(self, text: str, found: Counter[str] | None = None) -> str:
        """Hash a value that is wholly personal data (when there is a key); redact the rest."""
        spans = self.detector.find(text)
        if not spans:
            return text
        kinds = Counter(s.kind for s in spans)
        self.found.update(kinds)
        if found is not None:
            found.update(kinds)
        stripped = text.strip()
        whole = len(spans) == 1 and text[spans[0].start : spans[0].end].strip() == stripped
        if whole and self.hash_key is not None:
            return self.hash(stripped)
        parts, at = [], 0
        for s in spans:
            parts.append(text[at : s.start])
            parts.append(f"<{s.kind}>")
            at = s.end
        parts.append(text[at:])
        return "".join(parts)

    def apply(self, action: str | None, value: Any, found: Counter[str] | None = None) -> Any:
        """``value`` (a string, number, list, mapping or array) under ``action`` (None: default).

        Returns ``DROP`` for a value to leave out.
        """
        if action == "drop":
            return DROP
        if action == "keep":
            return _plain(value)
        if isinstance(value, np.ndarray):
            if value.dtype.kind in "OUS":
                value = value.tolist()
            elif action in (None, "redact"):
                return _plain(value)  # numbers carry no spans to find
            else:
                value = value.tolist()
        if isinstance(value, Mapping):
            out = {}
            for k, v in value.items():
                got = self.apply(action, v, found)
                if got is not DROP:
                    out[str(k)] = got
            return out
        if isinstance(value, list | tuple):
            return [self.apply(action, v, found) for v in value]
        if value is None or isinstance(value, bool):
            return value
        if isinstance(value, int | float) and action in (None, "redact"):
            return value
        text = value if isinstance(value, str) else str(value)
        if action == "mask":
            return mask(text)
        if action == "hash":
            return self.hash(text)
        if action == "redact":
            return self.redact(text, found)
        return self.default(text, found)

    def fields(
        self, policy: Mapping[str, str], value: Any, found: Counter[str] | None = None
    ) -> Any:
        """A JSON value with ``policy``'s fields (matched by key, at any depth) under their
        action and every other string under the default."""
        if isinstance(value, Mapping):
            out = {}
            for k, v in value.items():
                action = policy.get(k)
                got = (
                    self.apply(action, v, found)
                    if action is not None
                    else self.fields(policy, v, found)
                )
                if got is not DROP:
                    out[k] = got
            return out
        if isinstance(value, list):
            return [self.fields(policy, v, found) for v in value]
        if isinstance(value, str):
            return self.default(value, found)
        return value


def _plain(value: Any) -> Any:
    """A JSON-ready copy (arrays as nested lists; long numeric ones by shape only)."""
    if isinstance(value, np.ndarray):
        if value.dtype.kind not in "OUS" and value.size > _MAX_ELEMENTS:
            return {"shape": list(value.shape), "dtype": value.dtype.name}
        return value.tolist()
    return value
