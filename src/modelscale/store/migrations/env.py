"""Alembic's environment for the knowledge base.

``modelscale.store.migrate`` runs it on a connection it has already locked and begun a transaction
on (``config.attributes["connection"]``): every migration of one upgrade then commits or rolls back
together. Run directly (``alembic.command`` with ``sqlalchemy.url`` set), e.g. to autogenerate the
next revision, it connects by itself.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine, pool
from sqlalchemy.engine import Connection

from modelscale.store.schema import Base

__all__: list[str] = []


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        # SQLite can ALTER little; batch mode rebuilds the table, so later revisions work there.
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


_given = context.config.attributes.get("connection")
if _given is not None:
    _run(_given)
else:
    _engine = create_engine(
        context.config.get_main_option("sqlalchemy.url") or "", poolclass=pool.NullPool
    )
    with _engine.connect() as _connection:
        _run(_connection)
