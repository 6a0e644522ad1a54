"""Accuracy and speed of the personal-data detector (modelscale.privacy), beside Presidio's.

1. A labelled corpus from Faker in seven locales (en_US, en_GB, de_DE, fr_FR, es_ES, it_IT,
   nl_NL): entities in template sentences (English ones, and ones in the locale's language) among
   Faker filler sentences, each entity's character offsets recorded; plus hard negatives that
   must not be flagged (order numbers, timestamps, UUIDs, versions, prices, plain dates, git
   SHAs, labelled ISBNs, digit strings that fail Luhn, parcel tracking numbers, quantities,
   coordinates).
2. Per type: an entity is found when a detected span of its type covers >= 90% of it; a detected
   span that overlaps no labelled entity of its type is a false positive. Precision, recall, F2.
3. Presidio's AnalyzerEngine, pattern recognizers only (a blank spaCy pipeline, no NER model),
   English recognizers, on the same corpus, in its own interpreter (--presidio); not a
   modelscale dependency: python -m venv /tmp/presidio && /tmp/presidio/bin/pip install
   presidio-analyzer faker. It is scored at its default threshold (0) and at 0.5.
4. Speed on one core (the process pinned to one CPU): texts/s and p50/p99 per ~1 KB text
   (corpus texts joined, 1 KB on average), three passes: the first pass's wall-clock and CPU
   time, and the best of the passes per text, which leaves out most of the waiting for the CPU
   on a shared machine. Presidio's texts/s on the corpus texts and on a subset of the 1 KB texts.
5. Real text, which was not written together with the detector: the docstrings of installed
   packages (REAL_TEXT_MODULES: numpy, scipy.stats, sqlalchemy, email, http, urllib, json,
   logging, argparse, pyarrow, duckdb, starlette, pydantic, typer, rich, onnx,
   sklearn.linear_model, sklearn.ensemble, datetime, ipaddress, uuid, decimal, calendar, locale,
   socket, ssl, hashlib, phonenumbers): ``inspect.getdoc`` of each module and of every name in
   ``dir(module)``, not of the members of classes, each text once (about 3.5 MB of prose, code
   examples, doctest sessions and references). It is unlabelled and holds few genuine entities
   (authors' e-mail addresses, ``user:password@host`` URLs, example IP addresses, the example
   numbers of the phonenumbers docs), so what is reported is findings per MB (10^6 bytes of
   UTF-8) per kind, for modelscale and for Presidio, and every modelscale finding with its
   context for a reader to judge. A small rule marks documentation examples: e-mail domains of
   RFC 2606 (example.com/org/net, .test, .example, .invalid, .localhost) and addresses of the
   documentation ranges of RFC 5737 (192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24) and RFC
   3849 (2001:db8::/32); findings outside them are counted apart. The corpus depends on the
   installed versions, which the JSON records.

Targets: recall >= 0.98 and F2 >= 0.95 per structured type, >= 5,000 1 KB texts/s on one core,
p99 < 1 ms.

Run: .venv/bin/python bench/privacy.py [--texts 10000] [--seed 0] [--presidio /tmp/presidio/bin/python]
     [--long 2000] [--presidio-long 200] [--no-real-text] [--out bench/results/privacy.json]
"""

from __future__ import annotations

import argparse
import base64
import datetime
import importlib
import importlib.metadata
import inspect
import ipaddress
import json
import os
import pathlib
import platform
import random
import statistics
import string
import subprocess
import sys
import tempfile
import textwrap
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from faker import Faker
from rich.console import Console
from rich.progress import Progress
from rich.table import Table
from rich.text import Text as RichText

from modelscale.privacy import KINDS, Detector

ROOT = pathlib.Path(__file__).resolve().parents[1]
LOCALES = ("en_US", "en_GB", "de_DE", "fr_FR", "es_ES", "it_IT", "nl_NL")
COVER = 0.9
STRUCTURED = (
    "EMAIL",
    "PHONE",
    "CREDIT_CARD",
    "IBAN",
    "US_SSN",
    "IP_ADDRESS",
    "MAC_ADDRESS",
    "CREDENTIAL",
)
PRESIDIO_TYPES = {
    "EMAIL_ADDRESS": "EMAIL",
    "PHONE_NUMBER": "PHONE",
    "CREDIT_CARD": "CREDIT_CARD",
    "IBAN_CODE": "IBAN",
    "US_SSN": "US_SSN",
    "IP_ADDRESS": "IP_ADDRESS",
    "MAC_ADDRESS": "MAC_ADDRESS",
    # Presidio has no date-of-birth type; its dates are scored as such for comparison only.
    "DATE_TIME": "DATE_OF_BIRTH",
}
PRESIDIO_NONE = ("CREDENTIAL",)
console = Console(stderr=True)


