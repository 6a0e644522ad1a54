"""The personal-data detector: each kind on real formats, hard negatives, context, API, offline."""

from __future__ import annotations

import dataclasses
import itertools
import random
import socket

import phonenumbers
import pytest
from faker import Faker
from stdnum import iban as stdnum_iban

from modelscale.errors import InvalidInput
from modelscale.privacy import KINDS, Detector, Span, checks

LOCALE_REGIONS = {
    "en_US": "US",
    "en_GB": "GB",
    "de_DE": "DE",
    "fr_FR": "FR",
    "es_ES": "ES",
    "it_IT": "IT",
    "nl_NL": "NL",
    "en_IN": "IN",
}


@pytest.fixture(scope="module")
def detector() -> Detector:
    return Detector()


def kinds_of(detector: Detector, text: str) -> list[tuple[str, str]]:
    return [(s.kind, text[s.start : s.end]) for s in detector.find(text)]


def found(detector: Detector, text: str, value: str, kind: str) -> bool:
    """Whether a span of ``kind`` covers ``value`` in ``text`` (at its first occurrence)."""
    start = text.index(value)
    end = start + len(value)
    return any(s.kind == kind and s.start <= start and s.end >= end for s in detector.find(text))


# -- kinds ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "email",
    ["jane.doe@example.com", "o.brien+news@mail.example.co.uk", "x_y-z@sub-domain.example.io"],
)
def test_email(detector: Detector, email: str) -> None:
    assert kinds_of(detector, f"Write to {email}, thanks.") == [("EMAIL", email)]


def test_email_from_faker_in_every_locale(detector: Detector) -> None:
    for locale in LOCALE_REGIONS:
        fake = Faker(locale)
        fake.seed_instance(0)
        for _ in range(10):
            email = fake.email()
            assert found(detector, f"Contact: {email}", email, "EMAIL"), email


def test_not_an_email(detector: Detector) -> None:
    assert detector.find("ping @maria or user@localhost about it") == []


@pytest.mark.parametrize("region", checks.PHONE_REGIONS)
@pytest.mark.parametrize(
    "style", [phonenumbers.PhoneNumberFormat.NATIONAL, phonenumbers.PhoneNumberFormat.INTERNATIONAL]
)
def test_phone_example_numbers(detector: Detector, region: str, style: int) -> None:
    for kind in (phonenumbers.PhoneNumberType.FIXED_LINE, phonenumbers.PhoneNumberType.MOBILE):
        example = phonenumbers.example_number_for_type(region, kind)
        assert example is not None
        number = phonenumbers.format_number(example, style)
        text = f"Please ring {number} tomorrow."
        assert found(detector, text, number, "PHONE"), number


@pytest.mark.parametrize("locale", sorted(LOCALE_REGIONS))
def test_phone_from_faker_locales(detector: Detector, locale: str) -> None:
    """Numbers Faker writes in each locale's formats that libphonenumber calls valid there."""
    fake = Faker(locale)
    fake.seed_instance(0)
    region = LOCALE_REGIONS[locale]
    tested = 0
    for _ in range(200):
        number = fake.phone_number()
        main = number.split("x")[0]
        try:
            valid = phonenumbers.is_valid_number(phonenumbers.parse(main, region))
        except phonenumbers.NumberParseException:
            valid = False
        if not valid:
            continue
        tested += 1
        text = f"You can reach me on {number} after 9am."
        assert found(detector, text, number, "PHONE"), number
    assert tested >= 20


def test_phone_with_extension(detector: Detector) -> None:
    text = "Desk: 206.269.0743x9150, mobile +1-780-563-6083 ext. 12"
    assert kinds_of(detector, text) == [
        ("PHONE", "206.269.0743x9150"),
        ("PHONE", "+1-780-563-6083 ext. 12"),
    ]


def test_phone_plans_agree_with_libphonenumber() -> None:
    """The compiled plans answer as phonenumbers.is_valid_number_for_region does."""
    rng = random.Random(0)
    checks.load_registries()
    for region in ("US", "CA", "GB", "DE", "FR", "ES", "IT", "NL", "IN", "BR", "JP", "CH"):
        plan = checks._plan(region)
        assert plan is not None
        for _ in range(150):
            length = rng.choice(sorted(plan.lengths))
            national = str(rng.randrange(10 ** (length - 1), 10**length))
            if region == "IT" and rng.random() < 0.5:
                national = "0" + national[1:]
            zeros = len(national) - len(national.lstrip("0"))
            number = phonenumbers.PhoneNumber(
                country_code=plan.code,
                national_number=int(national),
                italian_leading_zero=True if zeros else None,
                number_of_leading_zeros=zeros if zeros > 1 else None,
            )
            assert plan.check(national) == phonenumbers.is_valid_number_for_region(
                number, region
            ), (region, national)


