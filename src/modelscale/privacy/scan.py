"""The scanners behind ``Detector.find``: candidates by pattern, then validation and scoring.

A scanner appends ``(start, end, kind, score)`` tuples to a list; the detector drops those below
its threshold and resolves overlaps. A score starts from how specific the pattern and its checks
are (a Luhn-valid number with a card network's prefix, a phone number in an assigned range) and
moves with the words around the match when context scoring is on (``context``).
"""

from __future__ import annotations

import datetime
import re

from modelscale.privacy import checks
from modelscale.privacy.context import (
    context_delta,
    in_code,
    section_number,
    subscript_slice,
    url_userinfo,
)
from modelscale.privacy.patterns import (
    DATE_NUMERIC,
    DATE_WORDS,
    EMAIL_DOMAIN,
    HEX_BLOCK,
    IPV4,
    MONTHS,
    NUMERIC,
    VERSION_BEFORE,
)

__all__ = [
    "Hit",
    "scan_email",
    "scan_hex",
    "scan_numeric",
]

Hit = tuple[int, int, str, float]

_HEX = frozenset("0123456789abcdefABCDEF")
# Anchors of hexadecimal blocks. Each starts with a literal, which the regex engine finds much
# faster than a character class: ":1a:" or "::", "-1A-2B-", ".3456.789a".
_COLON_GROUP = re.compile(r":[0-9A-Fa-f]{0,4}:")
_DASH_GROUP = re.compile(r"-[0-9A-Fa-f]{2}-[0-9A-Fa-f]{2}-")
_DOT_GROUP = re.compile(r"\.[0-9A-Fa-f]{4}\.[0-9A-Fa-f]{4}")
_HEX_COLON = _HEX | {":"}
_HEX_RUN = re.compile(r"[0-9A-Fa-f:.]*")
_GLUED = frozenset("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_:")
_GLUED_PAIRS = frozenset(f"{sep}{ch}" for sep in "-." for ch in _HEX)
_LOCAL_PART = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._%+-")
_NON_DIGIT = re.compile(r"[^0-9]")
_SSN_SHAPE = re.compile(r"([0-9]{3})([\- ])([0-9]{2})\2([0-9]{4})\Z")
# Gaps that separate two numbers rather than the groups of one: " / ", "  ", " - ".
_WIDE_GAP = re.compile(r"\s*/\s*|\s{2,}|\s[\-\u2013]\s|\u00a0{2,}")
_CARD_SEPARATORS = frozenset("0123456789 -")
# A decimal number among the groups ("10.01 31.25", "(0 - 1) -9.480"): a row of measurements.
# Phone numbers written with dots have a dot between every group ("06.12.34.56.78").
_DECIMAL = re.compile(r"(?<![0-9.])[0-9]+\.[0-9]+(?![0-9.])")
# A year in brackets: "pp. 211-252 (1964", "30 (1981) 91-97", "(2006) 22 (17)", a citation.
# Area codes in brackets are of three digits or start with a trunk 0: "(415)", "(0161)".
_CITED_YEAR = re.compile(r"\((?:1[5-9]|20)[0-9]{2}(?:\)|\Z)")
_DIGIT_GROUP = re.compile(r"[0-9]+")
_TWO_DIGITS = re.compile(r"[0-9]{2}")
# What a numeric scan match runs to at most (patterns.NUMERIC), and the separators it allows.
_RUN_DIGITS = 24
_RUN_GAP = frozenset(" -./()\u00a0")
# How much code around a bare number lowers its score as a phone or card number.
_CODE_PENALTY = 0.4


def _score(kind: str, base: float, text: str, start: int, end: int, context: bool) -> float:
    if context:
        base += context_delta(kind, text, start, end)
    return min(1.0, max(0.0, base))


def scan_email(text: str, hits: list[Hit]) -> None:
    """E-mail addresses, found from each "@" outwards (cheaper than a scan of every word)."""
    at = text.find("@")
    while at != -1:
        m = EMAIL_DOMAIN.match(text, at)
        if m is not None:
            start = at
            while start > 0 and text[start - 1] in _LOCAL_PART:
                start -= 1
            while start < at and text[start] == ".":
                start += 1
            if start < at and not url_userinfo(text, start):
                hits.append((start, m.end(), "EMAIL", 0.95))
        at = text.find("@", at + 1)


