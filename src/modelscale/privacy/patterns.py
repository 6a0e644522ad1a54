"""The regular expressions the personal-data detector scans with.

A pattern that runs over a whole text starts with one character class or a literal: the regex
engine then skips, in C, the positions where no match can start, while a pattern that begins
with an alternation or a look-behind is tried at every position and costs several times as much.
The others only run at an anchor (an "@", a "-----BEGIN") or over a candidate.
"""

from __future__ import annotations

import re

__all__ = [
    "CASE_WORD",
    "CODE_CALL",
    "CREDENTIAL_ANCHORS",
    "CREDENTIAL_TOKEN",
    "CREDENTIAL_WORDS",
    "DATE_NUMERIC",
    "DATE_WORDS",
    "EMAIL_DOMAIN",
    "HEX_BLOCK",
    "IDENTIFIER",
    "IPV4",
    "MONTHS",
    "NUMERIC",
    "PASSWORD_WORD",
    "PEM_BEGIN",
    "PLACEHOLDER",
    "SECRET_ASSIGNMENT",
    "SECTION_WORDS",
    "URL_USERINFO",
    "VERSION_BEFORE",
]

# A run of digits with short separator runs between them, optionally led by "+" or "(" and
# followed by a phone extension, or an IBAN-like token: two upper-case letters, two check digits
# and groups of four. One character class first (see the module docstring); the look-behinds
# then branch on which character that was. The numeric branch must not be glued to a word, an
# e-mail, a decimal point or a path: "v2.13.0", "#A12345678", "550e8400-e29b-..." start no match.
# A quote may come first: "{'phone': '020 7946 0958'}" is how a program prints a phone number.
NUMERIC = re.compile(
    r"""
    [0-9A-Z+(]
    (?:
        (?<=[A-Z])(?<![\w@+\-/][A-Z])[A-Z][0-9]{2}(?P<iban>(?:\ ?[A-Z0-9]{4}){2,7}(?:\ ?[A-Z0-9]{1,4})?)
      |
        (?<![\w@+.,/\-\u00a3$\u20ac][0-9+(])(?<!:[0-9(])
        (?:(?<=[+(])\ ?\+?\ ?(?=[0-9])|(?<=[0-9]))
        (?:[\ \-./()\u00a0]{0,3}[0-9]){3,24}
        (?P<ext>\ ?(?:x|ext\.?|extension)\ ?[0-9]{1,6})?
    )
    (?![\w@]|[\-.]\w)
    """,
    re.VERBOSE,
)

# An IPv4 address, or a network in CIDR notation ("192.0.2.0/24").
IPV4 = re.compile(
    r"([0-9]{1,3})\.([0-9]{1,3})\.([0-9]{1,3})\.([0-9]{1,3})(?:/(?P<prefix>[0-9]{1,2}))?\Z"
)

# "version 1.2.3.4", "v 10.0.0.1", "build: 4.5.6.7" are versions, not addresses.
VERSION_BEFORE = re.compile(
    r"(?:\bversion|\bver\.?|\bv|\brelease|\bbuild|\bfirmware|\bfw|\brev\.?|\bvsn)\s*[:=#]?\s*\Z",
    re.IGNORECASE,
)

# Words before four dotted numbers that make them the number of a part of a document
# ("Section 2.2.24.1", "§ 7.4.7.1"), compared with the last word before the number, lower-cased
# and without a final "." or ":". A set lookup: a search for them costs more than the check.
SECTION_WORDS = frozenset(
    {
        "section",
        "sections",
        "sec",
        "secs",
        "sect",
        "§",
        "chapter",
        "chapters",
        "ch",
        "clause",
        "clauses",
        "paragraph",
        "paragraphs",
        "para",
        "appendix",
    }
)

# Numeric dates: year first (1987-04-23) or year last (23.04.1987, 04/23/87).
DATE_NUMERIC = re.compile(
    r"""
    (?:(?P<y1>[0-9]{4})(?P<s1>[\-./])(?P<a1>[0-9]{1,2})(?P=s1)(?P<b1>[0-9]{1,2})
      |(?P<a2>[0-9]{1,2})(?P<s2>[\-./])(?P<b2>[0-9]{1,2})(?P=s2)(?P<y2>[0-9]{4}|[0-9]{2}))
    """,
    re.VERBOSE,
)

# Month names of the languages the default phone regions speak, with common abbreviations.
MONTHS: dict[str, int] = {
    name: number
    for number, names in enumerate(
        (
            "january jan januar janvier enero gennaio januari janv",
            "february feb februar février fevrier febrero febbraio februari févr fevr",
            "march mar märz maerz mars marzo maart",
            "april apr avril abril aprile avr",
            "may mai mayo maggio mei",
            "june jun juni juin junio giugno",
            "july jul juli juillet julio luglio juil",
            "august aug août aout agosto augustus",
            "september sep sept septembre septiembre setiembre settembre",
            "october oct oktober octobre octubre ottobre okt",
            "november nov novembre noviembre",
            "december dec dezember décembre decembre diciembre dicembre déc dez",
        ),
        start=1,
    )
    for name in names.split()
}
_MONTH = "|".join(sorted(MONTHS, key=len, reverse=True))

# "23 April 1987", "23. April 1987", "1er avril 1987", "23 de abril de 1987", "April 23, 1987",
# in lower-cased text, ending at a year the numeric scan found.
DATE_WORDS = re.compile(
    rf"""
    \b(?:
        (?P<d1>[0-9]{{1,2}})(?:st|nd|rd|th|er|\.|º)?\s+(?:de\s+)?
        (?P<m1>{_MONTH})\.?,?\s+(?:de\s+|del\s+)?
      |
        (?P<m2>{_MONTH})\.?\s+(?P<d2>[0-9]{{1,2}})(?:st|nd|rd|th)?,?\s+
    )
    [0-9]{{4}}\Z
    """,
    re.VERBOSE,
)