CARDS = {
    "visa": "4111 1111 1111 1111",
    "mastercard": "5555-5555-5555-4444",
    "amex": "3782 822463 10005",
    "discover": "6011111111111117",
    "jcb": "3530111333300000",
    "diners": "30569309025904",
}


@pytest.mark.parametrize(("issuer", "number"), sorted(CARDS.items()))
def test_credit_card_test_numbers(detector: Detector, issuer: str, number: str) -> None:
    assert kinds_of(detector, f"Charged to {number} yesterday.") == [("CREDIT_CARD", number)]
    assert checks.card_issuer(number.replace(" ", "").replace("-", "")) == issuer


def test_credit_card_from_faker(detector: Detector) -> None:
    fake = Faker("en_US")
    fake.seed_instance(0)
    for card_type in ("visa16", "visa13", "mastercard", "amex", "discover", "jcb16", "diners"):
        for _ in range(5):
            number = fake.credit_card_number(card_type=card_type)
            grouped = " ".join(number[i : i + 4] for i in range(0, len(number), 4))
            for written in (number, grouped):
                assert found(detector, f"Paid with {written} today.", written, "CREDIT_CARD")


def test_credit_card_needs_luhn(detector: Detector) -> None:
    text = "Ref 4111 1111 1111 1112 and 5555555555554445."
    assert [k for k, _ in kinds_of(detector, text)] == []


def test_card_of_unknown_issuer_needs_card_words(detector: Detector) -> None:
    number = "9999 9999 9999 9995"  # Luhn-valid, no issuer's prefix
    assert checks.luhn_valid(number.replace(" ", ""))
    assert not found(detector, f"Reference {number} attached.", number, "CREDIT_CARD")
    assert found(detector, f"Card number {number} attached.", number, "CREDIT_CARD")


IBANS = [
    "DE89 3704 0044 0532 0130 00",
    "GB82 WEST 1234 5698 7654 32",
    "FR14 2004 1010 0505 0001 3M02 606",
    "NL91 ABNA 0417 1643 00",
    "ES91 2100 0418 4502 0005 1332",
    "IT60 X054 2811 1010 0000 0123 456",
    "BE68 5390 0754 7034",
    "CH93 0076 2011 6238 5295 7",
]


@pytest.mark.parametrize("iban", IBANS)
def test_iban_registry_examples(detector: Detector, iban: str) -> None:
    for written in (iban, iban.replace(" ", "")):
        assert kinds_of(detector, f"IBAN: {written}.") == [("IBAN", written)]
        assert stdnum_iban.is_valid(written, check_country=False)


@pytest.mark.parametrize("locale", ["de_DE", "en_GB", "es_ES", "fr_FR", "it_IT", "nl_NL"])
def test_iban_from_faker(detector: Detector, locale: str) -> None:
    fake = Faker(locale)
    fake.seed_instance(0)
    for _ in range(20):
        iban = fake.iban()
        assert checks.iban_valid(iban) == stdnum_iban.is_valid(iban, check_country=False)
        assert found(detector, f"Transfer to {iban} now", iban, "IBAN")
        # A wrong check digit fails mod 97.
        broken = iban[:2] + f"{(int(iban[2:4]) + 1) % 100:02d}" + iban[4:]
        assert not found(detector, f"Transfer to {broken} now", broken, "IBAN")


def test_iban_followed_by_capitals(detector: Detector) -> None:
    text = "Send to DE89370400440532013000 ABCD please"
    assert kinds_of(detector, text) == [("IBAN", "DE89370400440532013000")]


def test_us_ssn(detector: Detector) -> None:
    fake = Faker("en_US")
    fake.seed_instance(0)
    for _ in range(20):
        ssn = fake.ssn()
        assert found(detector, f"The applicant listed {ssn} on line 4.", ssn, "US_SSN")


@pytest.mark.parametrize(
    "ssn", ["000-12-3456", "666-12-3456", "912-34-5678", "123-00-4567", "123-45-0000"]
)
def test_us_ssn_rules(detector: Detector, ssn: str) -> None:
    assert detector.find(f"SSN: {ssn}") == []


