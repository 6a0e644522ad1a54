"""Record and query runs in the knowledge base (SQLite by default, PostgreSQL by URL)."""

from __future__ import annotations

import datetime as dt
import random
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import delete, func, or_, select, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from modelscale.errors import InvalidInput, StoreError
from modelscale.machine import machine_info
from modelscale.result import Result, jsonable
from modelscale.store.audit import GENESIS, AuditEntry, entry_hash
from modelscale.store.engine import connect_engine, first_line, prepare_sqlite_dir, redact
from modelscale.store.engine import normalise_url as _normalise_url
from modelscale.store.migrate import ensure_schema
from modelscale.store.schema import RUN_KINDS, AuditRow, ModelVersionRow, RunRow

__all__ = ["ModelVersion", "Run", "Store", "open_store"]


@dataclass(frozen=True)
class Run:
    """A run read back from the knowledge base."""

    id: int
    kind: str
    model_version: str | None
    created_at: dt.datetime
    status: str
    params: dict[str, Any]
    results: dict[str, Any]
    machine: dict[str, Any]
    parent_run_id: int | None
    note: str | None
    model_name: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        out: dict[str, Any] = jsonable(self)
        return out


@dataclass(frozen=True)
class ModelVersion:
    """A model version read back from the knowledge base."""

    sha256: str
    name: str
    path: str | None
    size_bytes: int | None
    parent_sha256: str | None
    created_at: dt.datetime
    meta: dict[str, Any] = field(default_factory=dict)


