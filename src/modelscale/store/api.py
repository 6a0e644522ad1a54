"""Record and query runs in the knowledge base (SQLite by default, PostgreSQL by URL)."""

from __future__ import annotations

import datetime as dt
import pathlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import create_engine, or_, select
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from modelscale.errors import InvalidInput, StoreError
from modelscale.machine import machine_info
from modelscale.result import Result, jsonable
from modelscale.store.schema import RUN_KINDS, Base, ModelVersionRow, RunRow

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


def _normalise_url(url: str) -> URL:
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise InvalidInput(
            f"The knowledge base URL {url!r} is not a SQLAlchemy URL. Expected e.g. "
            "'sqlite:///path/to/modelscale.db' or 'postgresql://user@host/db' (MODELSCALE_DB).",
            field="db",
        ) from exc
    # psycopg 3 is the PostgreSQL driver we ship; SQLAlchemy would default to psycopg2.
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def _redact(url: URL) -> str:
    return url.render_as_string(hide_password=True)


class Store:
    """The knowledge base. Every write is one transaction: a failure never touches earlier runs."""

    def __init__(self, url: str, *, connect_timeout_s: float = 5.0) -> None:
        self.url = _normalise_url(url)
        connect_args: dict[str, Any] = {}
        if self.url.get_backend_name() == "sqlite":
            self._prepare_sqlite_dir()
            connect_args["timeout"] = 30  # concurrent writers (replicas, tests) wait, not fail
        elif self.url.get_backend_name() == "postgresql":
            connect_args["connect_timeout"] = max(1, int(connect_timeout_s))
        try:
            self.engine: Engine = create_engine(self.url, connect_args=connect_args)
            Base.metadata.create_all(self.engine)
        except SQLAlchemyError as exc:
            raise StoreError(
                f"Cannot open the knowledge base at {_redact(self.url)}: {_first_line(exc)}. "
                "Expected a reachable database; check MODELSCALE_DB."
            ) from exc
        except ModuleNotFoundError as exc:
            raise StoreError(
                f"No database driver for {_redact(self.url)} ({exc.name} is not installed)."
            ) from exc
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    def _prepare_sqlite_dir(self) -> None:
        db = self.url.database
        if not db or db == ":memory:":
            return
        path = pathlib.Path(db)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(
                f"Cannot create the knowledge base directory {path.parent}: {exc.strerror}. "
                "Expected a writable location; set MODELSCALE_DB to e.g. sqlite:////tmp/modelscale.db."
            ) from exc
        probe = path if path.exists() else path.parent
        import os

        if not os.access(probe, os.W_OK):
            raise StoreError(
                f"The knowledge base {path} is not writable (permission denied on {probe}). "
                "Expected a writable location; set MODELSCALE_DB to e.g. sqlite:////tmp/modelscale.db."
            )

    @contextmanager
    def _session(self) -> Iterator[Session]:
        session = self._sessions()
        try:
            yield session
            session.commit()
        except SQLAlchemyError as exc:
            session.rollback()
            raise StoreError(
                f"Knowledge base error at {_redact(self.url)}: {_first_line(exc)}"
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


def _first_line(exc: BaseException) -> str:
    inner = getattr(exc, "orig", None) or exc
    text = str(inner).strip().splitlines()
    return text[0] if text else type(inner).__name__


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
    """Open the knowledge base at ``url`` or, by default, at ``MODELSCALE_DB`` / the local SQLite file."""
    from modelscale.config import get_settings

    settings = get_settings()
    return Store(url or settings.db, connect_timeout_s=settings.db_connect_timeout_s)