@pytest.mark.parametrize(
    "ip",
    [
        "192.168.1.10",
        "8.8.8.8",
        "2001:db8::1",
        "fe80::1ff:fe23:4567:890a",
        "2001:0db8:85a3:0000:0000:8a2e:0370:7334",
        "::ffff:192.0.2.128",
        "::1",
    ],
)
def test_ip_address(detector: Detector, ip: str) -> None:
    assert kinds_of(detector, f"Login from {ip}.") == [("IP_ADDRESS", ip)]


@pytest.mark.parametrize("text", ["256.1.1.1", "1.2.3", "01.02.03.04", "2001:db8:::1", "10:22:31"])
def test_not_an_ip_address(detector: Detector, text: str) -> None:
    assert detector.find(f"Seen {text} here") == []


@pytest.mark.parametrize(
    "mac",
    [
        "00:1a:2b:3c:4d:5e",
        "00:1A:2B:3C:4D:5E",
        "00-1A-2B-3C-4D-5E",
        "0012.3456.789a",
        "3436.2553.8699",
    ],
)
def test_mac_address(detector: Detector, mac: str) -> None:
    assert kinds_of(detector, f"Device {mac} joined.") == [("MAC_ADDRESS", mac)]


def test_not_a_mac_address(detector: Detector) -> None:
    assert detector.find("Groups 00:1a:2b:3c:4d and 00-1A-2B-3C-4D-5E-6F") == []


@pytest.mark.parametrize(
    ("text", "date"),
    [
        ("Date of birth: 1987-04-23", "1987-04-23"),
        ("DOB 23/04/1987", "23/04/1987"),
        ("She was born on 04/23/1987 in Ohio.", "04/23/1987"),
        ("geboren am 23.04.1987 in Bonn", "23.04.1987"),
        ("He was born on April 23, 1987.", "April 23, 1987"),
        ("D.O.B.: 23 April 1987", "23 April 1987"),
        ("Geburtsdatum: 23. April 1987", "23. April 1987"),
        ("Marie, née le 1er avril 1987 à Lyon", "1er avril 1987"),
        ("Ana nació el 23 de abril de 1987.", "23 de abril de 1987"),
        ("Luca, nato il 23 aprile 1987", "23 aprile 1987"),
        ("Geboortedatum: 23-04-1987", "23-04-1987"),
        ("birthday 4/23/87", "4/23/87"),
    ],
)
def test_date_of_birth(detector: Detector, text: str, date: str) -> None:
    assert kinds_of(detector, text) == [("DATE_OF_BIRTH", date)]


@pytest.mark.parametrize(
    "text",
    [
        "The meeting is on 23/04/2024.",
        "Invoice date: 1987-04-23",
        "She was born in Paris. The meeting is on April 23, 2024.",
        "born 1990-01-01 in Leeds, delivered 2024-03-05",
        "Born: unknown. Created 2024-03-05T10:22:31Z",
        "Date of birth: 31/02/1987",
    ],
)
def test_dates_that_are_not_dates_of_birth(detector: Detector, text: str) -> None:
    assert [s for s in detector.find(text) if text[s.start : s.end] != "1990-01-01"] == []


@pytest.mark.parametrize(
    "secret",
    [
        "AKIAIOSFODNN7EXAMPLE",
        "ghp_" + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8",
        "github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyzABCDEFGHIJ",
        "xoxb-123456789012-123456789012-AbCdEfGhIjKlMnOpQrStUvWx",
        "sk_live_4eC39HqLyjWDarjtT1zdp7dc",
        "AIzaSyA1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q",
        "sk-proj-Tq8vX2mB9kL4nR7wZ1cF5hJ3gD6sA0pE",
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
    ],
)
def test_credential_formats(detector: Detector, secret: str) -> None:
    assert kinds_of(detector, f"Use {secret} for the deploy.") == [("CREDENTIAL", secret)]


