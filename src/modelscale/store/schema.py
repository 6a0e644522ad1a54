"""Tables of the knowledge base: model versions, runs and the audit log.

A run is one finding: a profile, a compression trial, a plan, a load test, an A/B test, a drift check, a
note. ``kind`` is free text (validated against ``RUN_KINDS`` by the API) so kinds to come need no schema
change; what differs between kinds lives in the ``params`` and ``results`` JSON.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, DateTime, Dialect, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

__all__ = ["RUN_KINDS", "AuditRow", "Base", "ModelVersionRow", "RunRow"]

RUN_KINDS = (
    "profile",
    "compress",
    "plan",
    "load",
    "serve",
    "laws",
    "abtest",
    "drift",
    "baseline",
    "experiment",
    "slo",
    "note",
    "privacy",
    "assess",
)

_Json = JSON().with_variant(JSONB(), "postgresql")


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class UtcDateTime(TypeDecorator[dt.datetime]):
    """A timestamp that reads back timezone-aware in UTC from every backend.

    PostgreSQL keeps the offset (``timestamptz``); SQLite stores the text without it and returns a
    naive datetime, so the same run would compare and print differently by backend. Values are
    stored as UTC and read back with ``tzinfo=UTC``; the column DDL is ``DateTime(timezone=True)``
    as before, so existing databases need no migration.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}; the knowledge base stores UTC times")
        return value.astimezone(dt.UTC)

    def process_result_value(
        self, value: dt.datetime | None, dialect: Dialect
    ) -> dt.datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


class Base(DeclarativeBase):
    """Declarative base of the knowledge base tables."""


class ModelVersionRow(Base):
    """A model version, identified by the sha256 of its ONNX bytes; ``parent_sha256`` is its lineage."""

    __tablename__ = "model_versions"

    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200), index=True)
    path: Mapped[str | None] = mapped_column(Text)
    size_bytes: Mapped[int | None] = mapped_column(Integer)
    parent_sha256: Mapped[str | None] = mapped_column(String(64), index=True)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime(), default=_now)
    meta: Mapped[dict[str, Any]] = mapped_column(_Json, default=dict)


class RunRow(Base):
    """One stored finding."""

    __tablename__ = "runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(32), index=True)
    model_version: Mapped[str | None] = mapped_column(String(64), index=True)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime(), default=_now, index=True)
    status: Mapped[str] = mapped_column(String(16), default="ok")
    params: Mapped[dict[str, Any]] = mapped_column(_Json, default=dict)
    results: Mapped[dict[str, Any]] = mapped_column(_Json, default=dict)
    machine: Mapped[dict[str, Any]] = mapped_column(_Json, default=dict)
    parent_run_id: Mapped[int | None] = mapped_column(
        ForeignKey("runs.id", ondelete="SET NULL"), index=True
    )
    note: Mapped[str | None] = mapped_column(Text)


class AuditRow(Base):
    """One audit entry: who did what to which stored data, chained to the entry before it.

    ``hash`` is the SHA-256 of ``prev_hash`` and the entry's canonical JSON (``store.audit``), so
    changing, removing or reordering an entry breaks every hash after it. ``prev_hash`` is
    unique: two writers cannot both append after the same entry.
    """

    __tablename__ = "audit"
    # AUTOINCREMENT on SQLite: ids are never reused, even after a purge empties the table.
    __table_args__ = (
        UniqueConstraint("prev_hash", name="uq_audit_prev_hash"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[dt.datetime] = mapped_column(UtcDateTime(), default=_now, index=True)
    actor: Mapped[str] = mapped_column(String(128))
    action: Mapped[str] = mapped_column(String(64), index=True)
    target: Mapped[str] = mapped_column(Text)
    details: Mapped[dict[str, Any]] = mapped_column(_Json, default=dict)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))