# -- 1. corpus ------------------------------------------------------------------------------------
# English templates serve every locale; each locale adds some in its own language. A template
# names its entity slot {x}; {name} and {city} are filled from the locale.
TEMPLATES: dict[str, dict[str, list[str]]] = {
    "EMAIL": {
        "en": [
            "You can email {name} at {x}.",
            "Contact: {x}",
            "Send the signed copy to {x} by Friday.",
            "{name} <{x}> wrote:",
            "reply-to: {x}",
            "Her address is {x}, not the old one.",
            "{x} asked to be removed from the list.",
        ],
        "de_DE": ["Schreiben Sie bitte an {x}.", "E-Mail: {x}"],
        "fr_FR": ["Écrivez-moi à {x}.", "Courriel : {x}"],
        "es_ES": ["Escríbanos a {x}.", "Correo: {x}"],
        "it_IT": ["Scrivi a {x} entro domani.", "Email: {x}"],
        "nl_NL": ["Mail naar {x} voor vragen.", "E-mailadres: {x}"],
    },
    "PHONE": {
        "en": [
            "Call me at {x}.",
            "{name}'s number is {x}.",
            "Phone: {x}",
            "You can reach the front desk on {x} after 9am.",
            "Mobile {x}",
            "tel. {x}",
            "{name}, {x}, {city}",
            "If it is urgent, {x} works too.",
            "He gave {x} as his callback number.",
        ],
        "de_DE": ["Telefon: {x}", "Rufen Sie mich unter {x} an.", "Erreichbar unter {x}."],
        "fr_FR": ["Appelez-moi au {x}.", "Tél : {x}", "Mon numéro est le {x}."],
        "es_ES": ["Llámame al {x}.", "Teléfono: {x}", "Mi número es {x}."],
        "it_IT": ["Chiamami al {x}.", "Tel. {x}", "Il mio numero è {x}."],
        "nl_NL": ["Bel me op {x}.", "Telefoon: {x}", "Mijn nummer is {x}."],
    },
    "CREDIT_CARD": {
        "en": [
            "Card number: {x}",
            "Paid with {provider} {x}, exp {exp}.",
            "Please charge {x} for the deposit.",
            "cc {x}",
            "{name} used {x} for the booking.",
        ],
        "de_DE": ["Kreditkarte: {x}"],
        "fr_FR": ["Numéro de carte : {x}"],
        "es_ES": ["Tarjeta: {x}"],
        "it_IT": ["Carta di credito {x}"],
        "nl_NL": ["Creditcard {x}"],
    },
    "IBAN": {
        "en": [
            "IBAN: {x}",
            "Please transfer the amount to {x}.",
            "Wire the deposit to account {x} before Monday.",
            "{name} - {x}",
        ],
        "de_DE": ["Bankverbindung: {x}", "Bitte überweisen Sie auf {x}."],
        "fr_FR": ["Mon IBAN est {x}.", "Virement sur le compte {x}."],
        "es_ES": ["Cuenta: {x}", "Transferencia a {x}."],
        "it_IT": ["Bonifico su {x}.", "IBAN {x}"],
        "nl_NL": ["Rekeningnummer: {x}", "Maak het bedrag over naar {x}."],
    },
    "US_SSN": {
        "en": [
            "SSN: {x}",
            "Social Security Number {x}",
            "{name}'s social security number is {x}.",
            "Her SSN ({x}) was on the form.",
            "{name}, {x}, {city}",
            "The applicant listed {x} on line 4.",
        ],
    },
    "IP_ADDRESS": {
        "en": [
            "Login from {x}.",
            "The server at {x} refused the connection.",
            "client_ip={x}",
            "Blocked {x} after 5 failed attempts.",
            "Forwarded-For: {x}",
            "ping {x} timed out",
        ],
        "de_DE": ["Anmeldung von {x}."],
        "fr_FR": ["Connexion depuis {x}."],
    },
    "MAC_ADDRESS": {
        "en": [
            "Device MAC {x}",
            "The adapter {x} joined the network.",
            "Physical Address. . . . : {x}",
            "hw {x} seen on port 7",
        ],
    },
    "DATE_OF_BIRTH": {
        "en": [
            "Date of birth: {x}",
            "DOB {x}",
            "{name} was born on {x}.",
            "born {x} in {city}",
            "D.O.B.: {x}",
            "{name} (born {x}) joined in 2019.",
            "Birth date {x}",
        ],
        "de_DE": ["Geburtsdatum: {x}", "geboren am {x} in {city}", "{name}, geb. {x}"],
        "fr_FR": ["Date de naissance : {x}", "{name}, né le {x} à {city}", "née le {x}"],
        "es_ES": ["Fecha de nacimiento: {x}", "{name} nació el {x}.", "nacida el {x}"],
        "it_IT": ["Data di nascita: {x}", "{name}, nato il {x} a {city}", "nata il {x}"],
        "nl_NL": ["Geboortedatum: {x}", "{name} is geboren op {x}."],
    },
    "CREDENTIAL": {
        "en": [
            "Use {x} for the staging deploy.",
            "export TOKEN={x}",
            "The key {x} was committed by mistake.",
            "config: {x}",
            "{x}",
        ],
    },
}

# Generic secrets carry their own words ("api_key=", "password:"): templates of their own.
SECRET_TEMPLATES = [
    "api_key = {x}",
    "API key: {x}",
    'access_token: "{x}"',
    "client_secret={x}",
    "Authorization: Bearer {x}",
    "the token is {x}",
    "SECRET_KEY='{x}'",
]
PASSWORD_TEMPLATES = ["password: {x}", "Her password is {x}", "pwd={x}", "DB_PASSWORD={x}"]

NEGATIVE_TEMPLATES = {
    "order": ["Order #{n5} has shipped.", "Your order {n7} is on its way.", "order number {n10}"],
    "invoice": ["Invoice {n8} is due in 30 days.", "Ticket {n6} was closed."],
    "timestamp": ["Logged at {iso}.", "created_at: {iso}", "Last seen {sql}."],
    "uuid": ["Request id {uuid}.", "session {uuid} expired"],
    "version": ["Upgrade to v{ver3}.", "version {ver4}", "Running release {ver3} since May."],
    "price": ["Total: ${price_us}", "Price EUR {price}", "It costs €{price_eu}."],
    "plain_date": ["The meeting is on {date}.", "Delivered {date}.", "Invoice date: {date}"],
    "git_sha": ["Fixed in commit {sha}.", "Reverted {sha7} yesterday."],
    "isbn": ["ISBN {isbn13}", "ISBN-10: {isbn10}"],
    "luhn_fail": ["Reference {badcard}", "Account ref {badcard_spaced}"],
    "tracking": ["Tracking number {ups}.", "tracking {usps}"],
    "quantity": ["The app had {n7} downloads last month.", "Population: {n8}"],
    "coordinates": ["Meet at {coords}.", "GPS {coords}"],
}


@dataclass
class Text:
    """One corpus text with its labelled entities and hard negatives (character offsets)."""

    text: str
    locale: str
    entities: list[tuple[int, int, str]] = field(default_factory=list)
    negatives: list[tuple[int, int, str]] = field(default_factory=list)


class Builder:
    """Appends sentences to a text and records where the slot values went."""

    def __init__(self, locale: str) -> None:
        self.parts: list[str] = []
        self.size = 0
        self.out = Text("", locale)

    def add(self, template: str, value: str, label: str, *, negative: bool, **fill: str) -> None:
        if self.parts:
            self.parts.append(" ")
            self.size += 1
        head, _, tail = template.partition("{x}")
        head = head.format(**fill)
        tail = tail.format(**fill)
        start = self.size + len(head)
        (self.out.negatives if negative else self.out.entities).append(
            (start, start + len(value), label)
        )
        sentence = head + value + tail
        self.parts.append(sentence)
        self.size += len(sentence)

    def filler(self, sentence: str) -> None:
        if self.parts:
            self.parts.append(" ")
            self.size += 1
        self.parts.append(sentence)
        self.size += len(sentence)

    def build(self) -> Text:
        self.out.text = "".join(self.parts)
        return self.out


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


