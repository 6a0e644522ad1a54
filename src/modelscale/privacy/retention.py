"""Retention: delete what is older than its class's time to live, and prove it is gone.

The classes and where they live:

- ``requests``: the request log's hour partitions (``<log>/<model>/<day>/<hour>/*.parquet``);
- ``payloads``: logged payloads (``<log>/_payloads/<model>/<day>/<hour>/*.parquet``), usually
  kept for less time than the rows;
- ``feedback``: the monitor's window files with their predictions and labels
  (``<log>/monitor/model=*/version=*/<start>-*.json``);
- ``audit``: the knowledge base's audit log (the purge itself is appended, naming where the
  remaining chain starts).

A file is deleted whole once the newest record it can hold is past the TTL (the writer names
each file by the time it wrote it, so a TTL of seconds works as well as one of days), and a
partition folder left empty goes with it: a purge never rewrites a file. A file whose time cannot
be read from its path is left alone and reported. After deleting,
the purge lists again and counts what is still there past its TTL (``remaining``): a purge that
could not delete something says so instead of claiming success. SQLite gives the space of deleted
audit rows back (``VACUUM``).
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pyarrow.fs as pafs

from modelscale.config import RetentionSpec

if TYPE_CHECKING:
    from modelscale.observe import LogLocation
    from modelscale.store import Store

__all__ = ["CLASSES", "ClassPurge", "PurgeReport", "expired_files", "purge"]

CLASSES = ("requests", "payloads", "feedback", "audit")

_PAYLOADS = "_payloads"
_MONITOR = "monitor"


@dataclass(frozen=True)
class ClassPurge:
    """What a purge did to one data class."""

    name: str
    ttl_s: float
    deleted: int
    """Files (log classes) or rows (audit) deleted, or that would be with ``dry_run``."""
    bytes: int
    remaining: int
    """Still there past the TTL after the purge (0 when it worked)."""
    unreadable: int = 0
    """Files whose time could not be read from their path (left alone)."""


@dataclass(frozen=True)
class PurgeReport:
    """A purge of every class."""

    at: float
    dry_run: bool
    classes: list[ClassPurge] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Nothing is left past its TTL (a dry run is ok when it would leave nothing)."""
        return self.dry_run or all(c.remaining == 0 for c in self.classes)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "at": self.at,
            "dry_run": self.dry_run,
            "ok": self.ok,
            "classes": [c.__dict__ for c in self.classes],
        }


def _hour_end(day: str, hour: str) -> float | None:
    try:
        start = dt.datetime.strptime(f"{day} {hour}", "%Y-%m-%d %H").replace(tzinfo=dt.UTC)
    except ValueError:
        return None
    return start.timestamp() + 3600


def _window_start(name: str) -> float | None:
    try:
        stamp = dt.datetime.strptime(name.split("-", 1)[0], "%Y%m%dT%H%M%S.%f")
    except ValueError:
        return None
    return stamp.replace(tzinfo=dt.UTC).timestamp()


def _written(name: str, hour_end: float | None) -> float | None:
    """The newest time a log file can hold: when it was written (``part-<unix ms>-...``), which
    is before its hour partition ends; the hour's end for files named otherwise."""
    if name.startswith("part-"):
        stamp = name.split("-", 2)[1]
        if stamp.isdigit():
            written = int(stamp) / 1000
            return written if hour_end is None else min(written, hour_end)
    return hour_end


def _classify(rel: list[str]) -> tuple[str, float | None] | None:
    """(class, the newest time the file can hold) of a file below the log root, or None for
    files of no class (probes, temporary files)."""
    name = rel[-1]
    if name.startswith("."):
        return None
    if rel[0] == _PAYLOADS and len(rel) == 5 and name.endswith(".parquet"):
        return "payloads", _written(name, _hour_end(rel[2], rel[3]))
    if rel[0] == _MONITOR and len(rel) == 4 and name.endswith(".json"):
        return "feedback", _window_start(name)
    if len(rel) == 4 and name.endswith(".parquet"):
        return "requests", _written(name, _hour_end(rel[1], rel[2]))
    return None