def test_private_key_block(detector: Detector) -> None:
    block = (
        "-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA3Tz2\nq8Zr\n-----END RSA PRIVATE KEY-----"
    )
    assert kinds_of(detector, f"key:\n{block}\nend") == [("CREDENTIAL", block)]
    # Without its END line it is no block.
    assert detector.find("-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA3Tz2") == []


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ("api_key = 9VDj3rWS8M45KQ84O11iiijwcg3ns5", "9VDj3rWS8M45KQ84O11iiijwcg3ns5"),
        ('client_secret: "4fa836674fbd7eb26ebad5bb74b0da73"', "4fa836674fbd7eb26ebad5bb74b0da73"),
        ("Authorization: Bearer Zm9vYmFyYmF6cXV4MTIzNDU2Nzg5MA", "Zm9vYmFyYmF6cXV4MTIzNDU2Nzg5MA"),
        ("password: X9#kL2!mQp4z", "X9#kL2!mQp4z"),
        ("DB_PASSWORD=s460(xd5G$PB@dM", "s460(xd5G$PB@dM"),
        ("The token is HEVkYqDg5ah9HquchOjnKvf5FJJ8.", "HEVkYqDg5ah9HquchOjnKvf5FJJ8"),
    ],
)
def test_generic_secrets(detector: Detector, text: str, secret: str) -> None:
    assert kinds_of(detector, text) == [("CREDENTIAL", secret)]


@pytest.mark.parametrize(
    "text",
    [
        "The key point is consistency across teams.",
        "Use the password reset instructions we sent.",
        "Born in Passau Geburtsdatum: unbekannt",
        "token: aaaaaaaaaaaaaaaaaaaaaaaaa",
        "We use sk-learn-compatible-estimators everywhere.",
        "password: hunter",
    ],
)
def test_not_secrets(detector: Detector, text: str) -> None:
    assert detector.find(text) == []


# -- hard negatives -------------------------------------------------------------------------------
HARD_NEGATIVES = [
    "Order #48213 has shipped.",
    "Your order 1234567 is on its way.",
    "order number 8812345670",
    "Invoice 20240012 is due in 30 days.",
    "Logged at 2024-03-05T10:22:31Z.",
    "created_at: 2024-03-05 10:22:31",
    "Request id 550e8400-e29b-41d4-a716-446655440000.",
    "Upgrade to v2.13.0 today.",
    "version 1.2.3.4",
    "Running release 10.6.17.25 since May.",
    "Total: $1,299.99",
    "Price EUR 45.00",
    "It costs €1.299,00.",
    "The meeting is on 05/03/2024.",
    "Fixed in commit 3f2a9c1d4e5b6a7980c1d2e3f4a5b6c7d8e9f0a1.",
    "Reverted 0474917 yesterday.",
    "ISBN 978-3-16-148410-0",
    "ISBN-10: 1-59569-286-X",
    "Reference 4111111111111112",
    "Account ref 9478 4855 4052 1750",
    "Tracking number 1Z999AA10123456784.",
    "The app had 4391237 downloads last month.",
    "GPS 48.856613, 2.352222",
]


@pytest.mark.parametrize("text", HARD_NEGATIVES)
def test_hard_negatives(detector: Detector, text: str) -> None:
    assert kinds_of(detector, text) == []


def test_plain_ipv4_is_an_address_without_version_words(detector: Detector) -> None:
    assert kinds_of(detector, "host 1.2.3.4") == [("IP_ADDRESS", "1.2.3.4")]
    assert kinds_of(detector, "v 1.2.3.4") == []


# -- context --------------------------------------------------------------------------------------
def score_of(detector: Detector, text: str, kind: str) -> float:
    return max((s.score for s in detector.find(text) if s.kind == kind), default=0.0)


def test_context_raises_ssn() -> None:
    loose = Detector(min_score=0.0)
    plain = score_of(loose, "Listed 123-45-6789 on line 4.", "US_SSN")
    near = score_of(loose, "SSN: 123-45-6789", "US_SSN")
    social = score_of(loose, "social security number 123-45-6789", "US_SSN")
    assert near > plain and social > plain
    assert found(Detector(), "SSN 123456789", "123456789", "US_SSN")
    assert not found(Detector(), "Listed 123456789 on line 4.", "123456789", "US_SSN")


@pytest.mark.parametrize(
    "word", ["order", "invoice", "tracking", "version", "build", "ticket", "ref"]
)
def test_context_lowers_numbers(word: str) -> None:
    loose = Detector(min_score=0.0)
    number = "(415) 867-5309"
    assert score_of(loose, f"{word} {number}", "PHONE") < score_of(loose, f"see {number}", "PHONE")
    assert not found(Detector(), f"{word} {number}", number, "PHONE")


