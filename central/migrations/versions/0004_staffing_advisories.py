"""staffing_advisories: the live staffing advice of the edges

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-07 09:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "staffing_advisories",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True,
                  nullable=False),
        sa.Column("site_id", sa.String(length=64), nullable=False),
        sa.Column("advisory_id", sa.Uuid(), nullable=False),
        sa.Column("since_ms", sa.BigInteger(), nullable=False),
        sa.Column("session", sa.BigInteger(), nullable=False),
        sa.Column("ts_ms", sa.BigInteger(), nullable=False),
        sa.Column("raised_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("services", sa.JSON(), nullable=False),
        sa.Column("move", sa.JSON(), nullable=True),
        sa.Column("outlook", sa.JSON(), nullable=False),
        sa.Column("message_zh", sa.String(length=400), nullable=False),
        sa.Column("message_en", sa.String(length=400), nullable=False),
        sa.Column("cleared_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("cleared_by", sa.Enum("edge", "replaced", "expired", name="adviceend",
                                         native_enum=False, length=24), nullable=True),
        sa.ForeignKeyConstraint(["site_id"], ["sites.id"],
                                name=op.f("fk_staffing_advisories_site_id_sites"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_staffing_advisories")),
    )
    op.create_index("ix_staffing_advisories_site_id_id", "staffing_advisories",
                    ["site_id", "id"], unique=False)
    op.create_index("uq_staffing_advisories_active", "staffing_advisories", ["site_id"],
                    unique=True, sqlite_where=sa.text("cleared_at IS NULL"),
                    postgresql_where=sa.text("cleared_at IS NULL"))


def downgrade() -> None:
    op.drop_index("uq_staffing_advisories_active", table_name="staffing_advisories",
                  sqlite_where=sa.text("cleared_at IS NULL"),
                  postgresql_where=sa.text("cleared_at IS NULL"))
    op.drop_index("ix_staffing_advisories_site_id_id", table_name="staffing_advisories")
    op.drop_table("staffing_advisories")
