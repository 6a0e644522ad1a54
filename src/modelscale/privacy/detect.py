"""Find personal data and secrets in text, offline: e-mail, phone, card, IBAN, SSN, addresses.

Candidates come from a few regular expressions with cheap prefilters (no "@", no e-mail scan),
then each is validated (Luhn, mod 97, numbering plans, address ranges) and scored; words near
a candidate move its score ("SSN" raises a nine-digit number, "order" lowers it), and a plain
date counts as a date of birth only next to a birth word. Text of programs is read as such: a
bare number passed to a function or stored in a list is no phone or card number without words
that say so, a slice ("x[::2]") is no IPv6 address and "SecretStr(" no secret. Nothing here
opens a connection.

    >>> Detector().redact("Mail jane.doe@example.com or call +44 20 7946 0958.")
    ('Mail <EMAIL> or call <PHONE>.', {'EMAIL': 1, 'PHONE': 1})
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from modelscale.errors import InvalidInput, invalid_parameter
from modelscale.privacy import checks, scan
from modelscale.privacy.credentials import scan_credentials

__all__ = ["KINDS", "Detector", "Span"]

KINDS: tuple[str, ...] = (
    "CREDENTIAL",
    "CREDIT_CARD",
    "DATE_OF_BIRTH",
    "EMAIL",
    "IBAN",
    "IP_ADDRESS",
    "MAC_ADDRESS",
    "PHONE",
    "US_SSN",
)

_KIND_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*\Z")
_NUMERIC_KINDS = frozenset(
    {"CREDIT_CARD", "DATE_OF_BIRTH", "IBAN", "IP_ADDRESS", "PHONE", "US_SSN"}
)
# A match of a user pattern outranks the built-in kinds it overlaps: the caller asked for it.
_USER_SCORE = 1.0


@dataclass(frozen=True, slots=True)
class Span:
    """One detected entity: ``text[start:end]`` is of ``kind``, with confidence ``score``."""

    start: int
    end: int
    kind: str
    score: float


class Detector:
    """Detects personal data in text with patterns, checksums and context words.

    Args:
        kinds: The built-in kinds to detect (see ``KINDS``); None detects all of them. User
            ``patterns`` always run.
        patterns: Extra kinds, each a regular expression whose matches are reported as that kind
            (score 1.0, so they win over built-in matches they overlap).
        min_score: Matches scoring below this are dropped, in [0, 1].
        context: Whether the words and the code around a match move its score: "phone" raises
            a number, "order" lowers it, and so does code around a bare number (an argument,
            an assignment, a list element, a doctest line). Without context, a date is never
            scored as a date of birth above 0.2.

    The first detector of a process loads libphonenumber's numbering plans and python-stdnum's
    IBAN formats (about 0.2 s), so that no text pays for them later. A detector holds no state
    between texts: one instance can serve every thread.

    Raises:
        InvalidInput: An unknown kind, a pattern that does not compile or matches the empty
            string, or ``min_score`` outside [0, 1].
    """

    __slots__ = ("_context", "_min_score", "_patterns", "_want")

    def __init__(
        self,
        *,
        kinds: Iterable[str] | None = None,
        patterns: Mapping[str, str] | None = None,
        min_score: float = 0.5,
        context: bool = True,
    ) -> None:
        user = _compile_patterns(patterns)
        self._patterns = user
        self._want = _select_kinds(kinds, {name for name, _ in user})
        if (
            isinstance(min_score, bool)
            or not isinstance(min_score, int | float)
            or math.isnan(min_score)
            or not 0.0 <= min_score <= 1.0
        ):
            raise invalid_parameter("min_score", "a number in [0, 1]", min_score, where="Detector")
        self._min_score = float(min_score)
        self._context = bool(context)
        checks.load_registries()

    @property
    def kinds(self) -> tuple[str, ...]:
        """The built-in kinds this detector looks for, then the kinds of its user patterns."""
        return tuple(k for k in KINDS if k in self._want) + tuple(k for k, _ in self._patterns)

    def find(self, text: str) -> list[Span]:
        """The entities in ``text``, sorted by position and not overlapping.

        Where matches overlap, the higher score wins, then the longer match.

        Raises:
            InvalidInput: ``text`` is not a string.
        """
        if not isinstance(text, str):
            raise InvalidInput(
                f"Detector.find takes a str. Got {type(text).__name__} instead; decode bytes first.",
                field="text",
            )
        want = self._want
        context = self._context
        hits: list[scan.Hit] = []
        if "EMAIL" in want and "@" in text:
            scan.scan_email(text, hits)
        if not want.isdisjoint(_NUMERIC_KINDS):
            scan.scan_numeric(text, want, context, hits)
        if ("IP_ADDRESS" in want or "MAC_ADDRESS" in want) and (
            ":" in text or "-" in text or "." in text
        ):
            scan.scan_hex(text, want, context, hits)
        if "CREDENTIAL" in want:
            scan_credentials(text, hits)
        for kind, rx in self._patterns:
            for m in rx.finditer(text):
                if m.end() > m.start():
                    hits.append((m.start(), m.end(), kind, _USER_SCORE))
        return _resolve(hits, self._min_score)

    def redact(self, text: str) -> tuple[str, dict[str, int]]:
        """``text`` with each entity replaced by ``<KIND>``, and how many of each kind.

        Raises:
            InvalidInput: ``text`` is not a string.
        """
        spans = self.find(text)
        counts: dict[str, int] = {}
        parts: list[str] = []
        last = 0
        for span in spans:
            parts.append(text[last : span.start])
            parts.append(f"<{span.kind}>")
            counts[span.kind] = counts.get(span.kind, 0) + 1
            last = span.end
        parts.append(text[last:])
        return "".join(parts), counts


def _resolve(hits: list[scan.Hit], min_score: float) -> list[Span]:
    hits = [h for h in hits if h[3] >= min_score]
    hits.sort()
    if any(hits[i][1] > hits[i + 1][0] for i in range(len(hits) - 1)):
        kept: list[scan.Hit] = []
        for hit in sorted(hits, key=lambda h: (-h[3], h[0] - h[1], h[0])):
            start, end = hit[0], hit[1]
            if all(end <= k[0] or start >= k[1] for k in kept):
                kept.append(hit)
        hits = sorted(kept)
    return [Span(start, end, kind, round(score, 3)) for start, end, kind, score in hits]


def _compile_patterns(patterns: Mapping[str, str] | None) -> list[tuple[str, re.Pattern[str]]]:
    if patterns is None:
        return []
    if not isinstance(patterns, Mapping):
        raise invalid_parameter(
            "patterns", "a mapping of kind name to regular expression", patterns, where="Detector"
        )
    compiled = []
    for kind, pattern in patterns.items():
        if not isinstance(kind, str) or _KIND_NAME.match(kind) is None:
            raise InvalidInput(
                f"The kind name {kind!r} in 'patterns' of Detector is not valid. Expected a name "
                "of letters, digits and underscores that starts with a letter, e.g. 'EMPLOYEE_ID'.",
                field="patterns",
            )
        if not isinstance(pattern, str):
            raise InvalidInput(
                f"The pattern of kind {kind!r} in 'patterns' of Detector must be a str. Got "
                f"{type(pattern).__name__} instead.",
                field="patterns",
            )
        try:
            rx = re.compile(pattern)
        except re.error as exc:
            raise InvalidInput(
                f"The pattern of kind {kind!r} in 'patterns' of Detector is not a valid regular "
                f"expression ({exc}): {pattern!r}. Expected a Python 're' pattern, e.g. "
                r"r'EMP-\d{6}'.",
                field="patterns",
            ) from None
        if rx.fullmatch("") is not None:
            raise InvalidInput(
                f"The pattern of kind {kind!r} in 'patterns' of Detector matches the empty "
                f"string: {pattern!r}. Expected a pattern that matches at least one character.",
                field="patterns",
            )
        compiled.append((kind, rx))
    return compiled


def _select_kinds(kinds: Iterable[str] | None, user: set[str]) -> frozenset[str]:
    if kinds is None:
        return frozenset(KINDS)
    if isinstance(kinds, str):
        # A lone string would be read letter by letter.
        kinds = [kinds]
    try:
        chosen = [str(k).upper() for k in kinds]
    except TypeError:
        raise invalid_parameter(
            "kinds", f"an iterable of kind names from {', '.join(KINDS)}", kinds, where="Detector"
        ) from None
    unknown = [k for k in chosen if k not in KINDS and k not in {u.upper() for u in user}]
    if unknown:
        raise InvalidInput(
            f"The 'kinds' parameter of Detector names unknown kind(s) {', '.join(unknown)}. "
            f"Expected some of {', '.join(KINDS)}, or a kind of 'patterns'.",
            field="kinds",
        )
    return frozenset(chosen)