class Values:
    """Entity values in realistic formats, from Faker and a seeded random source."""

    def __init__(self, seed: int) -> None:
        Faker.seed(seed)
        self.fakers = {loc: Faker(loc) for loc in LOCALES}
        self.us = self.fakers["en_US"]
        self.rng = random.Random(seed)
        self.months = {}
        for loc in LOCALES:
            if loc.startswith("en"):
                continue
            module = __import__(f"faker.providers.date_time.{loc}", fromlist=["Provider"])
            self.months[loc] = module.Provider.MONTH_NAMES

    def choice(self, seq: list[str] | tuple[str, ...]) -> str:
        return seq[self.rng.randrange(len(seq))]

    def make(self, kind: str, loc: str) -> tuple[str, str | None]:
        """A value of ``kind`` and, for credentials, the template it needs (else None)."""
        f = self.fakers[loc]
        r = self.rng
        if kind == "EMAIL":
            return f.email() if r.random() < 0.7 else f.company_email(), None
        if kind == "PHONE":
            return f.phone_number(), None
        if kind == "CREDIT_CARD":
            number = f.credit_card_number()
            if r.random() < 0.5:
                if len(number) == 15 and number[0] == "3":
                    number = f"{number[:4]} {number[4:10]} {number[10:]}"
                else:
                    sep = " " if r.random() < 0.8 else "-"
                    number = sep.join(number[i : i + 4] for i in range(0, len(number), 4))
            return number, None
        if kind == "IBAN":
            iban = f.iban()
            if r.random() < 0.5:
                iban = " ".join(iban[i : i + 4] for i in range(0, len(iban), 4))
            return iban, None
        if kind == "US_SSN":
            return self.us.ssn(), None
        if kind == "IP_ADDRESS":
            x = r.random()
            if x < 0.4:
                return f.ipv4_public(), None
            if x < 0.6:
                return f.ipv4_private(), None
            groups = f.ipv6().split(":")
            if r.random() < 0.6:
                # Most IPv6 addresses in logs have a run of zero groups ("2001:db8::1").
                i = r.randrange(1, 7)
                for j in range(i, min(8, i + r.randrange(2, 6))):
                    groups[j] = "0"
            return str(ipaddress.IPv6Address(":".join(groups))), None
        if kind == "MAC_ADDRESS":
            mac = f.mac_address()
            x = r.random()
            if x < 0.25:
                mac = mac.upper()
            elif x < 0.45:
                mac = mac.upper().replace(":", "-")
            elif x < 0.55:
                h = mac.replace(":", "")
                mac = f"{h[:4]}.{h[4:8]}.{h[8:]}"
            return mac, None
        if kind == "DATE_OF_BIRTH":
            return self.birth_date(loc), None
        return self.credential()

    def birth_date(self, loc: str) -> str:
        f = self.fakers[loc]
        d = f.date_of_birth(minimum_age=1, maximum_age=95)
        x = self.rng.random()
        if x < 0.2:
            return d.isoformat()
        if loc == "en_US":
            return d.strftime("%m/%d/%Y") if x < 0.6 else f"{d:%B} {d.day}, {d.year}"
        if loc == "en_GB":
            return d.strftime("%d/%m/%Y") if x < 0.6 else f"{d.day} {d:%B} {d.year}"
        month = self.months[loc][f"{d.month:02d}"]
        numeric = {"de_DE": "%d.%m.%Y", "nl_NL": "%d-%m-%Y"}.get(loc, "%d/%m/%Y")
        if x < 0.6:
            return d.strftime(numeric)
        if loc == "de_DE":
            return f"{d.day}. {month} {d.year}"
        if loc == "es_ES":
            return f"{d.day} de {month.lower()} de {d.year}"
        return f"{d.day} {month.lower() if loc != 'de_DE' else month} {d.year}"

    def _token(self, alphabet: str, n: int) -> str:
        return "".join(self.rng.choice(alphabet) for _ in range(n))

    def credential(self) -> tuple[str, str | None]:
        r = self.rng
        alnum = string.ascii_letters + string.digits
        kind = r.choice(
            ("aws", "github", "slack", "stripe", "google", "openai", "jwt", "pem", "secret", "pw")
        )
        if kind == "aws":
            return "AKIA" + self._token(string.ascii_uppercase + string.digits, 16), None
        if kind == "github":
            if r.random() < 0.8:
                return r.choice(("ghp_", "gho_", "ghs_", "ghu_")) + self._token(alnum, 36), None
            return "github_pat_" + self._token(alnum + "_", 82), None
        if kind == "slack":
            return (
                f"xox{r.choice('abp')}-{r.randrange(10**11, 10**12)}-"
                f"{r.randrange(10**11, 10**12)}-{self._token(alnum, 24)}"
            ), None
        if kind == "stripe":
            return r.choice(("sk_live_", "rk_live_")) + self._token(alnum, 24), None
        if kind == "google":
            return "AIza" + self._token(alnum + "-_", 35), None
        if kind == "openai":
            return r.choice(("sk-", "sk-proj-")) + self._token(alnum, 48), None
        if kind == "jwt":
            header = _b64url(b'{"alg":"HS256","typ":"JWT"}')
            payload = json.dumps(
                {"sub": str(r.randrange(10**9)), "name": self.us.name(), "iat": 1_700_000_000}
            )
            sig = _b64url(r.randbytes(32))
            return f"{header}.{_b64url(payload.encode())}.{sig}", None
        if kind == "pem":
            label = r.choice(("RSA PRIVATE KEY", "PRIVATE KEY", "EC PRIVATE KEY"))
            body = base64.b64encode(r.randbytes(48 * r.randrange(3, 9))).decode()
            lines = "\n".join(body[i : i + 64] for i in range(0, len(body), 64))
            return f"-----BEGIN {label}-----\n{lines}\n-----END {label}-----", "{x}"
        if kind == "secret":
            value = (
                self._token(alnum, r.randrange(24, 48))
                if r.random() < 0.6
                else r.randbytes(r.choice((16, 20, 32))).hex()
            )
            return value, self.choice(SECRET_TEMPLATES)
        return self.us.password(length=r.randrange(10, 25)), self.choice(PASSWORD_TEMPLATES)

    def negative(self, what: str, loc: str) -> dict[str, str]:
        f = self.fakers[loc]
        r = self.rng
        when = f.date_time_between(start_date="-3y", end_date="now")
        isbn13 = f.isbn13()
        digits = "".join(str(r.randrange(10)) for _ in range(15))
        bad = digits + next(str(c) for c in range(10) if not _luhn(digits + str(c)))
        plain = r.random()
        if plain < 0.3:
            date = when.date().isoformat()
        elif plain < 0.55:
            date = when.strftime("%d/%m/%Y")
        elif plain < 0.8:
            date = when.strftime("%m/%d/%Y")
        else:
            date = when.strftime("%d.%m.%Y")
        return {
            "n5": str(r.randrange(10**4, 10**5)),
            "n6": str(r.randrange(10**5, 10**6)),
            "n7": str(r.randrange(10**6, 10**7)),
            "n8": str(r.randrange(10**7, 10**8)),
            "n10": str(r.randrange(10**9, 10**10)),
            "iso": when.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "sql": when.strftime("%Y-%m-%d %H:%M:%S"),
            "uuid": f.uuid4(),
            "ver3": f"{r.randrange(0, 20)}.{r.randrange(0, 40)}.{r.randrange(0, 20)}",
            "ver4": ".".join(str(r.randrange(0, 30)) for _ in range(4)),
            "price_us": f"{r.randrange(1, 5000):,}.{r.randrange(100):02d}",
            "price": f"{r.randrange(1, 500)}.{r.randrange(100):02d}",
            "price_eu": f"{r.randrange(1, 5000):,}".replace(",", ".") + f",{r.randrange(100):02d}",
            "date": date,
            "sha": f.sha1(),
            "sha7": f.sha1()[:7],
            "isbn13": isbn13,
            "isbn10": f.isbn10(),
            "badcard": bad,
            "badcard_spaced": " ".join(bad[i : i + 4] for i in range(0, 16, 4)),
            "ups": "1Z" + self._token(string.ascii_uppercase + string.digits, 16),
            "coords": f"{f.latitude():.6f}, {f.longitude():.6f}",
            "usps": " ".join("".join(str(r.randrange(10)) for _ in range(4)) for _ in range(5))
            + f" {r.randrange(10, 100)}",
        }


