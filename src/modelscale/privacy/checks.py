"""Validators of detected candidates: checksums, number plans, address ranges, entropy.

Each check takes the candidate's text and answers cheaply; none of them touches the network
(libphonenumber's metadata and python-stdnum's IBAN registry ship with the packages).
"""

from __future__ import annotations

import datetime
import functools
import ipaddress
import itertools
import math
import re
import string
from collections import Counter

import phonenumbers
from stdnum import numdb

__all__ = [
    "PHONE_REGIONS",
    "PhoneCheck",
    "card_issuer",
    "char_classes",
    "iban_formats",
    "iban_length",
    "iban_valid",
    "ipv4_valid",
    "ipv6_valid",
    "load_registries",
    "luhn_valid",
    "phone_check",
    "plausible_birth_date",
    "shannon_entropy",
    "ssn_valid",
]

# The regions whose national formats (no "+" and country code) are tried, most common first.
PHONE_REGIONS = ("US", "GB", "DE", "FR", "ES", "IT", "NL", "IN")

_BBAN_CLASS = {"n": "[0-9]", "a": "[A-Z]", "c": "[A-Za-z0-9]"}
_IBAN_LETTERS = str.maketrans({ch: str(int(ch, 36)) for ch in string.ascii_letters})
_NON_DIGIT = re.compile(r"[^0-9]")
_DIGIT = re.compile(r"\d")
_COUNTRY_CODES = phonenumbers.COUNTRY_CODE_TO_REGION_CODE
# Regions whose national format drops a leading trunk "0" (Italy keeps it as part of the number).
_TRUNK_ZERO = frozenset({"GB", "DE", "FR", "NL", "IN"})


def luhn_valid(digits: str) -> bool:
    """Whether a string of digits passes the Luhn (mod 10) checksum of payment cards."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i & 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def card_issuer(digits: str) -> str | None:
    """The card network whose issuer prefix and length fit ``digits``, or None."""
    n = len(digits)
    p2 = int(digits[:2])
    p3 = int(digits[:3])
    p4 = int(digits[:4])
    p6 = int(digits[:6])
    if digits[0] == "4" and n in (13, 16, 19):
        return "visa"
    if (51 <= p2 <= 55 or 2221 <= p4 <= 2720) and n == 16:
        return "mastercard"
    if p2 in (34, 37) and n == 15:
        return "amex"
    if (p4 == 6011 or p2 == 65 or 644 <= p3 <= 649 or 622126 <= p6 <= 622925) and 16 <= n <= 19:
        return "discover"
    if (300 <= p3 <= 305 or p2 in (36, 38, 39) or p4 == 3095) and 14 <= n <= 19:
        return "diners"
    # JCB: 3528-3589 today, 2131 and 1800 on older 15-digit cards; the rest of 35xx is
    # unassigned but written by card generators, and Luhn already screens random digits.
    if (p2 == 35 and 16 <= n <= 19) or (p4 in (2131, 1800) and n == 15):
        return "jcb"
    if p2 == 62 and 16 <= n <= 19:
        return "unionpay"
    # Maestro, with the 0604 range that older IIN tables list.
    if (p2 == 50 or 56 <= p2 <= 69 or p4 == 604) and 12 <= n <= 19:
        return "maestro"
    return None


@functools.cache
def iban_formats() -> dict[str, re.Pattern[str]]:
    """The account-number (BBAN) format of each IBAN country, from python-stdnum's registry.

    Read once, on first use: the registry answers one country at a time, and asking it for every
    candidate costs more than the rest of a scan.
    """
    registry = numdb.get("iban")
    formats = {}
    for a, b in itertools.product(string.ascii_uppercase, repeat=2):
        info = registry.info(a + b)
        bban = info[0][1].get("bban") if info else None
        if bban:
            parts = re.findall(r"(\d+)!?([nac])", bban)
            formats[a + b] = re.compile(
                "".join(f"{_BBAN_CLASS[kind]}{{{count}}}" for count, kind in parts) + r"\Z"
            )
    return formats


@functools.cache
def iban_length(country: str) -> int | None:
    """How many characters an IBAN of ``country`` has, or None for a country without IBANs."""
    rx = iban_formats().get(country)
    if rx is None:
        return None
    return 4 + sum(int(n) for n in re.findall(r"\{(\d+)\}", rx.pattern))


def iban_valid(compact: str) -> bool:
    """Whether an upper-case IBAN without spaces has its country's format and mod-97 checksum.

    The country's own account checks are left out: they vary by bank, and many IBANs in the wild
    (and every generated one) would fail them.
    """
    rx = iban_formats().get(compact[:2])
    if rx is None or rx.match(compact, 4) is None or not compact[2:4].isdigit():
        return False
    rearranged = compact[4:] + compact[:4]
    # Letters become two digits each (A = 10 ... Z = 35); one translate call instead of a
    # conversion per character.
    return int(rearranged.translate(_IBAN_LETTERS)) % 97 == 1


def ssn_valid(area: str, group: str, serial: str) -> bool:
    """Whether the parts of a US social security number follow the SSA's allocation rules."""
    return (
        area != "000"
        and area != "666"
        and area[0] != "9"
        and group != "00"
        and serial != "0000"
        # Numbers the SSA voided after they were printed on sample cards.
        and (area, group, serial) not in {("078", "05", "1120"), ("219", "09", "9999")}
    )