def _host_in_network(parts: tuple[str, ...], prefix: int) -> bool:
    """Whether "a.b.c.d/prefix" names a host ("192.168.1.17/24", an interface's address) rather
    than a network ("10.0.0.0/8", "192.0.2.0/27"), which is nobody's address."""
    if prefix > 32:
        return False
    address = 0
    for part in parts:
        address = address << 8 | int(part)
    return prefix == 32 or address & ((1 << (32 - prefix)) - 1) != 0


def _birth_date(date: str) -> bool:
    m = DATE_NUMERIC.match(date)
    if m is None:
        return False
    if m["y1"]:
        return checks.plausible_birth_date(int(m["y1"]), int(m["a1"]), int(m["b1"]))
    year = int(m["y2"])
    if year < 100:
        # Two-digit years: the latest year that is not in the future.
        this_year = datetime.date.today().year
        year += 2000 if 2000 + year <= this_year else 1900
    a, b = int(m["a2"]), int(m["b2"])
    return checks.plausible_birth_date(year, b, a) or checks.plausible_birth_date(year, a, b)


def _word_date(text: str, year_start: int, year_end: int, context: bool) -> list[Hit]:
    """A date with a month name ("April 23, 1987") ending at a year, next to a birth word."""
    lo = max(0, year_start - 32)
    window = text[lo:year_end].lower()
    m = DATE_WORDS.search(window)
    if m is None or (m.start() == 0 and lo > 0 and text[lo - 1].isalnum()):
        return []
    start = lo + m.start()
    if len(window) != year_end - lo or not checks.plausible_birth_date(
        int(text[year_start:year_end]), MONTHS[m["m1"] or m["m2"]], int(m["d1"] or m["d2"])
    ):
        return []
    birth = context and context_delta("DATE_OF_BIRTH", text, start, year_end) > 0
    return [(start, year_end, "DATE_OF_BIRTH", 0.9 if birth else 0.2)]


def _numeric(
    text: str, main: str, start: int, ext: int, want: frozenset[str], context: bool
) -> list[Hit]:
    """Classify one numeric candidate ``main`` (at ``start``; ``ext`` more characters of
    extension follow it)."""
    end = start + len(main)
    if main.isdigit():
        digits = main
        return _digits(text, main, digits, start, end, ext, want, context)
    four = IPV4.match(main) if main.count(".") == 3 else None
    if four is not None:
        parts = four.group(1, 2, 3, 4)
        if (
            "IP_ADDRESS" in want
            and checks.ipv4_valid(parts)
            # 0.0.0.0, 255.255.255.255 and netmasks ("255.255.255.224") are no host's address.
            and parts[0] not in ("0", "255")
            and (four["prefix"] is None or _host_in_network(parts, int(four["prefix"])))
            and VERSION_BEFORE.search(text, max(0, start - 16), start) is None
            and not section_number(text, start, end)
        ):
            score = _score("IP_ADDRESS", 0.8, text, start, end, context)
            return [(start, end, "IP_ADDRESS", score)]
        return []
    date = DATE_NUMERIC.match(main)
    if date is not None and (date.end() == len(main) or main[date.end()] == " "):
        # A date is never a phone or card number, with or without birth words near it.
        if "DATE_OF_BIRTH" in want and _birth_date(date.group()):
            date_end = start + date.end()
            base = 0.2
            if context and context_delta("DATE_OF_BIRTH", text, start, date_end) > 0:
                base = 0.9
            return [(start, date_end, "DATE_OF_BIRTH", base)]
        return []
    if len(main) == 14 and main[4] == main[9] == "." and main.count(".") == 2:
        return []  # "0012.3456.7890", a MAC address in Cisco's notation (scan_hex)
    ssn = _SSN_SHAPE.match(main) if len(main) == 11 else None
    if ssn is not None:
        area, sep, group, serial = ssn.groups()
        if "US_SSN" in want and checks.ssn_valid(area, group, serial):
            base = 0.6 if sep == "-" else 0.45
            return [(start, end, "US_SSN", _score("US_SSN", base, text, start, end, context))]
        return []
    return _digits(text, main, _NON_DIGIT.sub("", main), start, end, ext, want, context)