class Store:
    """The knowledge base. Every write is one transaction: a failure never touches earlier runs.

    Opening one brings its schema to the version this modelscale needs (see
    ``modelscale.store.migrate``): an empty database gets the tables, one written by modelscale 0.1.0
    is stamped, and a SQLite file at an older version is backed up beside itself and upgraded. An
    up-to-date database costs one query.

    Raises:
        InvalidInput: ``url`` is not a SQLAlchemy URL.
        StoreError: the database cannot be opened; it is PostgreSQL at an older schema version
            (run ``modelscale db upgrade``) or at a version a newer modelscale wrote; or an upgrade
            failed (the database is then as it was, and the message names the backup).
    """

    def __init__(self, url: str, *, connect_timeout_s: float = 5.0) -> None:
        self.url = _normalise_url(url)
        prepare_sqlite_dir(self.url)
        self.engine: Engine = connect_engine(self.url, connect_timeout_s=connect_timeout_s)
        try:
            ensure_schema(self.engine)
        except BaseException:
            self.engine.dispose()
            raise
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    @contextmanager
    def _session(self) -> Iterator[Session]:
        session = self._sessions()
        try:
            yield session
            session.commit()
        except SQLAlchemyError as exc:
            session.rollback()
            raise StoreError(
                f"Knowledge base error at {redact(self.url)}: {first_line(exc)}"
            ) from exc
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    def close(self) -> None:
        """Release the connection pool."""
        self.engine.dispose()

    # -- model versions ---------------------------------------------------------------------------
    def register_model(
        self,
        sha256: str,
        *,
        name: str,
        path: str | None = None,
        size_bytes: int | None = None,
        parent_sha256: str | None = None,
        meta: dict[str, Any] | None = None,
    ) -> ModelVersion:
        """Add a model version (idempotent: an existing sha256 is kept, its parent filled if unset)."""
        with self._session() as s:
            row = s.get(ModelVersionRow, sha256)
            if row is None:
                row = ModelVersionRow(
                    sha256=sha256,
                    name=name,
                    path=path,
                    size_bytes=size_bytes,
                    parent_sha256=parent_sha256,
                    meta=jsonable(meta or {}),
                )
                s.add(row)
                s.flush()
            elif parent_sha256 and not row.parent_sha256:
                row.parent_sha256 = parent_sha256
            return _model_from_row(row)

    def model(self, ref: str) -> ModelVersion | None:
        """A model version by full sha256, unique sha256 prefix, or name (newest wins)."""
        with self._session() as s:
            row = s.get(ModelVersionRow, ref)
            if row is None:
                rows = s.scalars(
                    select(ModelVersionRow)
                    .where(or_(ModelVersionRow.sha256.startswith(ref), ModelVersionRow.name == ref))
                    .order_by(ModelVersionRow.created_at.desc())
                ).all()
                row = rows[0] if rows else None
            return _model_from_row(row) if row else None

    def models(self) -> list[ModelVersion]:
        """All model versions, newest first."""
        with self._session() as s:
            rows = s.scalars(select(ModelVersionRow).order_by(ModelVersionRow.created_at.desc()))
            return [_model_from_row(r) for r in rows]

    def lineage(self, sha256: str) -> list[ModelVersion]:
        """The model and its ancestors, child first."""
        out: list[ModelVersion] = []
        seen: set[str] = set()
        current: str | None = sha256
        while current and current not in seen:
            seen.add(current)
            mv = self.model(current)
            if mv is None:
                break
            out.append(mv)
            current = mv.parent_sha256
        return out

    # -- runs ---------------------------------------------------------------------------------------
    def record(
        self,
        result: Result,
        *,
        model_version: str | None = None,
        parent_run_id: int | None = None,
        status: str = "ok",
        note: str | None = None,
        machine: dict[str, Any] | None = None,
    ) -> int:
        """Store ``result`` as a run and return its id."""
        kind = result.kind
        if kind not in RUN_KINDS:
            raise InvalidInput(
                f"Unknown run kind {kind!r}; expected one of {', '.join(RUN_KINDS)}.", field="kind"
            )
        row = RunRow(
            kind=kind,
            model_version=model_version,
            status=status,
            params=result.params_dict(),
            results=result.results_dict(),
            machine=machine if machine is not None else machine_info().to_dict(),
            parent_run_id=parent_run_id,
            note=note,
        )
        with self._session() as s:
            s.add(row)
            s.flush()
            return row.id

    def runs(
        self, *, model: str | None = None, kind: str | None = None, limit: int | None = None
    ) -> list[Run]:
        """Runs, newest first, filtered by model (sha256, prefix or name) and kind."""
        if kind is not None and kind not in RUN_KINDS:
            raise InvalidInput(
                f"Unknown run kind {kind!r}; expected one of {', '.join(RUN_KINDS)}.", field="kind"
            )
        if limit is not None and limit < 1:
            raise InvalidInput(f"limit must be >= 1. Got {limit} instead.", field="limit")
        with self._session() as s:
            q = select(RunRow, ModelVersionRow.name).outerjoin(
                ModelVersionRow, ModelVersionRow.sha256 == RunRow.model_version
            )
            if kind:
                q = q.where(RunRow.kind == kind)
            if model:
                q = q.where(
                    or_(RunRow.model_version.startswith(model), ModelVersionRow.name == model)
                )
            q = q.order_by(RunRow.id.desc())
            if limit:
                q = q.limit(limit)
            return [_run_from_row(r, name) for r, name in s.execute(q).all()]

    def run(self, run_id: int) -> Run:
        """One run by id."""
        with self._session() as s:
            row = s.get(RunRow, run_id)
            if row is None:
                raise InvalidInput(f"No run with id {run_id} in the knowledge base.", field="id")
            mv = s.get(ModelVersionRow, row.model_version) if row.model_version else None
            return _run_from_row(row, mv.name if mv else None)

    # -- the audit log -----------------------------------------------------------------------------
    def append_audit(
        self,
        *,
        actor: str,
        action: str,
        target: str,
        details: dict[str, Any] | None = None,
    ) -> AuditEntry:
        """Append an entry to the hash-chained audit log (``modelscale.store.audit``)."""
        return self._audit_write(actor, action, target, details or {})

    def _audit_write(
        self,
        actor: str,
        action: str,
        target: str,
        details: dict[str, Any],
        *,
        purge_before: dt.datetime | None = None,
    ) -> AuditEntry:
        """Append one entry, after deleting the entries older than ``purge_before`` in the same
        transaction (the entry then names the hash the remaining chain starts after)."""
        details = jsonable(details)
        for attempt in range(_AUDIT_RETRIES):
            session = self._sessions()
            try:
                if self.engine.dialect.name == "postgresql":
                    # One appender at a time, until commit: otherwise every concurrent writer reads
                    # the same last entry and all but one lose on prev_hash and go again, so a
                    # writer among many can lose every try. SQLite already serialises writers.
                    session.execute(
                        text("SELECT pg_advisory_xact_lock(:key)"), {"key": _AUDIT_LOCK_KEY}
                    )
                prev = None
                if purge_before is not None:
                    last_id = session.execute(
                        select(func.max(AuditRow.id)).where(AuditRow.at < purge_before)
                    ).scalar()
                    if last_id is not None:
                        anchor = session.execute(
                            select(AuditRow.hash).where(AuditRow.id == last_id)
                        ).scalar()
                        deleted = session.execute(
                            select(func.count()).where(AuditRow.id <= last_id)
                        ).scalar()
                        session.execute(delete(AuditRow).where(AuditRow.id <= last_id))
                        details = {
                            **details,
                            "deleted": deleted,
                            "chain_after_id": last_id,
                            "chain_after_hash": anchor,
                        }
                        prev = anchor
                last = session.execute(
                    select(AuditRow.hash).order_by(AuditRow.id.desc()).limit(1)
                ).scalar()
                prev = last or prev or GENESIS
                row = AuditRow(
                    at=dt.datetime.now(dt.UTC),
                    actor=actor[:128],
                    action=action[:64],
                    target=target,
                    details=details,
                    prev_hash=prev,
                    hash="",
                )
                session.add(row)
                session.flush()
                row.hash = entry_hash(
                    prev,
                    id=row.id,
                    at=row.at,
                    actor=row.actor,
                    action=row.action,
                    target=row.target,
                    details=row.details,
                )
                session.commit()
                return _audit_from_row(row)
            except IntegrityError:
                session.rollback()  # another writer appended after the same entry: go again
                time.sleep(
                    random.uniform(0, 0.001 * 2 ** min(attempt, 6))
                )  # after a jittered pause
            except SQLAlchemyError as exc:
                session.rollback()
                raise StoreError(
                    f"Knowledge base error at {redact(self.url)}: {first_line(exc)}"
                ) from exc
            finally:
                session.close()
        raise StoreError(
            f"Could not append to the audit log at {redact(self.url)}: {_AUDIT_RETRIES} other "
            "writers appended first."
        )

    def audit_entries(self, *, since: dt.datetime | None = None) -> list[AuditEntry]:
        """The audit log in order (from ``since`` when given)."""
        with self._session() as s:
            q = select(AuditRow).order_by(AuditRow.id)
            if since is not None:
                q = q.where(AuditRow.at >= since)
            return [_audit_from_row(r) for r in s.execute(q).scalars()]

    def purge_audit(self, before: dt.datetime, *, actor: str, dry_run: bool = False) -> int:
        """Delete the audit entries older than ``before`` and append the purge, which names the
        hash the remaining chain starts after. The number deleted (that would be, with
        ``dry_run``: then nothing changes)."""
        with self._session() as s:
            count = int(s.execute(select(func.count()).where(AuditRow.at < before)).scalar() or 0)
        if dry_run or count == 0:
            return count
        entry = self._audit_write(
            actor, "privacy.purge", "audit", {"ttl_before": before.isoformat()}, purge_before=before
        )
        return int(entry.details.get("deleted", 0))

    def reclaim_space(self) -> None:
        """Give deleted rows' space back to the filesystem (SQLite ``VACUUM``; PostgreSQL's
        autovacuum does this on its own)."""
        if self.engine.dialect.name == "sqlite":
            with self.engine.connect() as conn:
                conn.execution_options(isolation_level="AUTOCOMMIT").execute(text("VACUUM"))


