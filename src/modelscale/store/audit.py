"""The audit log's hash chain: how an entry is hashed, and checking a chain end to end.

Each entry's hash is SHA-256 over the previous entry's hash and the entry's canonical JSON (id,
time in microseconds, actor, action, target, details; sorted keys, no spaces). The first entry
follows ``GENESIS``. When retention removes the oldest entries, the purge appends an entry naming
the id and hash the remaining chain starts after, so a check can tell a purge from a deletion.
Tampering that rewrites every later hash as well is out of reach of any chain stored beside the
data; ``modelscale privacy audit`` prints the newest hash so that it can be kept elsewhere.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

__all__ = ["GENESIS", "AuditCheck", "AuditEntry", "entry_hash", "verify_chain"]

GENESIS = "0" * 64
"""The ``prev_hash`` of the first entry ever written."""


@dataclass(frozen=True)
class AuditEntry:
    """One entry of the audit log."""

    id: int
    at: dt.datetime
    actor: str
    """Who: an API key's id, ``cli:<user>``, or ``server``."""
    action: str
    """What, e.g. ``logs.read``, ``keys.create``, ``privacy.purge``."""
    target: str
    details: dict[str, Any] = field(default_factory=dict)
    prev_hash: str = GENESIS
    hash: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "id": self.id,
            "at": self.at.isoformat(),
            "actor": self.actor,
            "action": self.action,
            "target": self.target,
            "details": self.details,
            "prev_hash": self.prev_hash,
            "hash": self.hash,
        }


def entry_hash(
    prev_hash: str,
    *,
    id: int,
    at: dt.datetime,
    actor: str,
    action: str,
    target: str,
    details: dict[str, Any],
) -> str:
    """The hash of an entry chained after ``prev_hash``."""
    micros = round(at.astimezone(dt.UTC).timestamp() * 1_000_000)
    body = orjson.dumps(
        {
            "id": id,
            "at": micros,
            "actor": actor,
            "action": action,
            "target": target,
            "details": details,
        },
        option=orjson.OPT_SORT_KEYS,
    )
    return hashlib.sha256(prev_hash.encode("ascii") + body).hexdigest()


@dataclass(frozen=True)
class AuditCheck:
    """What checking the chain found."""

    ok: bool
    entries: int
    first_id: int | None
    last_hash: str
    problems: list[str]


def verify_chain(entries: Sequence[AuditEntry]) -> AuditCheck:
    """Check ``entries`` (in id order): every hash recomputes and links to the one before.

    The first entry must follow ``GENESIS`` or be preceded by a purge entry's anchor (the purge
    names the id and hash it kept the chain after).
    """
    problems: list[str] = []
    prev: str | None = None
    anchors = {
        e.details.get("chain_after_hash")
        for e in entries
        if e.action == "privacy.purge" and e.details.get("chain_after_hash")
    }
    for e in entries:
        expected = entry_hash(
            e.prev_hash,
            id=e.id,
            at=e.at,
            actor=e.actor,
            action=e.action,
            target=e.target,
            details=e.details,
        )
        if expected != e.hash:
            problems.append(f"entry {e.id} ({e.action}) does not match its hash: it was changed")
        if prev is None:
            if e.prev_hash != GENESIS and e.prev_hash not in anchors:
                problems.append(
                    f"entry {e.id} follows {e.prev_hash[:12]}..., which is neither the start of "
                    "the log nor a purge's anchor: entries before it were removed"
                )
        elif e.prev_hash != prev:
            problems.append(
                f"entry {e.id} does not follow entry before it: an entry was removed, "
                "inserted or changed"
            )
        prev = e.hash
    return AuditCheck(
        ok=not problems,
        entries=len(entries),
        first_id=entries[0].id if entries else None,
        last_hash=prev or GENESIS,
        problems=problems,
    )