def _digits(
    text: str,
    main: str,
    digits: str,
    start: int,
    end: int,
    ext: int,
    want: frozenset[str],
    context: bool,
) -> list[Hit]:
    """Classify a candidate that is no address, date or dashed SSN by its digits."""
    n = len(digits)
    if n < 7:
        if (
            n == 4
            and main[:2] in ("19", "20")
            and "DATE_OF_BIRTH" in want
            # A space comes before the year of a written date ("April 23, 1987").
            and text[start - 1 : start] == " "
        ):
            return _word_date(text, start, end, context)
        return []
    found: list[Hit] = []
    if (
        "CREDIT_CARD" in want
        and 12 <= n <= 19
        and _CARD_SEPARATORS.issuperset(main)
        and checks.luhn_valid(digits)
    ):
        # An issuer's prefix makes it a card; without one, only card words near it do.
        base = 0.45 if checks.card_issuer(digits) is None else 0.7 if n == 12 else 0.85
        delta = context_delta("CREDIT_CARD", text, start, end) if context else 0.0
        if context and delta <= 0 and main == digits and in_code(text, start, end):
            # A long argument or assignment in code passes Luhn one time in ten:
            # "default_rng(348932549825235)" is a seed.
            delta -= _CODE_PENALTY
        card = min(1.0, max(0.0, base + delta))
        if card >= 0.5:
            return [(start, end, "CREDIT_CARD", card)]
    # Nine bare digits are a social security number only when the words say so.
    if (
        "US_SSN" in want
        and n == 9
        and main == digits
        and checks.ssn_valid(digits[:3], digits[3:5], digits[5:])
    ):
        found.append((start, end, "US_SSN", _score("US_SSN", 0.2, text, start, end, context)))
    if (
        "PHONE" in want
        and n <= 15
        # Groups of 0s and 1s are binary ("1010 0000"); no numbering plan is made of them.
        and digits.strip("01")
        and (main == digits or not _not_a_phone(main))
    ):
        found.append(_phone(text, main, digits, start, end + ext, context))
    if found:
        return found
    if n > 15:
        # Two numbers side by side ("0161 496 0000 / 0161 496 0001", a card and its expiry).
        parts = []
        last = 0
        for gap in _WIDE_GAP.finditer(main):
            parts.append((last, gap.start()))
            last = gap.end()
        parts.append((last, len(main)))
        if len(parts) > 1:
            for a, b in parts:
                found += _numeric(text, main[a:b], start + a, 0, want, context)
    return found


def _not_a_phone(main: str) -> bool:
    """Whether the separators of a formatted candidate rule out a phone number, whatever the
    words say."""
    return (
        # A full stop ends a sentence or a number: "Springer, 2000. 197-232".
        ("." in main and (". " in main or _DECIMAL.search(main) is not None))
        or ("(" in main and _CITED_YEAR.search(main) is not None)
        # A ")" without its "(": the bracket was glued to a word ("S0378-4754(00)00270-6").
        or (")" in main and main.find("(", 0, main.index(")")) == -1)
        # Digits one by one are a list ("[1 7 5 2 9 4 3 6 0 8]"); phones group them.
        or _TWO_DIGITS.search(main) is None
    )


def _phone(text: str, main: str, digits: str, start: int, end: int, context: bool) -> Hit:
    """Score a phone candidate ``text[start:end]`` (with its extension) by the numbering plans,
    the words around it and whether it sits in code."""
    phone = checks.phone_check(main)
    formatted = main != digits
    n = len(digits)
    strong = False
    if phone is None:
        # Of no region's length: only phone words make it one.
        base = 0.3 if formatted else 0.25
    elif phone.valid:
        # Seven or eight bare digits are as often a count or a code as a local number.
        base = 0.85 if phone.international else 0.8 if formatted else 0.6 if n > 8 else 0.4
        strong = phone.international or formatted
    elif phone.international or (formatted and len(_DIGIT_GROUP.findall(main)) >= 3):
        # Three groups or more are written as a phone number is ("(243) 835-3751"), even in a
        # range no region has assigned.
        base = 0.55
    else:
        # Two groups of no assigned range are as often a page range, a year range or a
        # standard's number ("pp. 1174-1189", "RFCs 2045-2047", "IEEE Std 754-2008").
        base = 0.3
    if not context:
        return (start, end, "PHONE", base)
    # "the number 12345000" says little about a number that no plan validates.
    delta = context_delta("PHONE", text, start, end, weak=base >= 0.5 or strong)
    if delta <= 0 and not formatted and in_code(text, start, end):
        # A bare number that is an argument, an element or a value in code
        # ("np.array([2, 255, 2147483647])", "user_id=4155552671") is data of the program.
        delta -= _CODE_PENALTY
    return (start, end, "PHONE", min(1.0, max(0.0, base + delta)))


