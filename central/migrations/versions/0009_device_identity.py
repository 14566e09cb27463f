"""device identity: the device that numbers a site and its epoch, devices, diagnostics

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07 10:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("sites", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("epoch", sa.BigInteger(), server_default=sa.text("0"), nullable=False))
        batch_op.add_column(sa.Column("holder", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("reported_seq", sa.BigInteger(), nullable=True))
    op.create_table(
        "site_devices",
        sa.Column("site_id", sa.String(length=64), nullable=False),
        sa.Column("device", sa.String(length=16), nullable=False),
        sa.Column("epoch", sa.BigInteger(), nullable=True),
        sa.Column("first_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("online", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("state", sa.JSON(), nullable=True),
        sa.Column("granted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("granted_by", sa.String(length=100), nullable=True),
        sa.Column("replaced_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("acked_seq", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column("max_seq", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column("restore", sa.JSON(), nullable=True),
        sa.Column("restore_due", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("skip", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.ForeignKeyConstraint(["site_id"], ["sites.id"],
                                name=op.f("fk_site_devices_site_id_sites"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("site_id", "device", name=op.f("pk_site_devices")),
    )
    op.create_table(
        "diagnostics",
        sa.Column("command_id", sa.Uuid(), nullable=False),
        sa.Column("site_id", sa.String(length=64), nullable=False),
        sa.Column("device", sa.String(length=16), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("report", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(["command_id"], ["commands.id"],
                                name=op.f("fk_diagnostics_command_id_commands"),
                                ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["site_id"], ["sites.id"],
                                name=op.f("fk_diagnostics_site_id_sites"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("command_id", name=op.f("pk_diagnostics")),
    )
    with op.batch_alter_table("diagnostics", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_diagnostics_site_id"), ["site_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("diagnostics", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_diagnostics_site_id"))
    op.drop_table("diagnostics")
    op.drop_table("site_devices")
    with op.batch_alter_table("sites", schema=None) as batch_op:
        batch_op.drop_column("reported_seq")
        batch_op.drop_column("holder")
        batch_op.drop_column("epoch")