# Hexadecimal groups joined by ":" (IPv6, MAC) or "-" (MAC), or three dotted groups of four
# (Cisco MAC). Matched from an anchor found with str.find, not scanned over the whole text.
HEX_BLOCK = re.compile(
    r"""
    (?:[0-9A-Fa-f]{0,4}:){2,7}(?:(?:[0-9]{1,3}\.){3}[0-9]{1,3}|[0-9A-Fa-f]{1,4})?
    |[0-9A-Fa-f]{2}(?:-[0-9A-Fa-f]{2}){5}
    |[0-9A-Fa-f]{4}\.[0-9A-Fa-f]{4}\.[0-9A-Fa-f]{4}
    """,
    re.VERBOSE,
)

EMAIL_DOMAIN = re.compile(
    r"@[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?)*\.[A-Za-z]{2,24}(?![\w\-])"
)

# Where a token of a known format may start, each pattern led by a literal so that the engine
# finds it with a fast substring search: "AKIA...", "ghp_...", "xoxb-...", "sk_live_...",
# "sk-...", "eyJ..." (a JWT). The number is how far before the anchor the token starts.
CREDENTIAL_ANCHORS: tuple[tuple[re.Pattern[str], int], ...] = (
    (re.compile(r"A(?:KIA|SIA|Iza)"), 0),
    (re.compile(r"g(?:h[pousr]|ithub_pat)_"), 0),
    (re.compile(r"xox[abposr]-"), 0),
    (re.compile(r"k_(?:live|test)_"), 1),
    (re.compile(r"sk-"), 0),
    (re.compile(r"eyJ"), 0),
)

CREDENTIAL_TOKEN = re.compile(
    r"""
    (?<![\w\-])
    (?:
        (?P<aws>(?:AKIA|ASIA)[0-9A-Z]{16})
      | (?P<github>gh[pousr]_[A-Za-z0-9]{36,255}|github_pat_[A-Za-z0-9_]{22,255})
      | (?P<slack>xox[abposr]-[A-Za-z0-9\-]{10,250})
      | (?P<stripe>[sr]k_(?:live|test)_[A-Za-z0-9]{16,247})
      | (?P<google>AIza[0-9A-Za-z_\-]{35})
      | (?P<openai>sk-(?:proj-|ant-|svcacct-)?[A-Za-z0-9_\-]{20,200})
      | (?P<jwt>eyJ[A-Za-z0-9_\-]{5,}\.eyJ[A-Za-z0-9_\-]{5,}\.[A-Za-z0-9_\-]{8,})
    )
    (?![\w\-])
    """,
    re.VERBOSE,
)

# The first line of a private key block; the scanner looks for its END line by substring.
PEM_BEGIN = re.compile(r"-----BEGIN (?P<label>[A-Z0-9 ]{0,40}PRIVATE KEY(?: BLOCK)?)-----")

# Words after which a token is a secret ("api_key=...", "password: ...", "Bearer ..."), as they
# appear in lower-cased text; each occurrence anchors a SECRET_ASSIGNMENT match.
CREDENTIAL_WORDS = (
    "key",
    "token",
    "secret",
    "pass",  # also "password", "passwort", "mot de passe"
    "pwd",
    "bearer",
    "credential",
    "kennwort",
    "contraseña",
    "wachtwoord",
)
# The words whose value may be a short password: "password: Tr0ub4dor&3" (not "Passau").
PASSWORD_WORD = re.compile(
    r"(?:pass(?:word|wd|wort|phrase|code|e)?s?|pwd|kennwort|contraseña|wachtwoord)\Z",
    re.IGNORECASE,
)

# A URL's user and password: "postgres://app:s3cret@db:5432/app". Matched at each "://".
URL_USERINFO = re.compile(r"://[^\s/:@\[\]]{1,64}:(?P<password>[^\s/@]{1,128})@[\w\[]")

# What a secret's value is not: a call in code, the value cut at the quote or space after its
# bracket ("SecretStr(", "SecretBytes(b", "ForeignKeyTarget(schema=None", "select(Order).op"), and
# an identifier or a dotted path of letters ("_duckdb._sqltypes.DuckDBPyType").
CODE_CALL = re.compile(r"[A-Za-z_][\w.]*\((?:b?\Z|[()]|[A-Za-z_][\w.]*[=(),])")
IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z_.]*")
# The words of an identifier: "HTTPSConnectionPool" is HTTPS, Connection, Pool.
CASE_WORD = re.compile(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])")
# The slot of a template or a redacted value where a secret would go: "<password>",
# "${DB_PASSWORD}", "{pw}", "$API_KEY", "%(password)s", "[REDACTED]".
PLACEHOLDER = re.compile(r"<[^<>]*>|\$?\{[^{}]*\}|\$[A-Z_][A-Z0-9_]*|%\([^()]*\)s|\[[^\[\]]*\]")

SECRET_ASSIGNMENT = re.compile(
    r"""
    (?P<word>(?:key|token|secret|pass|pwd|bearer|credential|kennwort|contraseña|wachtwoord)
    [\w\-]{0,20})(?![\w\-])["']?\]?\s{0,3}
    (?P<sep>[:=]|=>|\bis\b|\bist\b|\best\b|\bes\b|\bé\b)?\s{0,3}["'`]?
    (?P<value>[^\s"'`,;<>]{8,512})
    """,
    re.VERBOSE | re.IGNORECASE,
)