def scan_numeric(text: str, want: frozenset[str], context: bool, hits: list[Hit]) -> None:
    """Phone, card, SSN, IPv4, numeric dates and IBANs: one scan, then a check per candidate."""
    run_end = -_RUN_DIGITS
    for m in NUMERIC.finditer(text):
        start = m.start()
        if start - run_end <= 3 and _RUN_GAP.issuperset(text[run_end:start]):
            # The rest of a run of numbers longer than a match may be ("10 14 14 18 20 ... 48
            # 49", a row of a table): a piece of it is no phone number.
            run_end = m.end()
            continue
        if m["iban"] is not None:
            if "IBAN" in want:
                _iban(text, start, m.end(), hits)
            continue
        cand = m.group()
        if len(cand) >= _RUN_DIGITS and len(_NON_DIGIT.sub("", cand)) >= _RUN_DIGITS:
            run_end = m.end()
        ext = m["ext"]
        main = cand[: len(cand) - len(ext)] if ext else cand
        if main[0] == "(" and ")" not in main:
            main = main[1:]
            start += 1
        hits += _numeric(text, main, start, len(ext) if ext else 0, want, context)


def _iban(text: str, start: int, end: int, hits: list[Hit]) -> None:
    length = checks.iban_length(text[start : start + 2])
    if length is None:
        return
    # Cut the match after the country's length in characters, skipping the grouping spaces.
    seen = 0
    stop = start
    while stop < end and seen < length:
        if text[stop] != " ":
            seen += 1
        stop += 1
    if seen == length and checks.iban_valid(text[start:stop].replace(" ", "")):
        hits.append((start, stop, "IBAN", 0.95))


def scan_hex(text: str, want: frozenset[str], context: bool, hits: list[Hit]) -> None:
    """IPv6 and MAC addresses, matched back from the ":", "-" or "." between their groups."""
    taken = -1
    for m in _COLON_GROUP.finditer(text):
        if m.start() < taken:
            continue  # in a run of hexadecimal groups already checked
        start = m.start()
        while start > 0 and text[start - 1] in _HEX_COLON:
            start -= 1
        _hex_at(text, start, want, context, hits)
        run = _HEX_RUN.match(text, m.start())
        taken = run.end() if run is not None else m.end()
    if "MAC_ADDRESS" not in want:
        return
    for rx, lead in ((_DASH_GROUP, 2), (_DOT_GROUP, 4)):
        taken = -1
        for m in rx.finditer(text):
            if m.start() > taken and m.start() >= lead:
                taken = _hex_at(text, m.start() - lead, want, context, hits)


def _hex_at(text: str, start: int, want: frozenset[str], context: bool, hits: list[Hit]) -> int:
    """Check the hexadecimal block at ``start``; returns where it ends (or ``start``)."""
    if start > 0 and (text[start - 1].isalnum() or text[start - 1] in "_.:-"):
        return start
    m = HEX_BLOCK.match(text, start)
    if m is None:
        return start
    end = m.end()
    # Glued to more of the same ("00-1A-2B-3C-4D-5E-6F", "::ffff:192.0.2.300.1"): no address.
    if text[end : end + 1] in _GLUED or text[end : end + 2] in _GLUED_PAIRS:
        return start
    block = m.group()
    if ":" in block:
        groups = block.split(":")
        if len(groups) == 6 and all(len(g) == 2 for g in groups):
            if "MAC_ADDRESS" in want:
                hits.append((start, end, "MAC_ADDRESS", 0.85))
            return end
        # "a::b" and "::" are as often code as addresses; a digit or a third group says more.
        if (
            "IP_ADDRESS" in want
            and len(block) >= 3
            and (any(c.isdigit() for c in block) or len(groups) > 3)
            and not subscript_slice(text, start, end, groups)
            # A netmask ("ffff:ffff:ffff:ffff::") is no host's address, and one group before
            # "::" a prefix ("fe80::") or the mark of a literal block of reStructuredText
            # ("y > 0::").
            and not block.lower().startswith("ffff:ffff:")
            and not (block.endswith("::") and sum(1 for g in groups if g) <= 1)
            and checks.ipv6_valid(block)
        ):
            score = _score("IP_ADDRESS", 0.85, text, start, end, context)
            hits.append((start, end, "IP_ADDRESS", score))
            return end
        return start
    if "MAC_ADDRESS" in want:
        hits.append((start, end, "MAC_ADDRESS", 0.85 if "-" in block else 0.7))
    return end