def test_context_of_another_sentence_or_number_does_not_count() -> None:
    loose = Detector(min_score=0.0)
    number = "(415) 867-5309"
    base = score_of(loose, f"see {number}", "PHONE")
    assert score_of(loose, f"Your order shipped. Then see {number}", "PHONE") == base
    assert score_of(loose, f"order 4821, see {number}", "PHONE") == base
    assert score_of(loose, f"order 4821, call {number}", "PHONE") > base


def test_context_after_the_match() -> None:
    loose = Detector(min_score=0.0)
    bare = "0412345678"
    assert score_of(loose, f"{bare} (mobile)", "PHONE") > score_of(loose, f"{bare} here", "PHONE")


def test_context_off() -> None:
    plain = Detector(context=False)
    assert not found(plain, "SSN 123456789", "123456789", "US_SSN")
    assert plain.find("Date of birth: 1987-04-23") == []
    loose = Detector(context=False, min_score=0.0)
    assert kinds_of(loose, "Date of birth: 1987-04-23") == [("DATE_OF_BIRTH", "1987-04-23")]


# -- real text: documentation, code and logs ------------------------------------------------------
# Snippets from the docstrings of installed packages (numpy, scipy, email, logging, socket,
# pydantic, sqlalchemy, duckdb, pyarrow), as bench/privacy.py's real-text section reads them.
# Each was flagged before the rule beside it; none holds personal data.
NOT_PHONES = [
    # Bare numbers in code: arguments, list elements, doctest output.
    ">>> np.bitwise_or(np.array([2, 5, 255, 2147483647], dtype=np.int32),",
    "array([         6,          5,        255, 2147483647], dtype=int32)",
    ">>> ii32.max\n2147483647\n\nWith instances:",
    ">>> rng = np.random.default_rng(9781234521)",
    'BindParameter("%(4327771088 name)s", "Wendy", type_=String())',
    "Checking is not a call.\n\n>>> rng = np.random.default_rng(98145152315484)",
    '{"user_id": 4155552671, "status": 500}',
    "user_id=4155552671 not found",
    # Ranges, standards and citations.
    "Standard for Floating-Point Arithmetic, IEEE Std 754-2008,\n       pp.1-70, 2008.",
    "base64 content transfer encoding per RFCs 2045-2047.",
    "Copyright (C) 2001-2019 Vinay Sajip. All Rights Reserved.",
    "Annals of Mathematical Statistics, 31, 1174-1189.",
    "Mathematical Statistics, 13(2), pp 215-232 (1942).",
    "Biometrika, Vol. 33, No. 3, pp. 239-251. 1945.",
    "AS 159 Appl. Statist. 30 (1981) 91-97",
    "Biometrika 105.1 (2018): 239-246.",
    ":doi:`10.1016/S0010-4655(02)00280-1`, 2002.",
    "Technical Report 02-16 (2002).",
    ".. [1] Bioinformatics (2006) 22 (17): 2059-2065.",
    "Global optimization. Springer US,\n       2000. 197-232.",
    # Numbers that a phone number is not made of: binary, decimals, a long row of a table.
    "Note that in binary 160 = 1010 0000, 64 = 0100 0000, 192 = 1100 0000,",
    '>>> s = StringIO("10.01 31.25-\\n19.22 64.31\\n17.57- 63.94")',
    "(0 - 1) -9.480  0.280\n(0 - 2) -5.140  4.620",
    "can exactly represent the numbers\n1234.567 and -1234.567",
    "Group 1: 10 14 14 18 20 22 24 25 31 31 32 39 43 43 48 49",
    ">>> np.random.shuffle(arr)\n>>> arr\n[1 7 5 2 9 4 3 6 0 8] # random",
    "    'nearest'  | 1  1  1 | 1  2  3  4  5  6  7  8 | 8  8  8",
    # A weak word ("number") before a number that no numbering plan validates.
    "`Decimal128Type(7, -3)` can exactly represent the number 12345000",
]


@pytest.mark.parametrize("text", NOT_PHONES)
def test_not_phone_numbers_in_code_and_documents(detector: Detector, text: str) -> None:
    assert [k for k in kinds_of(detector, text) if k[0] == "PHONE"] == []


