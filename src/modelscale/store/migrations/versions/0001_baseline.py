"""The schema modelscale 0.1.0 wrote with ``create_all``: model versions and runs.

Revision ID: 0001_baseline
Revises:
Create Date: 2026-12-03

A database that 0.1.0 wrote has these tables and no ``alembic_version``; opening it stamps it with
this revision. The types are spelled out rather than imported from ``modelscale.store.schema`` so
this revision stays what 0.1.0 wrote when the models change: ``UtcDateTime`` is
``DateTime(timezone=True)`` in DDL, JSON is JSONB on PostgreSQL.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

__all__ = ["downgrade", "upgrade"]

revision = "0001_baseline"
down_revision = None
branch_labels = None
depends_on = None

_json = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    """Create model_versions and runs, with their indexes, as 0.1.0 did."""
    op.create_table(
        "model_versions",
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("path", sa.Text(), nullable=True),
        sa.Column("size_bytes", sa.Integer(), nullable=True),
        sa.Column("parent_sha256", sa.String(length=64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("meta", _json, nullable=False),
        sa.PrimaryKeyConstraint("sha256"),
    )
    op.create_index("ix_model_versions_name", "model_versions", ["name"])
    op.create_index("ix_model_versions_parent_sha256", "model_versions", ["parent_sha256"])
    op.create_table(
        "runs",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("model_version", sa.String(length=64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("params", _json, nullable=False),
        sa.Column("results", _json, nullable=False),
        sa.Column("machine", _json, nullable=False),
        sa.Column("parent_run_id", sa.Integer(), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["parent_run_id"], ["runs.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_runs_created_at", "runs", ["created_at"])
    op.create_index("ix_runs_kind", "runs", ["kind"])
    op.create_index("ix_runs_model_version", "runs", ["model_version"])
    op.create_index("ix_runs_parent_run_id", "runs", ["parent_run_id"])


def downgrade() -> None:
    """Drop both tables (and every run in them)."""
    op.drop_table("runs")
    op.drop_table("model_versions")
