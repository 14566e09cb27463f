"""registry kept by people (opening hours, retirement, revision) and the audit log

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-07 08:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "audit",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=100), nullable=False),
        sa.Column("actor_id", sa.String(length=64), nullable=True),
        sa.Column("role", sa.String(length=16), nullable=True),
        sa.Column("source", sa.String(length=100), nullable=False),
        sa.Column("action", sa.String(length=40), nullable=False),
        sa.Column("target", sa.String(length=100), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit")),
    )
    with op.batch_alter_table("audit", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_audit_at"), ["at"], unique=False)
        batch_op.create_index("ix_audit_target_at", ["target", "at"], unique=False)

    with op.batch_alter_table("sites", schema=None) as batch_op:
        batch_op.add_column(sa.Column("hours_open", sa.String(length=5), nullable=True))
        batch_op.add_column(sa.Column("hours_close", sa.String(length=5), nullable=True))
        batch_op.add_column(sa.Column("hours_reset", sa.String(length=5), nullable=True))
        batch_op.add_column(sa.Column("hours_last_ticket", sa.String(length=5), nullable=True))
        batch_op.add_column(
            sa.Column(
                "registry_revision", sa.Integer(), server_default=sa.text("0"), nullable=False
            )
        )
        batch_op.add_column(sa.Column("retired_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("sites", schema=None) as batch_op:
        batch_op.drop_column("retired_at")
        batch_op.drop_column("registry_revision")
        batch_op.drop_column("hours_last_ticket")
        batch_op.drop_column("hours_reset")
        batch_op.drop_column("hours_close")
        batch_op.drop_column("hours_open")
    with op.batch_alter_table("audit", schema=None) as batch_op:
        batch_op.drop_index("ix_audit_target_at")
        batch_op.drop_index(batch_op.f("ix_audit_at"))
    op.drop_table("audit")
