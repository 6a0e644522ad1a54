"""The privacy audit: is the audit log intact, what is stored under which policy, what is past
retention, who read what, and is there personal data in what was stored.

``privacy_audit`` answers all five from the knowledge base and the request log, and stores its
answer as a run of kind ``privacy`` (what ``modelscale check`` reads as "the last audit").
"""

from __future__ import annotations

import collections
import datetime as dt
import getpass
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import orjson
import pyarrow.parquet as pq

from modelscale.config import DeploymentSpec, RetentionSpec
from modelscale.privacy.retention import CLASSES, expired_files
from modelscale.result import Result
from modelscale.store import verify_chain

if TYPE_CHECKING:
    from modelscale.observe import LogLocation
    from modelscale.store import Store

__all__ = ["PrivacyAudit", "cli_actor", "privacy_audit"]

_SCAN_COLUMNS = ("payload", "error", "request_id")


def cli_actor() -> str:
    """The actor the CLI appends as: ``cli:<login name>``."""
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"


@dataclass(frozen=True)
class PrivacyAudit(Result):
    """The privacy audit's findings; ``ok`` is false when anything needs attention."""

    kind: ClassVar[str] = "privacy"

    ok: bool
    chain_ok: bool
    chain_entries: int
    chain_last_hash: str
    chain_problems: list[str]
    stored: dict[str, dict[str, Any]]
    """Per data class: files (or rows), bytes, oldest time, TTL."""
    past_retention: dict[str, int]
    policies: dict[str, dict[str, Any]]
    """Per model: its field policies and whether payloads are logged."""
    readers: list[dict[str, Any]]
    """Per actor and action: how many times, last time, targets."""
    findings: dict[str, int]
    """Personal data found in stored logs, by kind (should be empty)."""
    examples: list[dict[str, str]]
    """Where each kind was first found (file, column, the kind): never the value."""
    scanned_rows: int
    scanned_files: int
    params: dict[str, Any] = field(default_factory=dict)

    def problems(self) -> list[str]:
        """What makes the audit fail, one line each."""
        out = list(self.chain_problems)
        for cls, n in self.past_retention.items():
            if n:
                out.append(f"{n} {cls} file(s) are past their retention: run `privacy purge`")
        for kind, n in self.findings.items():
            out.append(f"{n} unredacted {kind} found in stored logs")
        return out


def _inventory(location: LogLocation | None, store: Store | None) -> dict[str, dict[str, Any]]:
    from modelscale.privacy.retention import _files

    out: dict[str, dict[str, Any]] = {c: {"items": 0, "bytes": 0, "oldest": None} for c in CLASSES}
    if location is not None:
        for _, cls, newest, size in _files(location):
            d = out[cls]
            d["items"] += 1
            d["bytes"] += size
            if newest is not None and (d["oldest"] is None or newest < d["oldest"]):
                d["oldest"] = newest
    if store is not None:
        entries = store.audit_entries()
        out["audit"]["items"] = len(entries)
        if entries:
            out["audit"]["oldest"] = entries[0].at.timestamp()
    return out


def _scan(
    location: LogLocation, max_rows: int
) -> tuple[dict[str, int], list[dict[str, str]], int, int]:
    """Personal data in the stored rows' free-text columns and the monitor's files."""
    from modelscale.privacy.detect import Detector
    from modelscale.privacy.retention import _files

    detector = Detector()
    found: collections.Counter[str] = collections.Counter()
    examples: dict[str, dict[str, str]] = {}
    rows = files = 0
    for path, _, _, _ in _files(location):
        if rows >= max_rows:
            break
        files += 1
        texts: list[tuple[str, str]] = []
        with location.filesystem.open_input_file(path) as f:
            if path.endswith(".parquet"):
                table = pq.read_table(f)
                cols = [c for c in _SCAN_COLUMNS if c in table.column_names]
                for c in cols:
                    texts += [(c, v) for v in table.column(c).to_pylist() if v]
                rows += table.num_rows
            else:  # a monitor window: labels and predictions are numbers, but check its text
                doc = orjson.loads(f.read())
                texts.append(("file", orjson.dumps(doc).decode()))
                rows += 1
        for column, text in texts:
            for span in detector.find(text):
                if text[span.start : span.end].startswith("hmac:"):
                    continue
                found[span.kind] += 1
                examples.setdefault(span.kind, {"file": path, "column": column, "kind": span.kind})
    return dict(found), list(examples.values()), rows, files


def _readers(store: Store, since: dt.datetime | None) -> list[dict[str, Any]]:
    groups: dict[tuple[str, str], dict[str, Any]] = {}
    for e in store.audit_entries(since=since):
        g = groups.setdefault(
            (e.actor, e.action),
            {"actor": e.actor, "action": e.action, "count": 0, "last": None, "targets": []},
        )
        g["count"] += 1
        g["last"] = e.at.isoformat()
        if e.target and e.target not in g["targets"] and len(g["targets"]) < 5:
            g["targets"].append(e.target)
    return sorted(groups.values(), key=lambda g: (-g["count"], g["actor"]))


def _policies(spec: DeploymentSpec | None) -> dict[str, dict[str, Any]]:
    if spec is None:
        return {}
    out = {}
    for name, m in spec.models.items():
        p = m.privacy
        out[name] = {
            "payloads_logged": spec.log.payloads,
            "text_input": m.text is not None,
            **{
                g: dict(getattr(p, g))
                for g in ("inputs", "outputs", "parameters", "headers", "outcomes")
            },
        }
    return out


def privacy_audit(
    *,
    store: Store,
    location: LogLocation | None,
    spec: DeploymentSpec | None = None,
    retention: RetentionSpec | None = None,
    since: dt.datetime | None = None,
    max_rows: int = 200_000,
) -> PrivacyAudit:
    """Audit the knowledge base's audit log and the request log at ``location``.

    Args:
        store: The knowledge base (its audit log is checked and read).
        location: The request log (None: no log to check).
        spec: The deployment, for its policies and retention (else ``retention`` or defaults).
        retention: TTLs when there is no ``spec``.
        since: Who read what since then (default: the whole audit log).
        max_rows: Stop scanning stored rows for personal data after about this many.
    """
    retention = spec.privacy.retention if spec is not None else (retention or RetentionSpec())
    check = verify_chain(store.audit_entries())
    past = {c: 0 for c in CLASSES}
    findings: dict[str, int] = {}
    examples: list[dict[str, str]] = []
    rows = files = 0
    if location is not None:
        for cls, items in expired_files(location, retention).items():
            past[cls] = len(items)
        findings, examples, rows, files = _scan(location, max_rows)
    cutoff = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=retention.seconds("audit"))
    past["audit"] = sum(1 for e in store.audit_entries() if e.at < cutoff)
    ok = check.ok and not any(past.values()) and not findings
    return PrivacyAudit(
        ok=ok,
        chain_ok=check.ok,
        chain_entries=check.entries,
        chain_last_hash=check.last_hash,
        chain_problems=check.problems,
        stored=_inventory(location, store),
        past_retention=past,
        policies=_policies(spec),
        readers=_readers(store, since),
        findings=findings,
        examples=examples,
        scanned_rows=rows,
        scanned_files=files,
        params={
            "log": location.display if location is not None else None,
            "since": since.isoformat() if since is not None else None,
            "max_rows": max_rows,
            "at": time.time(),
        },
    )
