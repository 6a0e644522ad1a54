"""Context: what the words and the text around a match say about its kind.

A nine-digit number after "SSN" is more likely a social security number, a phone number after
"order" less likely a phone number, and a date is a date of birth only after a birth word. The
words are looked up token by token (set lookups, no regular expression over the window), which
keeps the cost per match to a few microseconds.

The text around a match says where it stands: in code (an argument, a list element, a doctest
line), in a subscript ("x[::2]"), as the number of a section ("Section 2.2.24.1"), or in the
user part of a URL ("https://samuel:pass@example.com"). These are checks of a few characters.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from modelscale.privacy.patterns import SECTION_WORDS

__all__ = [
    "BEFORE",
    "BOOST",
    "CONTEXT",
    "PENALTY",
    "ContextWords",
    "context_delta",
    "in_code",
    "section_number",
    "subscript_slice",
    "url_userinfo",
]

# How far before (and after) a match context words count, in characters.
BEFORE = 48
AFTER = 32
# Score moves for a context word of the kind, and for a reference word ("order", "invoice").
BOOST = {"PHONE": 0.25, "CREDIT_CARD": 0.1, "US_SSN": 0.35, "IP_ADDRESS": 0.1}
PENALTY = {"PHONE": 0.4, "CREDIT_CARD": 0.4, "US_SSN": 0.35}

# Kinds whose words may follow the match: "555-0100 (mobile)". A date followed by "birthday"
# is as often the next sentence's subject.
_AFTER_KINDS = frozenset({"PHONE", "CREDIT_CARD", "US_SSN", "IP_ADDRESS"})
# Context words written with a full stop that does not end the sentence: "Tel. Nr.", "geb.".
_ABBREVIATIONS = frozenset({"tel", "tél", "tlf", "tfno", "mob", "geb", "d.o.b", "dob"})
_PUNCTUATION = "\"'()[]{}<>,;:!?.#*=/\u2013\u2014"
_NUMBER = re.compile(r"[0-9]{2}")
# Prompts of a doctest session, and how far back a line of code is looked for.
_DOCTEST = (">>>", "...")
_CODE_LINE = 120
_TRAILING = frozenset(",.;:!?)\"'")


class ContextWords:
    """The context words of one kind: words that raise its score and words that lower it.

    Words are compared with the lower-cased tokens of a window, without their punctuation and
    without what follows a hyphen ("ISBN-10:" is "isbn"). A word ending with "*" is a prefix
    ("call*" is also "calls", "called", "callback"); the others are whole words.
    """

    __slots__ = ("down", "up", "up_prefixes", "weak")

    def __init__(self, up: str, down: Iterable[str] = (), weak: str = "") -> None:
        words = up.split()
        self.up = frozenset(w for w in words if not w.endswith("*"))
        self.up_prefixes = tuple(w[:-1] for w in words if w.endswith("*"))
        self.down = frozenset(down)
        # Words of the kind that a reference word before them overrides: "my number is" but
        # "order number".
        self.weak = frozenset(weak.split())

    def kind_word(self, token: str) -> bool:
        """Whether a normalized token is one of the kind's own words."""
        return token in self.up or token.startswith(self.up_prefixes)


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


# Numbers near these words are references of a business process, not of a person.
_REFERENCE = _words(
    "order invoice tracking track version ver build ticket ref reference sku serial isbn issn "
    "receipt transaction txn shipment parcel case po bestellung rechnung commande facture "
    "pedido factura ordine fattura bestelling factuur commit revert reverted hash sha checksum "
    # Numbers of a document or a standard: "pp. 251-252", "RFCs 2045-2047", "Std 754-2008";
    # not "page" or "volume", which are names too ("Pages-Becker").
    "pp vol doi arxiv rfc rfcs std iso iec ieee copyright"
)

CONTEXT: dict[str, ContextWords] = {
    "PHONE": ContextWords(
        "phone* tel tél tlf tfno teleph* telef* téléph* teléf* call* mobile mob mobil mobiel "
        "móvil movil cell cells cellphone* cellular cellulare fax contact* reach* dial dialed "
        "dialled ring sms text texts whatsapp hotline handy portable appelez appeler appelle* "
        "llam* lláma* chiam* bellen bel ruf rufen rufnummer* anruf* erreichbar",
        _REFERENCE,
        weak="number numbers numéro número numero nummer",
    ),
    "CREDIT_CARD": ContextWords(
        "card* credit* debit* visa mastercard master amex american discover diners jcb maestro "
        "cc pan kreditkarte* karte carte* tarjeta* carta* kaart* creditcard*",
        _REFERENCE,
    ),
    "US_SSN": ContextWords(
        "ssn* ss social* soc taxpayer* tin itin", _REFERENCE | _words("phone tel call fax")
    ),
    "IP_ADDRESS": ContextWords("ip ipv4 ipv6 address addr host* server* client* remote* src dst"),
    "DATE_OF_BIRTH": ContextWords(
        "born birth* dob d.o.b geboren geb geburt* né née naissance nacid* nació nacimiento "
        "nato nata nascita geboorte* cumpleaños compleanno anniversaire",
        _REFERENCE | _words("due expires expire expiry valid issued meeting delivered"),
    ),
}