@pytest.mark.parametrize(
    ("text", "phone"),
    [
        # Phone words and international numbers keep their number in code, too.
        ("phone=4155552671", "4155552671"),
        ('{"phone": 4155552671}', "4155552671"),
        ("To=+14155552671", "+14155552671"),
        ('>>> text = "Call me at 510-748-8230 if it\'s before 9:30"', "510-748-8230"),
        ('>>> phonenumbers.parse("+442083661177", None)', "+442083661177"),
        # Formatted numbers stay phone numbers in a list: the separators are the phone's.
        ("numbers = ['(650) 253-2222', '+41 44 668 1800']", "(650) 253-2222"),
        # Two groups that no plan validates need a phone word, and have it here.
        ("Tel. 754-2008", "754-2008"),
        # Three groups are written as a phone number is, in an unassigned range too.
        ("Reach Ann, (243)835-3751, in Leeds.", "(243)835-3751"),
        ("Mi número es 612 345 678.", "612 345 678"),
    ],
)
def test_phone_numbers_in_code_and_lists(detector: Detector, text: str, phone: str) -> None:
    assert found(detector, text, phone, "PHONE")


def test_blank_line_and_doctest_prompt_end_the_context() -> None:
    loose = Detector(min_score=0.0)
    number = "0412345678"
    near = score_of(loose, f"Call {number}", "PHONE")
    assert score_of(loose, f"Call.\n\n{number}", "PHONE") < near
    assert score_of(loose, f"Call me\n>>> {number}", "PHONE") < near


@pytest.mark.parametrize(
    "text",
    [
        ">>> np.delete(arr, np.s_[::2], 1)",
        ">>> np.index_exp[2::2]",
        ">>> np.shares_memory(x[::2], x[1::2])",
        "b = a[:, 1::2]",
        "Chapman & Hall: New\n   York. 2000.\n   Section 2.2.24.1\n\nExamples",
        'NIST/SEMATECH e-Handbook of Statistical Methods, "7.4.7.1. Tukey\'s\n       Method"',
        'e-Handbook of Statistical Methods, "7.4.3.3.\n       The ANOVA table"',
        "as described in § 4.2.1.3 of the standard",
        # The mark of a literal block of reStructuredText.
        "subject to the constraints x**2 + y**2 < 1 and y > 0::\n\n    >>> def f(x):",
        # Networks, and addresses of no host: "any", broadcast, netmasks (read now that a
        # quote may come before a number).
        "IPv4Network('192.0.2.0/27')",
        "allow from 10.0.0.0/8",
        "bind to '0.0.0.0' or '::'",
        "a string of the form '255.255.255.255'",
        "netmask: IPv4Address('255.255.255.224')",
        "netmask: IPv6Address('ffff:ffff:ffff:ffff:ffff:ffff:ffff:fff0')",
    ],
)
def test_not_ip_addresses_in_code_and_documents(detector: Detector, text: str) -> None:
    assert detector.find(text) == []


@pytest.mark.parametrize(
    ("text", "ip"),
    [
        ("Connect to 10.0.0.1.", "10.0.0.1"),
        ('host="10.1.2.3" refused', "10.1.2.3"),
        ("10.0.0.7 - - [05/Mar/2024] GET /", "10.0.0.7"),
        ("http://[2001:db8::1]:8080/", "2001:db8::1"),
        ("IPv6Address('2001:db8::1000')", "2001:db8::1000"),
        # A host in CIDR notation is an address; a network ("10.0.0.0/8") is nobody's.
        ("inet 192.168.1.17/24 scope global eth0", "192.168.1.17/24"),
        ("convert IP addr string (123.45.67.89) to 32-bit packed format", "123.45.67.89"),
    ],
)
def test_ip_addresses_in_code_and_logs(detector: Detector, text: str, ip: str) -> None:
    assert kinds_of(detector, text) == [("IP_ADDRESS", ip)]


def test_card_number_as_an_argument_in_code(detector: Detector) -> None:
    # Seeds that pass Luhn by chance, with an issuer's prefix (Amex 34, Maestro 69).
    for seed in ("348932549825235", "6981396440634228121"):
        assert checks.luhn_valid(seed) and checks.card_issuer(seed) is not None
        assert detector.find(f">>> rng = np.random.default_rng({seed})") == []
    # Card words, separators, or no code around it keep a card number.
    assert found(detector, "card=4111111111111111", "4111111111111111", "CREDIT_CARD")
    assert found(detector, "Card: charge(4111111111111111)", "4111111111111111", "CREDIT_CARD")
    assert found(detector, "pay(4111 1111 1111 1111)", "4111 1111 1111 1111", "CREDIT_CARD")
    assert found(detector, "Paid with 348932549825235 today.", "348932549825235", "CREDIT_CARD")