def ipv4_valid(parts: tuple[str, ...]) -> bool:
    """Whether four dotted decimal parts are an IPv4 address (0-255, no leading zeros)."""
    return all(int(part) <= 255 and (len(part) == 1 or part[0] != "0") for part in parts)


def ipv6_valid(candidate: str) -> bool:
    """Whether a colon-separated hexadecimal string is an IPv6 address, compressed or not."""
    try:
        ipaddress.IPv6Address(candidate)
    except ValueError:
        return False
    return True


def shannon_entropy(value: str) -> float:
    """Bits per character of the value's character distribution."""
    n = len(value)
    return -sum(c / n * math.log2(c / n) for c in Counter(value).values())


def char_classes(value: str) -> int:
    """How many of lower-case, upper-case, digits and other characters the value uses."""
    if not value.isascii():
        return (
            any(c.islower() for c in value)
            + any(c.isupper() for c in value)
            + any(c.isdigit() for c in value)
            + any(not c.isalnum() for c in value)
        )
    # ASCII, nearly every value: string methods and one search in C, not a loop in Python.
    return (
        (value.upper() != value)
        + (value.lower() != value)
        + (_DIGIT.search(value) is not None)
        + (not value.isalnum() and value != "")
    )


def plausible_birth_date(year: int, month: int, day: int) -> bool:
    """Whether the numbers are a calendar date between 1900 and today."""
    if not (1 <= month <= 12 and 1 <= day <= 31 and year >= 1900):
        return False
    try:
        date = datetime.date(year, month, day)
    except ValueError:
        return False
    return date <= datetime.date.today()


class PhoneCheck:
    """How a phone candidate fared against the numbering plans.

    Attributes:
        valid: an assigned number range of some region (libphonenumber's ``is_valid_number``).
        possible: a length some region allows, though the range may be unassigned.
        international: written with "+" or "00" and a country code.
    """

    __slots__ = ("international", "possible", "valid")

    def __init__(self, *, valid: bool, possible: bool, international: bool) -> None:
        self.valid = valid
        self.possible = possible
        self.international = international


# The number types of a region's metadata; a number is valid when it is of one of them.
_TYPES = (
    "premium_rate",
    "toll_free",
    "shared_cost",
    "voip",
    "personal_number",
    "pager",
    "uan",
    "voicemail",
    "fixed_line",
    "mobile",
)


def _desc(desc: phonenumbers.PhoneNumberDesc) -> tuple[frozenset[int], re.Pattern[str]]:
    return frozenset(desc.possible_length or ()), re.compile(
        f"(?:{desc.national_number_pattern})\\Z"
    )


class _Plan:
    """One region's numbering plan from libphonenumber's metadata, compiled once.

    ``check`` answers as ``phonenumbers.is_valid_number_for_region`` does (the number matches
    the general description and that of one number type, each by length and pattern), without
    rebuilding the number or looking the metadata up on every call; the tests hold the two to
    the same answers.
    """

    __slots__ = ("code", "general", "leading", "lengths", "region", "trunk", "types")

    def __init__(self, region: str) -> None:
        metadata = phonenumbers.PhoneMetadata.metadata_for_region(region)
        if metadata is None or metadata.general_desc is None:
            raise LookupError(f"libphonenumber has no metadata for region {region}")
        self.region = region
        self.code = phonenumbers.country_code_for_region(region)
        self.lengths, self.general = _desc(metadata.general_desc)
        self.types = tuple(
            _desc(desc)
            for desc in (getattr(metadata, name) for name in _TYPES)
            if desc is not None and desc.national_number_pattern
        )
        # Regions that share a country code own the numbers that start with their leading
        # digits (Bermuda's 441 under +1); the others are told apart by their patterns.
        self.leading = re.compile(metadata.leading_digits) if metadata.leading_digits else None
        self.trunk = metadata.national_prefix or ""

    def check(self, national: str) -> bool:
        """Whether ``national`` (its significant digits) is a valid number of this region."""
        n = len(national)
        if (self.lengths and n not in self.lengths) or self.general.match(national) is None:
            return False
        return any(
            (not lengths or n in lengths) and rx.match(national) is not None
            for lengths, rx in self.types
        )