def _luhn(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch) * (2 if i % 2 else 1)
        total += d - 9 if d > 9 else d
    return total % 10 == 0


def build_corpus(n: int, seed: int, progress: Callable[[], None] | None = None) -> list[Text]:
    """``n`` labelled texts: filler sentences, entity sentences and hard negatives."""
    values = Values(seed)
    r = values.rng
    kinds = list(TEMPLATES)
    corpus = []
    for _ in range(n):
        loc = values.choice(LOCALES)
        f = values.fakers[loc]
        b = Builder(loc)
        segments: list[tuple[str, Any]] = [("filler", None) for _ in range(r.randrange(1, 4))]
        if r.random() < 0.85:
            segments += [("entity", values.choice(kinds)) for _ in range(r.randrange(1, 3))]
        if r.random() < 0.35:
            segments.append(("negative", values.choice(list(NEGATIVE_TEMPLATES))))
        r.shuffle(segments)
        for what, kind in segments:
            fill = {"name": f.name(), "city": f.city()}
            if what == "filler":
                b.filler(f.sentence(nb_words=r.randrange(6, 15)))
            elif what == "entity":
                value, template = values.make(kind, loc)
                if template is None:
                    lang = TEMPLATES[kind]
                    pool = lang.get(loc) if r.random() < 0.5 else None
                    template = values.choice(pool or lang["en"])
                if kind == "CREDIT_CARD":
                    fill |= {"provider": f.credit_card_provider(), "exp": f.credit_card_expire()}
                b.add(template, value, kind, negative=False, **fill)
            else:
                template = values.choice(NEGATIVE_TEMPLATES[kind])
                slot = template[template.index("{") + 1 : template.index("}")]
                vals = values.negative(kind, loc)
                b.add(template.replace("{" + slot + "}", "{x}"), vals[slot], kind, negative=True)
        corpus.append(b.build())
        if progress:
            progress()
    return corpus


def long_texts(corpus: list[Text], n: int, size: int, seed: int) -> list[str]:
    """``n`` texts of about ``size`` characters (``size`` on average), each joined from corpus
    texts drawn at random."""
    rng = random.Random(seed + 1)
    pool = [t.text for t in corpus]
    out = []
    for _ in range(n):
        parts: list[str] = []
        length = 0
        while True:
            nxt = pool[rng.randrange(len(pool))]
            # Stop where the next text would overshoot by more than this one falls short.
            if parts and length + len(nxt) / 2 > size:
                break
            parts.append(nxt)
            length += len(nxt) + 1
        out.append(" ".join(parts))
    return out


# -- 2. scoring -----------------------------------------------------------------------------------
def score(
    corpus: list[Text], predicted: list[list[tuple[int, int, str]]], types: tuple[str, ...]
) -> dict[str, Any]:
    """TP/FN/FP, precision, recall and F2 per type; hard negatives flagged, per kind of negative."""
    counts = {t: {"tp": 0, "fn": 0, "fp": 0} for t in types}
    flagged: dict[str, int] = {}
    negatives: dict[str, int] = {}
    misses: dict[str, list[str]] = {t: [] for t in types}
    false_pos: dict[str, list[str]] = {t: [] for t in types}
    for doc, spans in zip(corpus, predicted, strict=True):
        spans = [s for s in spans if s[2] in counts]
        for start, end, kind in doc.entities:
            need = COVER * (end - start)
            hit = any(k == kind and min(end, e) - max(start, s) >= need for s, e, k in spans)
            counts[kind]["tp" if hit else "fn"] += 1
            if not hit and len(misses[kind]) < 12:
                misses[kind].append(doc.text[start:end])
        for s, e, k in spans:
            if not any(k == kind and s < end and e > start for start, end, kind in doc.entities):
                counts[k]["fp"] += 1
                if len(false_pos[k]) < 12:
                    false_pos[k].append(doc.text[max(0, s - 20) : e + 5])
        for start, end, what in doc.negatives:
            negatives[what] = negatives.get(what, 0) + 1
            if any(s < end and e > start for s, e, _ in spans):
                flagged[what] = flagged.get(what, 0) + 1
    per_type = {}
    total = {"tp": 0, "fn": 0, "fp": 0}
    for t, c in counts.items():
        per_type[t] = c | _prf(c)
        for k in total:
            total[k] += c[k]
    return {
        "per_type": per_type,
        "overall": total | _prf(total),
        "hard_negatives": sum(negatives.values()),
        "hard_negatives_flagged": sum(flagged.values()),
        "hard_negatives_flagged_by_kind": {w: flagged.get(w, 0) for w in sorted(negatives)},
        "examples_missed": misses,
        "examples_false_positive": false_pos,
    }


