"""bookings: the bookings (预约) booking platforms push, per site, service and slot

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07 11:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "bookings",
        sa.Column("code", sa.String(length=10), nullable=False),
        sa.Column("site_id", sa.String(length=64), nullable=False),
        sa.Column("service", sa.String(length=64), nullable=False),
        sa.Column("day", sa.String(length=10), nullable=False),
        sa.Column("slot_start", sa.String(length=5), nullable=False),
        sa.Column("slot_end", sa.String(length=5), nullable=False),
        sa.Column("person", sa.String(length=64), nullable=False),
        sa.Column("reference", sa.String(length=64), nullable=True),
        sa.Column("status", sa.Enum("booked", "cancelled", "checked_in", name="bookingstatus",
                                    native_enum=False, length=24), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(length=64), nullable=True),
        sa.Column("cancelled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("checked_in_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ticket", sa.String(length=8), nullable=True),
        sa.ForeignKeyConstraint(["site_id"], ["sites.id"], name=op.f("fk_bookings_site_id_sites"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("code", name=op.f("pk_bookings")),
    )
    op.create_index("ix_bookings_day_site", "bookings", ["day", "site_id"])
    op.create_index("ix_bookings_person_day", "bookings", ["person", "day"])


def downgrade() -> None:
    op.drop_index("ix_bookings_person_day", table_name="bookings")
    op.drop_index("ix_bookings_day_site", table_name="bookings")
    op.drop_table("bookings")
