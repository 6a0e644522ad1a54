"""The audit log: one hash-chained row per access to stored data, key change or purge.

Revision ID: 0002_audit
Revises: 0001_baseline
Create Date: 2026-12-07

``prev_hash`` is unique, so two writers that read the same last entry cannot both append after
it: the second fails and retries on the new last entry, and the chain stays one line.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

__all__ = ["downgrade", "upgrade"]

revision = "0002_audit"
down_revision = "0001_baseline"
branch_labels = None
depends_on = None

_json = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    """Create the audit table."""
    op.create_table(
        "audit",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=128), nullable=False),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("target", sa.Text(), nullable=False),
        sa.Column("details", _json, nullable=False),
        sa.Column("prev_hash", sa.String(length=64), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("prev_hash", name="uq_audit_prev_hash"),
        sqlite_autoincrement=True,  # ids are never reused, even after a purge empties it
    )
    op.create_index("ix_audit_at", "audit", ["at"])
    op.create_index("ix_audit_action", "audit", ["action"])


def downgrade() -> None:
    """Drop the audit table (and its entries)."""
    op.drop_table("audit")