def _shared_code_check(code: int, national: str, *, international: bool) -> PhoneCheck | None:
    """Check a national number against every region of its country code, as libphonenumber
    assigns it: the region whose leading digits match, else the first whose pattern fits."""
    plans = [plan for plan in map(_plan, _COUNTRY_CODES[code]) if plan is not None]
    for plan in plans:
        if plan.leading is not None and plan.leading.match(national):
            if len(national) not in plan.lengths:
                return None
            return PhoneCheck(
                valid=plan.check(national), possible=True, international=international
            )
    possible = False
    for plan in plans:
        if plan.leading is None and len(national) in plan.lengths:
            possible = True
            if plan.check(national):
                return PhoneCheck(valid=True, possible=True, international=international)
    return PhoneCheck(valid=False, possible=True, international=international) if possible else None


@functools.cache
def _plan(region: str) -> _Plan | None:
    try:
        return _Plan(region)
    except LookupError:
        return None


@functools.cache
def _plans() -> tuple[_Plan, ...]:
    return tuple(plan for plan in map(_plan, PHONE_REGIONS) if plan is not None)


@functools.cache
def load_registries() -> None:
    """Load every region's numbering plan and the IBAN formats now, once per process.

    libphonenumber reads a region's metadata the first time a number of it comes by, which
    costs milliseconds; loading all of it up front (about 0.2 s) keeps the first texts with a
    "+1" or a "+49" number as fast as the rest.
    """
    # libphonenumber's patterns outnumber the re module's cache (512): without its own cache
    # they are compiled again and again once numbers of many regions have come by.
    phonenumbers.enable_pattern_cache()
    for regions in _COUNTRY_CODES.values():
        for region in regions:
            _plan(region)
    _plans()
    iban_formats()


def _national(region: str, digits: str) -> str | None:
    """The national significant number of ``digits`` written nationally in ``region``."""
    if region == "US":
        if len(digits) == 11 and digits[0] == "1":
            return digits[1:]
        return digits if len(digits) == 10 else None
    if region in _TRUNK_ZERO:
        if digits[0] == "0":
            return digits[1:] if digits[1] != "0" else None
        # Indian mobile numbers are the one national form written without the "0".
        if region == "IN" and len(digits) == 10 and digits[0] in "6789":
            return digits
        return None
    if region == "ES":
        return digits if len(digits) == 9 and digits[0] != "0" else None
    # Italy keeps the leading "0" of fixed lines in the number itself.
    return digits


def phone_check(main: str) -> PhoneCheck | None:
    """Check a phone candidate (without its extension) against the default regions.

    Written with "+" or "00", the number's country code decides; otherwise each default region's
    national form is tried. The number is built from its digits rather than by
    ``phonenumbers.parse``, which costs as much as the validation, and a region's lengths and
    general pattern screen it before ``is_valid_number_for_region``.

    Returns:
        None when no region's lengths allow the number.
    """
    # "+44 (0)20 ..." repeats the trunk prefix that the international form drops.
    stripped = main.replace("(0)", "").lstrip("( ")
    digits = _NON_DIGIT.sub("", stripped)
    if len(digits) < 6:
        return None
    if stripped.startswith("+") or (digits.startswith("00") and not digits.startswith("000")):
        if not stripped.startswith("+"):
            digits = digits[2:]
        for size in (1, 2, 3):
            code = int(digits[:size])
            if code in _COUNTRY_CODES:
                break
        else:
            return None
        national = digits[size:]
        if len(national) < 4:
            return None
        home = _plan(phonenumbers.region_code_for_country_code(code))
        if (
            home is not None
            and home.trunk
            and national.startswith(home.trunk)
            and not home.general.match(national)
        ):
            # "+49 (0)030 ..." with the trunk prefix written twice.
            national = national[len(home.trunk) :]
        return _shared_code_check(code, national, international=True)
    possible = False
    for plan in _plans():
        nsn = _national(plan.region, digits)
        if nsn is None:
            continue
        if plan.code == 1:
            nanp = _shared_code_check(1, nsn, international=False)
            if nanp is None:
                continue
            if nanp.valid:
                return nanp
        elif len(nsn) not in plan.lengths:
            continue
        elif plan.check(nsn):
            return PhoneCheck(valid=True, possible=True, international=False)
        possible = True
    return PhoneCheck(valid=False, possible=True, international=False) if possible else None