def _files(location: LogLocation) -> Iterator[tuple[str, str, float | None, int]]:
    """(path, class, newest time, size) of every classified file under the log root."""
    try:
        infos = location.filesystem.get_file_info(
            pafs.FileSelector(location.root, recursive=True, allow_not_found=True)
        )
    except FileNotFoundError:
        return
    prefix = location.root.rstrip("/") + "/"
    for info in infos:
        if info.type != pafs.FileType.File or not info.path.startswith(prefix):
            continue
        got = _classify(info.path[len(prefix) :].split("/"))
        if got is not None:
            yield info.path, got[0], got[1], int(info.size or 0)


def expired_files(
    location: LogLocation, retention: RetentionSpec, *, now: float | None = None
) -> dict[str, list[tuple[str, int]]]:
    """Per class, the files past its TTL: (path, size)."""
    now = time.time() if now is None else now
    out: dict[str, list[tuple[str, int]]] = {c: [] for c in CLASSES[:3]}
    for path, cls, newest, size in _files(location):
        if newest is not None and newest <= now - retention.seconds(cls):
            out[cls].append((path, size))
    return out


def _unreadable(location: LogLocation) -> dict[str, int]:
    out = dict.fromkeys(CLASSES[:3], 0)
    for _, cls, newest, _ in _files(location):
        if newest is None:
            out[cls] += 1
    return out


def _remove_empty_dirs(location: LogLocation, paths: list[str]) -> None:
    """Remove the folders the deleted files leave empty, up to (not including) the root."""
    fs, root = location.filesystem, location.root.rstrip("/")
    folders = sorted({p.rsplit("/", 1)[0] for p in paths}, key=len, reverse=True)
    seen: set[str] = set()
    for folder in folders:
        while folder.startswith(root + "/") and folder not in seen:
            seen.add(folder)
            try:
                left = fs.get_file_info(pafs.FileSelector(folder, allow_not_found=True))
                if left:
                    break
                fs.delete_dir(folder)
            except OSError:
                break
            folder = folder.rsplit("/", 1)[0]


def purge(
    retention: RetentionSpec,
    *,
    location: LogLocation | None,
    store: Store | None,
    actor: str,
    dry_run: bool = False,
    now: float | None = None,
) -> PurgeReport:
    """Delete what is past its TTL in the log at ``location`` and the audit log in ``store``.

    With ``dry_run`` nothing is deleted and nothing is appended; the report says what would be.
    A real purge that deleted anything is appended to the audit log.
    """
    now = time.time() if now is None else now
    classes: list[ClassPurge] = []
    deleted_paths: list[str] = []
    if location is not None:
        expired = expired_files(location, retention, now=now)
        for files in expired.values():
            if not dry_run:
                for path, _ in files:
                    try:
                        location.filesystem.delete_file(path)
                        deleted_paths.append(path)
                    except FileNotFoundError:
                        deleted_paths.append(path)  # gone already (another purger)
                    except OSError:
                        pass  # counted in ``remaining`` below
        if deleted_paths:
            _remove_empty_dirs(location, deleted_paths)
        after = expired if dry_run else expired_files(location, retention, now=now)
        unreadable = _unreadable(location)
        for cls, files in expired.items():
            classes.append(
                ClassPurge(
                    name=cls,
                    ttl_s=retention.seconds(cls),
                    deleted=len(files),
                    bytes=sum(size for _, size in files),
                    remaining=0 if dry_run else len(after[cls]),
                    unreadable=unreadable[cls],
                )
            )
    if store is not None:
        ttl = retention.seconds("audit")
        before = dt.datetime.fromtimestamp(now - ttl, dt.UTC)
        rows = store.purge_audit(before, actor=actor, dry_run=dry_run)
        remaining = 0
        if not dry_run:
            if rows:
                store.reclaim_space()
            remaining = sum(1 for e in store.audit_entries() if e.at < before)
        classes.append(ClassPurge("audit", ttl, rows, 0, remaining))
    report = PurgeReport(at=now, dry_run=dry_run, classes=classes)
    if store is not None and not dry_run and any(c.deleted for c in classes if c.name != "audit"):
        store.append_audit(
            actor=actor,
            action="privacy.purge",
            target=location.display if location is not None else "",
            details={c.name: {"deleted": c.deleted, "bytes": c.bytes} for c in classes},
        )
    return report