_AUDIT_RETRIES = 20
# The key of the PostgreSQL advisory lock that serialises audit appends ("msaudit" as an integer).
_AUDIT_LOCK_KEY = int.from_bytes(b"msaudit", "big")


def _audit_from_row(row: AuditRow) -> AuditEntry:
    return AuditEntry(
        id=row.id,
        at=row.at,
        actor=row.actor,
        action=row.action,
        target=row.target,
        details=dict(row.details or {}),
        prev_hash=row.prev_hash,
        hash=row.hash,
    )


def _model_from_row(row: ModelVersionRow) -> ModelVersion:
    return ModelVersion(
        sha256=row.sha256,
        name=row.name,
        path=row.path,
        size_bytes=row.size_bytes,
        parent_sha256=row.parent_sha256,
        created_at=row.created_at,
        meta=dict(row.meta or {}),
    )


def _run_from_row(row: RunRow, model_name: str | None) -> Run:
    return Run(
        id=row.id,
        kind=row.kind,
        model_version=row.model_version,
        created_at=row.created_at,
        status=row.status,
        params=dict(row.params or {}),
        results=dict(row.results or {}),
        machine=dict(row.machine or {}),
        parent_run_id=row.parent_run_id,
        note=row.note,
        model_name=model_name,
    )


def open_store(url: str | None = None) -> Store:
    """Open the knowledge base at ``url`` or, by default, at ``MODELSCALE_DB`` / the local SQLite file.

    As ``Store``, its schema is brought up to date first; the errors are ``Store``'s.
    """
    from modelscale.config import get_settings

    settings = get_settings()
    return Store(url or settings.db, connect_timeout_s=settings.db_connect_timeout_s)
