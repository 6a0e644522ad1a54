"""The credential scanner behind ``Detector.find``: private-key blocks, tokens with a known
prefix, passwords in URLs, and high-entropy values after secret words.

Appends ``(start, end, "CREDENTIAL", score)`` to a list of hits, as the scanners of ``scan`` do (``scan`` holds the e-mail, number and hex scanners).
Code is read as such: a call (``SecretStr(``), a name (``MonthDayNanoIntervalType``), a masked
value or a template's slot is no secret.
"""

from __future__ import annotations

from modelscale.privacy import checks
from modelscale.privacy.patterns import (
    CASE_WORD,
    CODE_CALL,
    CREDENTIAL_ANCHORS,
    CREDENTIAL_TOKEN,
    CREDENTIAL_WORDS,
    EMAIL_DOMAIN,
    IDENTIFIER,
    PASSWORD_WORD,
    PEM_BEGIN,
    PLACEHOLDER,
    SECRET_ASSIGNMENT,
    URL_USERINFO,
)

__all__ = ["scan_credentials"]

Hit = tuple[int, int, str, float]

_HEX = frozenset("0123456789abcdefABCDEF")
# Characters that mask a value ("********", "xxxx-xxxx", "••••").
_MASK = frozenset("*xX#\u2022.-_/")
_SLOT_OPENERS = frozenset("<{$%[")


def scan_credentials(text: str, hits: list[Hit]) -> None:
    """Private keys, tokens with a known prefix, and high-entropy values after secret words."""
    begin = text.find("-----BEGIN ")
    while begin != -1:
        head = PEM_BEGIN.match(text, begin)
        # The matching END line found by substring search: a lazy ".*?" to it would rescan the
        # rest of the text for every BEGIN without an END.
        end = text.find(f"-----END {head['label']}-----", begin) if head is not None else -1
        if head is not None and end != -1:
            end += len(head["label"]) + 14
            hits.append((begin, end, "CREDENTIAL", 0.99))
            begin = text.find("-----BEGIN ", end)
        else:
            begin = text.find("-----BEGIN ", begin + 11)
    for anchor, back in CREDENTIAL_ANCHORS:
        for a in anchor.finditer(text):
            at = a.start() - back
            m = CREDENTIAL_TOKEN.match(text, at) if at >= 0 else None
            # "sk-learn-compatible-estimators" is a phrase, not a key.
            if m is not None and not (m["openai"] and not _random_looking(m.group(), 3.5)):
                hits.append((m.start(), m.end(), "CREDENTIAL", 0.95 if m["jwt"] else 0.9))
    scheme = text.find("://")
    while scheme != -1:
        u = URL_USERINFO.match(text, scheme)
        if u is not None and not _placeholder(u["password"]):
            hits.append((u.start("password"), u.end("password"), "CREDENTIAL", 0.9))
        scheme = text.find("://", scheme + 3)
    lowered = text.lower()
    if len(lowered) != len(text):
        # Lower-casing changed the length (a rare Unicode letter): offsets would not line up.
        lowered = text
    for word in CREDENTIAL_WORDS:
        i = lowered.find(word)
        while i != -1:
            m = SECRET_ASSIGNMENT.match(text, i)
            i += len(word)
            if m is not None and (
                m["sep"] is not None or not _glued(text, m.end("word"), m.start("value"))
            ):
                # Words inside this value are part of it ("key=key=..."): each character of
                # the text is read as a value once.
                i = max(i, m.end())
                # A full stop after the value ends the sentence, not the secret.
                value = m["value"].rstrip(".")
                # A short password counts only after a password word and a ":", "=" or "is".
                password = m["sep"] is not None and PASSWORD_WORD.match(m["word"]) is not None
                score = _secret_score(value, password=password)
                if score:
                    start = m.start("value")
                    hits.append((start, start + len(value), "CREDENTIAL", score))
            i = lowered.find(word, i)


def _random_looking(value: str, bits: float) -> bool:
    return checks.shannon_entropy(value) >= bits and any(c.isdigit() for c in value)


def _glued(text: str, word_end: int, value_start: int) -> bool:
    """Whether a value follows its secret word with nothing but quotes or a bracket between:
    "user:password@host", "m.secret_bool.get_secret_value()", "`SecretStr`][pydantic..." name
    things, they assign nothing."""
    # Between them stand at most quotes, a "]" and spaces (SECRET_ASSIGNMENT without a sign).
    return not text[word_end:value_start].strip("\"'`]")


def _placeholder(value: str) -> bool:
    """Whether a value stands for a secret without being one: masked ("**********"), or a
    template's slot ("<password>", "${DB_PASSWORD}", "[REDACTED]")."""
    return (
        "****" in value
        or _MASK.issuperset(value)
        or (value[:1] in _SLOT_OPENERS and PLACEHOLDER.fullmatch(value) is not None)
    )


def _identifier(value: str) -> bool:
    """Whether a value of letters is a name in code, or a dotted path of names
    ("MonthDayNanoIntervalType", "_duckdb._sqltypes.DuckDBPyType").

    Its words are whole words: none of one letter, four letters or more on average. Random
    letters switch case every two letters or so; of 20 to 48 random letters, about one in 170
    reads as a name, and a random key of that length is all letters one time in 70 or fewer.
    """
    if IDENTIFIER.fullmatch(value) is None:
        return False
    words = CASE_WORD.findall(value)
    return all(len(w) >= 2 for w in words) and sum(map(len, words)) >= 4 * len(words)


def _secret_score(value: str, *, password: bool) -> float:
    if "://" in value or value.isdigit() or EMAIL_DOMAIN.search(value):
        return 0.0
    score = 0.0
    if len(value) >= 20 and checks.char_classes(value) >= 2:
        # Hexadecimal has 4 bits per character at most; random hex stays a little under it.
        bits = 3.0 if _HEX.issuperset(value) else 3.5
        if checks.shannon_entropy(value) >= bits and not _identifier(value):
            score = 0.8
    if (
        not score
        and password
        and checks.char_classes(value) >= 3
        and checks.shannon_entropy(value) >= 2.5
    ):
        score = 0.75
    # Checked last, on the few values that look random: a call in code
    # ("SecretStr('**********')", "PrimaryKeyConstraint(") or a slot is no secret.
    if score and (("(" in value and CODE_CALL.match(value) is not None) or _placeholder(value)):
        return 0.0
    return score