def context_delta(kind: str, text: str, start: int, end: int, *, weak: bool = True) -> float:
    """How much the words around ``text[start:end]`` move the score of a ``kind`` match.

    The words before the match are read backwards, and the first that says something decides:
    a word of the kind ("phone") raises the score, a reference word ("order") lowers it. The
    reading stops at the end of the previous sentence or paragraph, at a doctest prompt and at
    another number ("order 4821, call 555-0100": "order" is about 4821). When nothing before
    decides, a word of the kind just after the match ("555-0100 (mobile)") raises the score
    too. With ``weak`` off, the kind's weak words ("number") raise nothing: "the number
    12345000" is no phone number.
    """
    words = CONTEXT.get(kind)
    if words is None:
        return 0.0
    lo = max(0, start - BEFORE)
    # A blank line ends what the words before can say, as a full stop does.
    paragraph = text.rfind("\n\n", lo, start)
    tokens = text[lo if paragraph == -1 else paragraph : start].split()
    if paragraph == -1 and start > BEFORE and tokens and not text[lo - 1].isspace():
        tokens.pop(0)  # cut by the window's edge
    following = text[start : start + 1]
    found_weak = False
    # The word sets as locals: this loop runs for every token before every candidate.
    up, up_prefixes, down = words.up, words.up_prefixes, words.down
    weak_words = words.weak if weak else frozenset()
    for raw in reversed(tokens):
        token, number = _read(raw)
        if not token and raw == ">>>":
            break  # a doctest prompt starts a statement of code
        ends_sentence = raw[-1] in ".!?" and following[:1].isupper()
        # An abbreviation of the kind's word decides even before a capital ("Tel. Nr. 030").
        if (token in up or token.startswith(up_prefixes)) and (
            not ends_sentence or token in _ABBREVIATIONS
        ):
            return BOOST.get(kind, 0.3)
        # Another number, or an address ("x@y.org"), belongs to the words before it.
        if number or ends_sentence or "@" in raw:
            break
        if token in down:
            return -PENALTY.get(kind, 0.3)
        if token in weak_words:
            found_weak = True
        following = raw
    if found_weak:
        return BOOST.get(kind, 0.3)
    if kind in _AFTER_KINDS:
        tokens = text[end : end + AFTER].split()
        if end + AFTER < len(text) and tokens and not text[end + AFTER].isspace():
            tokens.pop()  # cut by the window's edge
        for i, raw in enumerate(tokens[:3]):
            # A capital starts the next sentence or item, unless in brackets: "(Mobile)".
            if raw[0].isupper():
                break
            token, number = _read(raw)
            if words.kind_word(token):
                # "tel. +44 ..." and "mobile: ..." label the number after them.
                label = raw[-1] == ":" or (i + 1 < len(tokens) and _read(tokens[i + 1])[1])
                return 0.0 if label else BOOST.get(kind, 0.3)
            if number or token in words.down or raw[-1] in ".!?":
                break
    return 0.0


def url_userinfo(text: str, start: int) -> bool:
    """Whether the e-mail-like match at ``start`` is the password and host of a URL
    ("https://samuel:pass@example.com"), whose password is a credential, not an address."""
    if text[start - 1 : start] != ":":
        return False
    scheme = text.rfind("://", max(0, start - 80), start)
    return scheme != -1 and not any(c.isspace() for c in text[scheme:start])


def section_number(text: str, start: int, end: int) -> bool:
    """Whether four dotted numbers ``text[start:end]`` number a part of a document: after a word
    such as "Section" or "§" ("Section 2.2.24.1"), or opening a line or a quotation with a full
    stop after them ('"7.4.7.1. Tukey's Method"'), where an address would end a sentence."""
    words = text[max(0, start - 16) : start].split()
    if words and words[-1].lower().rstrip(".:") in SECTION_WORDS:
        return True
    return (
        text[end : end + 1] == "."
        and text[end + 1 : end + 2] in ("", " ", "\n", "\t")
        and (start == 0 or text[start - 1] in "\n\"'\u201c\u2018")
    )


def in_code(text: str, start: int, end: int) -> bool:
    """Whether the number ``text[start:end]`` is a value in code: an argument, an assignment,
    a list element, a JSON value or a line of a doctest session and its output."""
    before = text[start - 1] if start else ""
    if before in ("=", "[") or (before == "(" and start > 1 and not text[start - 2].isspace()):
        return True
    after = text[end : end + 1]
    if after == "]":
        return True
    # Code lines are short; a prose paragraph of a log line is read no further back than this.
    lo = max(0, start - _CODE_LINE)
    newline = text.rfind("\n", lo, start)
    head = text[newline + 1 if newline != -1 else lo : start]
    if head.rstrip().endswith(("=", '":', "':")):
        return True
    if after == "," and head.count("[") > head.count("]"):
        return True
    if newline == -1 and lo > 0:
        return False  # the line starts farther back: no doctest line
    if head.lstrip().startswith(_DOCTEST):
        return True
    if newline == -1:
        return False
    # The output of a doctest line follows it.
    previous = text.rfind("\n", max(0, newline - _CODE_LINE), newline)
    return text[previous + 1 : newline].lstrip().startswith(">>>")


def subscript_slice(text: str, start: int, end: int, groups: list[str]) -> bool:
    """Whether ``text[start:end]``, split at its colons into ``groups``, is a slice in a
    subscript ("x[::2]", "np.s_[2::2]", "a[:, 1::2]"): at most two decimal numbers."""
    return (
        (text[start - 1 : start] == "[" or text[end : end + 1] == "]")
        and sum(1 for g in groups if g) <= 2
        and all(g.isdigit() for g in groups if g)
    )


def _read(raw: str) -> tuple[str, bool]:
    """A window token as a word to look up, and whether it is a number.

    "ISBN-10:" reads as the word "isbn" and is no number (a label); "0-459-10354-7" and "4821,"
    are numbers.
    """
    # Most tokens are a word, or a word and a comma or a full stop: nothing else to strip.
    if raw.isalpha():
        return raw.lower(), False
    if raw[-1] in _TRAILING and raw[:-1].isalpha():
        return raw[:-1].lower(), False
    stripped = raw.lower().strip(_PUNCTUATION)
    word = stripped.partition("-")[0]
    return word, not word.isalpha() and _NUMBER.search(stripped) is not None