def _prf(c: dict[str, int]) -> dict[str, float]:
    tp, fn, fp = c["tp"], c["fn"], c["fp"]
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    f2 = 5 * p * r / (4 * p + r) if p + r else 0.0
    return {"precision": p, "recall": r, "f2": f2}


# -- 3. Presidio ----------------------------------------------------------------------------------
PRESIDIO = textwrap.dedent(
    """
    import json, pathlib, socket, sys, time

    def offline(*args, **kwargs):
        raise OSError("network disabled by bench/privacy.py")

    socket.socket.connect = offline  # nothing in this run may reach the network
    import tldextract
    import spacy
    from spacy.language import Language
    from presidio_analyzer import AnalyzerEngine
    from presidio_analyzer.nlp_engine import SpacyNlpEngine

    # Email validation asks tldextract for the public suffix list; the bundled snapshot will do.
    tldextract.extract = tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None)

    @Language.component("lower_lemma")
    def lower_lemma(doc):
        # A blank pipeline has no lemmatizer; context words then match the lower-cased token.
        for token in doc:
            token.lemma_ = token.lower_
        return doc

    nlp = spacy.blank("en")
    nlp.add_pipe("lower_lemma")
    engine = SpacyNlpEngine(models=[{"lang_code": "en", "model_name": "blank"}])
    engine.nlp = {"en": nlp}
    analyzer = AnalyzerEngine(nlp_engine=engine, supported_languages=["en"])
    analyzer.registry.remove_recognizer("SpacyRecognizer")
    data = json.loads(pathlib.Path(sys.argv[1]).read_text())
    out = {"short": [], "short_s": [], "long_s": []}
    for text in data["short"]:
        t0 = time.perf_counter()
        res = analyzer.analyze(text=text, language="en")
        out["short_s"].append(time.perf_counter() - t0)
        out["short"].append([[r.start, r.end, r.entity_type, r.score] for r in res])
    for text in data["long"]:
        t0 = time.perf_counter()
        analyzer.analyze(text=text, language="en")
        out["long_s"].append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    out["real"] = [
        [[r.start, r.end, r.entity_type, r.score] for r in analyzer.analyze(text=t, language="en")]
        for t in data["real"]
    ]
    out["real_s"] = time.perf_counter() - t0
    out["recognizers"] = sorted(r.name for r in analyzer.registry.get_recognizers("en", all_fields=True))
    pathlib.Path(sys.argv[2]).write_text(json.dumps(out))
    """
)


def run_presidio(
    python: str, corpus: list[Text], long: list[str], real: list[str]
) -> dict[str, Any] | None:
    """Presidio's spans and timings from its own interpreter, or None (said why) if it failed."""
    with tempfile.TemporaryDirectory() as tmp:
        src = pathlib.Path(tmp) / "presidio_run.py"
        src.write_text(PRESIDIO)
        data = pathlib.Path(tmp) / "corpus.json"
        data.write_text(json.dumps({"short": [t.text for t in corpus], "long": long, "real": real}))
        out = pathlib.Path(tmp) / "spans.json"
        # tldextract keeps its suffix list here; the run uses the bundled snapshot anyway.
        env = os.environ | {"TLDEXTRACT_CACHE": tmp}
        with console.status(
            f"Presidio on {len(corpus):,} + {len(long):,} + {len(real):,} real texts"
        ):
            proc = subprocess.run(
                [python, str(src), str(data), str(out)], env=env, capture_output=True, text=True
            )
        if proc.returncode != 0:
            console.print(f"[red]Presidio failed (exit {proc.returncode}):\n{proc.stderr[-2000:]}")
            return None
        result: dict[str, Any] = json.loads(out.read_text())
    return result


# -- 4. speed -------------------------------------------------------------------------------------
def one_core() -> str:
    """Pin this process to one CPU so that the speed is per core; says which."""
    if hasattr(os, "sched_setaffinity"):
        cpu = sorted(os.sched_getaffinity(0))[-1]
        os.sched_setaffinity(0, {cpu})
        return f"pinned to CPU {cpu}"
    return "not pinned (no sched_setaffinity)"