@pytest.mark.parametrize(
    "text",
    [
        '>>> fk.target_tokens\n    ForeignKeyTarget(schema=None, table_name="main_table")',
        ">>> my_table.primary_key\n    PrimaryKeyConstraint(\n        Column('id')",
        "IntervalArray but this requires\npassing MonthDayNanoIntervalType explicitly.",
        "map_type(key: _duckdb._sqltypes.DuckDBPyType, value: _duckdb._sqltypes.DuckDBPyType)",
        'print(m.secret_bool.get_secret_value())\n#> True\n{"secret_bool":"**********"}',
        "For the [`SecretStr`][pydantic.types.SecretStr] and\n[`SecretBytes`][pydantic.types.Se",
        "#> username='scolvin' password=SecretBytes(b'**********')",
        "print(user.password.get_secret_value())\n#> b'password1'\nprint((SecretBytes(b'password')",
        "    'password': SecretStr('**********'),",
        "Item.keywords\n    select(Order).options(joinedload(Order.items).joinedload(Item.k))",
        # Masks and slots, now that a URL's password is read.
        "token: ************************",
        "DB_PASSWORD=${DB_PASSWORD}",
        "postgres://app:<password>@db:5432/app",
    ],
)
def test_not_secrets_in_code(detector: Detector, text: str) -> None:
    assert detector.find(text) == []


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ("MyDatabaseModel(db='postgres://user:pass@localhost:5432/foobar')", "pass"),
        ('create_engine("mysql+pymysql://scott:tiger@localhost/test")', "tiger"),
        ("could not connect: postgresql://app:s3cr3t-Pw@10.0.0.5/app", "s3cr3t-Pw"),
        # The password of a URL, where a template's word "password" cannot be told from one
        # (the span was "@host/dbname[?key=value..]" after the word "password").
        ("``dialect[+driver]://user:password@host/dbname[?key=value..]``", "password"),
        # Random keys keep their score: all letters, and a "(" that no call has after it.
        ("api_key = XSAwbkDAjmXbTlGqZDtPoAcNeO", "XSAwbkDAjmXbTlGqZDtPoAcNeO"),
        ("password: hVlC(1Pw%s+Ol(FsnncL+", "hVlC(1Pw%s+Ol(FsnncL+"),
    ],
)
def test_secrets_in_urls_and_code(detector: Detector, text: str, secret: str) -> None:
    assert kinds_of(detector, text) == [("CREDENTIAL", secret)]


def test_url_user_and_password_is_no_email(detector: Detector) -> None:
    text = "Assuming an input URL of `http://samuel:pass@example.com:8000/the/path/`"
    assert kinds_of(detector, text) == [("CREDENTIAL", "pass")]
    assert kinds_of(detector, "Mail samuel@example.com: done") == [("EMAIL", "samuel@example.com")]


@pytest.mark.parametrize(
    ("value", "classes"),
    [("", 0), ("abc", 1), ("aB3!", 4), ("s460(xd5G$PB@dM", 4), ("ÉTÉ", 1), ("é²-", 3)],
)
def test_char_classes(value: str, classes: int) -> None:
    assert checks.char_classes(value) == classes


# -- API ------------------------------------------------------------------------------------------
def test_kinds() -> None:
    assert KINDS == (
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
    assert Detector().kinds == KINDS


def test_span_is_frozen_with_slots() -> None:
    span = Span(1, 4, "EMAIL", 0.9)
    with pytest.raises(dataclasses.FrozenInstanceError):
        span.start = 2  # type: ignore[misc]
    assert not hasattr(span, "__dict__")


def test_kinds_select(detector: Detector) -> None:
    text = "Mail a@example.com or call +44 20 7946 0958"
    assert [s.kind for s in Detector(kinds=["EMAIL"]).find(text)] == ["EMAIL"]
    assert [s.kind for s in Detector(kinds="phone").find(text)] == ["PHONE"]
    assert [s.kind for s in detector.find(text)] == ["EMAIL", "PHONE"]


def test_user_patterns() -> None:
    d = Detector(patterns={"EMPLOYEE_ID": r"EMP-\d{6}"}, kinds=["EMAIL", "EMPLOYEE_ID"])
    text = "EMP-004211 wrote from a@example.com"
    assert kinds_of(d, text) == [("EMPLOYEE_ID", "EMP-004211"), ("EMAIL", "a@example.com")]
    assert d.kinds == ("EMAIL", "EMPLOYEE_ID")
    # A user's kind wins over a built-in match it overlaps.
    d = Detector(patterns={"TEST_CARD": r"4111 1111 1111 1111"})
    assert kinds_of(d, "card 4111 1111 1111 1111") == [("TEST_CARD", "4111 1111 1111 1111")]


def test_spans_are_sorted_and_do_not_overlap(detector: Detector) -> None:
    Faker.seed(0)
    fake = Faker(["en_US", "de_DE", "fr_FR"])
    for _ in range(100):
        text = " ".join(
            [
                fake.sentence(),
                f"Call {fake.phone_number()} or mail {fake.email()}.",
                f"IBAN {fake.iban()}, card {fake.credit_card_number()}, IP {fake.ipv4()}.",
                f"Born {fake.date_of_birth():%d/%m/%Y}.",
            ]
        )
        spans = detector.find(text)
        assert all(a.end <= b.start for a, b in itertools.pairwise(spans))
        assert all(0 <= s.start < s.end <= len(text) and 0.5 <= s.score <= 1 for s in spans)


def test_min_score() -> None:
    text = "The meeting is on 23/04/2024."
    assert Detector().find(text) == []
    assert kinds_of(Detector(min_score=0.0), text) == [("DATE_OF_BIRTH", "23/04/2024")]
    assert Detector(min_score=1.0).find("a@example.com") == []


def test_redact() -> None:
    d = Detector()
    text = "Mail jane.doe@example.com or bob@example.org, call +44 20 7946 0958. SSN 123-45-6789?"
    out, counts = d.redact(text)
    assert out == "Mail <EMAIL> or <EMAIL>, call <PHONE>. SSN <US_SSN>?"
    assert counts == {"EMAIL": 2, "PHONE": 1, "US_SSN": 1}
    # The sample number printed on wallet cards in 1938 was voided.
    assert d.redact("SSN 078-05-1120") == ("SSN 078-05-1120", {})
    assert d.redact("nothing here") == ("nothing here", {})
    out, counts = Detector(patterns={"TICKET": r"TCK-\d+"}).redact("TCK-42 from a@example.com")
    assert (out, counts) == ("<TICKET> from <EMAIL>", {"TICKET": 1, "EMAIL": 1})


# -- bad input ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"patterns": {"ID": "EMP-(\\d+"}}, "not a valid regular expression"),
        ({"patterns": {"ID": "a*"}}, "matches the empty string"),
        ({"patterns": {"bad name": "x"}}, "is not valid. Expected a name"),
        ({"patterns": {"ID": 5}}, "must be a str"),
        ({"patterns": ["x"]}, "mapping of kind name"),
        ({"kinds": ["EMAIL", "PASSPORT"]}, "unknown kind(s) PASSPORT"),
        ({"kinds": 5}, "iterable of kind names"),
        ({"min_score": 1.5}, "must be a number in [0, 1]. Got 1.5"),
        ({"min_score": -0.1}, "must be a number in [0, 1]"),
        ({"min_score": float("nan")}, "must be a number in [0, 1]"),
        ({"min_score": "high"}, "must be a number in [0, 1]"),
    ],
)
def test_bad_options(kwargs: dict, message: str) -> None:
    with pytest.raises(InvalidInput) as info:
        Detector(**kwargs)
    assert message in str(info.value)


def test_find_takes_text(detector: Detector) -> None:
    with pytest.raises(InvalidInput, match=r"takes a str\. Got bytes"):
        detector.find(b"a@example.com")  # type: ignore[arg-type]


# -- offline --------------------------------------------------------------------------------------
def test_detects_with_the_network_blocked(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise OSError("network blocked by the test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    # Load the numbering plans and IBAN formats again, with the network blocked.
    for cached in (checks.load_registries, checks._plan, checks._plans, checks.iban_formats):
        cached.cache_clear()
    checks.iban_length.cache_clear()
    text = (
        "Mail a@example.com, call +49 30 901820 or 020 7946 0958, IBAN DE89370400440532013000, "
        "card 4111 1111 1111 1111, host 2001:db8::1, SSN 123-45-6789, born 1987-04-23."
    )
    assert [s.kind for s in Detector().find(text)] == [
        "EMAIL",
        "PHONE",
        "PHONE",
        "IBAN",
        "CREDIT_CARD",
        "IP_ADDRESS",
        "US_SSN",
        "DATE_OF_BIRTH",
    ]