def speed(detector: Detector, texts: list[str], repeats: int = 3) -> dict[str, Any]:
    """Time ``detector.find`` per text, ``repeats`` passes over ``texts``.

    The first pass gives the plain figures: wall-clock time per text, which on a shared machine
    includes the time the process was waiting for the CPU, and its CPU time. The best of the
    passes per text leaves out most of that interference.
    """
    for text in texts[:100]:
        detector.find(text)
    n = len(texts)
    clock = time.perf_counter_ns
    passes = []
    cpu_ns = []
    for _ in range(repeats):
        times = [0] * n
        c0 = time.thread_time_ns()
        for i, text in enumerate(texts):
            t0 = clock()
            detector.find(text)
            times[i] = clock() - t0
        cpu_ns.append(time.thread_time_ns() - c0)
        passes.append(times)
    first = sorted(passes[0])
    best = sorted(min(per_text) for per_text in zip(*passes, strict=True))
    return {
        "texts": n,
        "mean_chars": statistics.fmean(len(t) for t in texts),
        "texts_per_s": n / (sum(first) / 1e9),
        "p50_us": first[n // 2] / 1e3,
        "p99_us": first[int(n * 0.99)] / 1e3,
        "cpu_texts_per_s": n / (cpu_ns[0] / 1e9),
        "best_of": repeats,
        "best_texts_per_s": n / (sum(best) / 1e9),
        "best_p50_us": best[n // 2] / 1e3,
        "best_p99_us": best[int(n * 0.99)] / 1e3,
    }


# -- 5. real text ---------------------------------------------------------------------------------
REAL_TEXT_MODULES = (
    "numpy",
    "scipy.stats",
    "sqlalchemy",
    "email",
    "http",
    "urllib",
    "json",
    "logging",
    "argparse",
    "pyarrow",
    "duckdb",
    "starlette",
    "pydantic",
    "typer",
    "rich",
    "onnx",
    "sklearn.linear_model",
    "sklearn.ensemble",
    "datetime",
    "ipaddress",
    "uuid",
    "decimal",
    "calendar",
    "locale",
    "socket",
    "ssl",
    "hashlib",
    "phonenumbers",
)
# RFC 2606: domains reserved for documentation and tests.
DOC_DOMAINS = ("example.com", "example.org", "example.net")
DOC_TLDS = (".example", ".test", ".invalid", ".localhost")
# RFC 5737 (IPv4) and RFC 3849 (IPv6): address ranges reserved for documentation.
DOC_NETWORKS = tuple(
    ipaddress.ip_network(n)
    for n in ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "2001:db8::/32")
)
# Characters of context shown either side of a finding.
CONTEXT_CHARS = 30


@dataclass(frozen=True)
class Doc:
    """One docstring of the real-text corpus and where it came from."""

    module: str
    member: str
    text: str


def docstring_corpus(modules: tuple[str, ...] = REAL_TEXT_MODULES) -> tuple[list[Doc], dict]:
    """The docstrings of ``modules`` and of the names in them, each text once.

    Returns the documents, in module order and sorted by name within a module, and per module
    the version of its distribution ("missing" for a module that does not import).
    """
    seen: set[str] = set()
    docs: list[Doc] = []
    versions: dict[str, str] = {}
    distributions = importlib.metadata.packages_distributions()
    with warnings.catch_warnings():
        # Deprecated names warn when read; the bench reads every name.
        warnings.simplefilter("ignore")
        for name in modules:
            try:
                module = importlib.import_module(name)
            except ImportError:
                versions[name] = "missing"
                continue
            dist = distributions.get(name.partition(".")[0])
            versions[name] = (
                f"{dist[0]} {importlib.metadata.version(dist[0])}"
                if dist
                else f"Python {platform.python_version()}"
            )
            members: list[tuple[str, object]] = [("", module)]
            for attr in sorted(dir(module)):
                try:
                    members.append((attr, getattr(module, attr)))
                except Exception:  # a lazy attribute may fail to load
                    continue
            for member, obj in members:
                try:
                    text = inspect.getdoc(obj)
                except Exception:  # a broken __doc__ property
                    continue
                if text and text not in seen:
                    seen.add(text)
                    docs.append(Doc(name, member, text))
    return docs, versions


def documentation_example(kind: str, value: str) -> bool:
    """Whether a finding is an address reserved for documentation (RFC 2606, 5737, 3849)."""
    if kind == "EMAIL":
        domain = value.rpartition("@")[2].lower()
        return domain.endswith(DOC_TLDS) or any(
            domain == d or domain.endswith("." + d) for d in DOC_DOMAINS
        )
    if kind == "IP_ADDRESS":
        try:
            address = ipaddress.ip_address(value.partition("/")[0])
        except ValueError:
            return False
        return any(address in net for net in DOC_NETWORKS if net.version == address.version)
    return False


def _context(text: str, start: int, end: int) -> str:
    lo, hi = max(0, start - CONTEXT_CHARS), min(len(text), end + CONTEXT_CHARS)
    return (text[lo:start] + "[[" + text[start:end] + "]]" + text[end:hi]).replace("\n", "\u23ce")


def real_text_findings(
    docs: list[Doc], spans: list[list[tuple[int, int, str, float]]]
) -> list[dict[str, Any]]:
    """Each finding with its document, text, context and whether it is a documentation example."""
    found = []
    for doc, doc_spans in zip(docs, spans, strict=True):
        for start, end, kind, score_ in doc_spans:
            value = doc.text[start:end]
            found.append(
                {
                    "kind": kind,
                    "module": doc.module,
                    "member": doc.member,
                    "text": value,
                    "context": _context(doc.text, start, end),
                    "score": round(score_, 3),
                    "doc_example": documentation_example(kind, value),
                }
            )
    return found


def real_text_summary(findings: list[dict[str, Any]], megabytes: float) -> dict[str, Any]:
    """Findings and findings per MB per kind, in all and outside documentation examples."""
    per_kind: dict[str, Any] = {}
    for kind in sorted({f["kind"] for f in findings}):
        of_kind = [f for f in findings if f["kind"] == kind]
        outside = [f for f in of_kind if not f["doc_example"]]
        modules: dict[str, int] = {}
        for f in of_kind:
            modules[f["module"]] = modules.get(f["module"], 0) + 1
        per_kind[kind] = {
            "findings": len(of_kind),
            "per_mb": len(of_kind) / megabytes,
            "outside_doc_examples": len(outside),
            "outside_doc_examples_per_mb": len(outside) / megabytes,
            "by_module": dict(sorted(modules.items(), key=lambda kv: -kv[1])),
        }
    outside_all = sum(1 for f in findings if not f["doc_example"])
    return {
        "per_kind": per_kind,
        "findings": len(findings),
        "per_mb": len(findings) / megabytes,
        "outside_doc_examples": outside_all,
        "outside_doc_examples_per_mb": outside_all / megabytes,
    }


def real_text_table(real: dict[str, Any]) -> Table:
    ours = real["modelscale"]
    presidio = real.get("presidio", {})
    table = Table(
        title=f"Real text: findings per MB ({real['megabytes']:.2f} MB, {real['documents']:,} "
        f"docstrings of {len(real['modules'])} modules); in brackets: outside documentation "
        "examples"
    )
    table.add_column("kind")
    table.add_column("modelscale: findings", justify="right")
    table.add_column("modelscale: per MB", justify="right")
    for name in presidio:
        table.add_column(f"{name}: per MB", justify="right")
    for kind in (*KINDS, "all"):
        row = [kind]
        c = ours if kind == "all" else ours["per_kind"].get(kind)
        if c is None:
            row += ["0", "0"]
        else:
            row += [
                f"{c['findings']} ({c['outside_doc_examples']})",
                f"{c['per_mb']:.1f} ({c['outside_doc_examples_per_mb']:.1f})",
            ]
        for res in presidio.values():
            p = res if kind == "all" else res["per_kind"].get(kind)
            if kind in PRESIDIO_NONE:
                row.append("no recognizer")
            elif p is None:
                row.append("0")
            else:
                note = " (all dates)" if kind == "DATE_OF_BIRTH" else ""
                row.append(f"{p['per_mb']:.1f} ({p['outside_doc_examples_per_mb']:.1f}){note}")
        table.add_row(*row)
    return table


def real_findings_table(findings: list[dict[str, Any]]) -> Table:
    table = Table(title="Real text: every modelscale finding (* documentation example)")
    for column in ("kind", "module.member", "context (finding in [[ ]])"):
        table.add_column(column, overflow="fold")
    for f in findings:
        where = f"{f['module']}.{f['member']}" if f["member"] else f["module"]
        # A Text, not a str: code in the context ("x[::2]") is no markup.
        table.add_row(f["kind"] + (" *" if f["doc_example"] else ""), where, RichText(f["context"]))
    return table


# -- output ---------------------------------------------------------------------------------------
def _machine() -> str:
    try:
        for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"{line.split(':', 1)[1].strip()} x {os.cpu_count()}"
    except OSError:
        pass
    return f"{platform.processor() or platform.machine()} x {os.cpu_count()}"


def accuracy_table(results: dict[str, dict[str, Any]]) -> Table:
    table = Table(title="Per type: precision / recall / F2 (TP, FN, FP)")
    table.add_column("type")
    for name in results:
        table.add_column(name, justify="right")
    for t in (*KINDS, "overall"):
        row = [t]
        for name, res in results.items():
            c = res["overall"] if t == "overall" else res["per_type"].get(t)
            if c is None or (name.startswith("presidio") and t in PRESIDIO_NONE):
                row.append("no recognizer")
                continue
            note = " (dates)" if name.startswith("presidio") and t == "DATE_OF_BIRTH" else ""
            row.append(
                f"{c['precision']:.3f} / {c['recall']:.3f} / {c['f2']:.3f}{note}\n"
                f"({c['tp']}, {c['fn']}, {c['fp']})"
            )
        table.add_row(*row)
    row = ["hard negatives flagged"]
    for res in results.values():
        row.append(f"{res['hard_negatives_flagged']} of {res['hard_negatives']}")
    table.add_row(*row)
    return table


TARGET_RECALL = 0.98
TARGET_F2 = 0.95
TARGET_TEXTS_PER_S = 5_000
TARGET_P99_US = 1_000


def check_targets(ours: dict[str, Any], speed_1kb: dict[str, Any]) -> dict[str, Any]:
    """Which acceptance targets modelscale's run meets."""
    per_type = {
        t: {
            "recall": ours["per_type"][t]["recall"],
            "f2": ours["per_type"][t]["f2"],
            "met": ours["per_type"][t]["recall"] >= TARGET_RECALL
            and ours["per_type"][t]["f2"] >= TARGET_F2,
        }
        for t in (*STRUCTURED, "DATE_OF_BIRTH")
    }
    return {
        "recall": TARGET_RECALL,
        "f2": TARGET_F2,
        "texts_per_s": TARGET_TEXTS_PER_S,
        "p99_us": TARGET_P99_US,
        "per_type": per_type,
        "speed_first_pass_met": speed_1kb["texts_per_s"] >= TARGET_TEXTS_PER_S
        and speed_1kb["p99_us"] < TARGET_P99_US,
        "speed_best_of_met": speed_1kb["best_texts_per_s"] >= TARGET_TEXTS_PER_S
        and speed_1kb["best_p99_us"] < TARGET_P99_US,
    }


def targets_table(targets: dict[str, Any]) -> Table:
    table = Table(
        title=f"Targets: recall >= {TARGET_RECALL}, F2 >= {TARGET_F2} per type; "
        f">= {TARGET_TEXTS_PER_S:,} ~1 KB texts/s on one core, p99 < {TARGET_P99_US} us"
    )
    table.add_column("target")
    table.add_column("met")
    for t, c in targets["per_type"].items():
        table.add_row(f"{t} (recall {c['recall']:.3f}, F2 {c['f2']:.3f})", _yes(c["met"]))
    table.add_row("speed, first pass", _yes(targets["speed_first_pass_met"]))
    table.add_row("speed, best of passes", _yes(targets["speed_best_of_met"]))
    return table


def _yes(met: bool) -> str:
    return "[green]yes" if met else "[red]no"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n", 1)[0])
    p.add_argument("--texts", type=int, default=10_000, help="labelled corpus texts")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--long", type=int, default=2_000, help="~1 KB texts for the speed run")
    p.add_argument("--presidio", default="/tmp/presidio/bin/python", help="'' skips Presidio")
    p.add_argument("--presidio-long", type=int, default=200, help="1 KB texts Presidio times")
    p.add_argument(
        "--real-text",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="findings on the docstrings of installed packages",
    )
    p.add_argument("--out", default=str(ROOT / "bench" / "results" / "privacy.json"))
    args = p.parse_args(argv)
    t_start = time.perf_counter()

    with Progress(console=console, transient=True) as bar:
        task = bar.add_task("corpus", total=args.texts)
        corpus = build_corpus(args.texts, args.seed, lambda: bar.advance(task))
    long = long_texts(corpus, args.long, 1024, args.seed)
    n_entities = sum(len(t.entities) for t in corpus)
    console.print(
        f"corpus: {len(corpus):,} texts, {n_entities:,} entities, "
        f"{sum(len(t.negatives) for t in corpus):,} hard negatives; {len(long):,} ~1 KB texts"
    )

    detector = Detector()
    ours: list[list[tuple[int, int, str]]] = []
    with Progress(console=console, transient=True) as bar:
        task = bar.add_task("modelscale", total=len(corpus))
        for doc in corpus:
            ours.append([(s.start, s.end, s.kind) for s in detector.find(doc.text)])
            bar.advance(task)
    results: dict[str, dict[str, Any]] = {"modelscale": score(corpus, ours, KINDS)}

    docs: list[Doc] = []
    real: dict[str, Any] = {"ran": False}
    if args.real_text:
        with console.status("docstrings of installed packages"):
            docs, versions = docstring_corpus()
        megabytes = sum(len(d.text.encode()) for d in docs) / 1e6
        t0 = time.perf_counter()
        real_spans = [
            [(s.start, s.end, s.kind, s.score) for s in detector.find(d.text)] for d in docs
        ]
        seconds = time.perf_counter() - t0
        findings = real_text_findings(docs, real_spans)
        real = {
            "ran": True,
            "modules": versions,
            "documents": len(docs),
            "megabytes": megabytes,
            "modelscale_seconds": seconds,
            "modelscale": real_text_summary(findings, megabytes),
            "modelscale_findings": findings,
        }
        console.print(
            f"real text: {len(docs):,} docstrings, {megabytes:.2f} MB, "
            f"{len(findings)} modelscale findings in {seconds:.2f} s"
        )

    pinned = one_core()
    speed_ours = speed(detector, long)
    speed_short = speed(detector, [t.text for t in corpus])

    presidio: dict[str, Any] = {"ran": False}
    python = args.presidio
    raw = None
    if python and pathlib.Path(python).exists():
        raw = run_presidio(python, corpus, long[: args.presidio_long], [d.text for d in docs])
    elif python:
        console.print(
            f"[yellow]Presidio skipped: no interpreter at {python!r}. Create one with: "
            "python -m venv /tmp/presidio && /tmp/presidio/bin/pip install presidio-analyzer faker"
        )
    if raw is not None:
        for threshold in (0.0, 0.5):
            spans = [
                [
                    (s, e, PRESIDIO_TYPES[k])
                    for s, e, k, sc in doc_spans
                    if k in PRESIDIO_TYPES and sc >= threshold
                ]
                for doc_spans in raw["short"]
            ]
            results[f"presidio (>= {threshold})"] = score(corpus, spans, KINDS)
        if real["ran"]:
            real["presidio"] = {}
            for threshold in (0.0, 0.5):
                scored = [
                    [
                        (s, e, PRESIDIO_TYPES[k], sc)
                        for s, e, k, sc in doc_spans
                        if k in PRESIDIO_TYPES and sc >= threshold
                    ]
                    for doc_spans in raw["real"]
                ]
                found = real_text_findings(docs, scored)
                real["presidio"][f"presidio (>= {threshold})"] = real_text_summary(
                    found, real["megabytes"]
                ) | {
                    "examples": {
                        k: [f["context"] for f in found if f["kind"] == k][:8] for k in KINDS
                    }
                }
            real["presidio_seconds"] = raw["real_s"]
        presidio = {
            "ran": True,
            "python": python,
            "recognizers": raw["recognizers"],
            "language": "en (English recognizers on every locale's texts)",
            "no_recognizer_for": list(PRESIDIO_NONE),
            "short_texts_per_s": len(raw["short_s"]) / sum(raw["short_s"]),
            "short_p50_us": statistics.median(raw["short_s"]) * 1e6,
            "short_p99_us": sorted(raw["short_s"])[int(len(raw["short_s"]) * 0.99)] * 1e6,
            "long_texts": len(raw["long_s"]),
            "long_texts_per_s": len(raw["long_s"]) / sum(raw["long_s"]),
            "long_p50_us": statistics.median(raw["long_s"]) * 1e6,
            "long_p99_us": sorted(raw["long_s"])[int(len(raw["long_s"]) * 0.99)] * 1e6,
        }

    targets = check_targets(results["modelscale"], speed_ours)
    out = Console(width=150)
    out.print(accuracy_table(results))
    sp = Table(title=f"Speed, one core ({pinned}; load average {os.getloadavg()[0]:.1f})")
    for column in ("tool", "texts", "texts/s", "p50 us", "p99 us", "CPU texts/s"):
        sp.add_column(column, justify="left" if column in ("tool", "texts") else "right")
    sp.add_column(f"best of {speed_ours['best_of']}: texts/s, p50, p99", justify="right")
    for name, s in (("modelscale, ~1 KB", speed_ours), ("modelscale, corpus texts", speed_short)):
        sp.add_row(
            name, f"{s['texts']:,} x {s['mean_chars']:.0f} ch", f"{s['texts_per_s']:,.0f}",
            f"{s['p50_us']:.0f}", f"{s['p99_us']:.0f}", f"{s['cpu_texts_per_s']:,.0f}",
            f"{s['best_texts_per_s']:,.0f}, {s['best_p50_us']:.0f}, {s['best_p99_us']:.0f}",
        )  # fmt: skip
    if presidio["ran"]:
        sp.add_row(
            "presidio, corpus texts", f"{len(corpus):,}", f"{presidio['short_texts_per_s']:,.0f}",
            f"{presidio['short_p50_us']:.0f}", f"{presidio['short_p99_us']:.0f}", "", "",
        )  # fmt: skip
        sp.add_row(
            "presidio, ~1 KB", f"{presidio['long_texts']:,}", f"{presidio['long_texts_per_s']:,.0f}",
            f"{presidio['long_p50_us']:.0f}", f"{presidio['long_p99_us']:.0f}", "", "",
        )  # fmt: skip
    out.print(sp)
    if presidio["ran"]:
        out.print(
            "Presidio: pattern recognizers only (blank spaCy pipeline, no NER), English "
            f"recognizers on every locale; no recognizer for {', '.join(PRESIDIO_NONE)}; its "
            "DATE_TIME is scored as DATE_OF_BIRTH for comparison only (so it flags every date, "
            "plain dates and timestamps among the hard negatives included)."
        )
    out.print(targets_table(targets))
    if real["ran"]:
        out.print(real_findings_table(real["modelscale_findings"]))
        out.print(real_text_table(real))
        out.print(
            "Real text: documentation examples are e-mail domains of RFC 2606 and addresses of "
            "RFC 5737 / 3849 ranges. Presidio's DATE_TIME is every date, not dates of birth."
        )

    report = {
        "corpus": {
            "texts": len(corpus),
            "entities": n_entities,
            "entities_per_type": {
                k: sum(1 for t in corpus for e in t.entities if e[2] == k) for k in KINDS
            },
            "locales": list(LOCALES),
            "hard_negatives": sum(len(t.negatives) for t in corpus),
            "cover": COVER,
        },
        "accuracy": results,
        "speed": {"modelscale_1kb": speed_ours, "modelscale_short": speed_short, "pinned": pinned},
        "presidio": presidio,
        "real_text": real,
        "targets": targets,
        "meta": {
            "seconds": time.perf_counter() - t_start,
            "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "machine": _machine(),
            "load_avg_at_start": os.getloadavg(),
            "seed": args.seed,
        },
    }
    out_path = pathlib.Path(args.out)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(report, indent=1, default=str))
    console.print(f"wrote {out_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
