"""issuing_stops and city_calendars: emergency stops and the city calendar the central pushes

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07 11:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "issuing_stops",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("scope", sa.Enum("site", "town", "city", name="stopscope",
                                   native_enum=False, length=24), nullable=False),
        sa.Column("target", sa.String(length=64), nullable=False),
        sa.Column("reason", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(length=64), nullable=True),
        sa.Column("lifted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("lifted_by", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_issuing_stops")),
    )
    op.create_index("ix_issuing_stops_lifted_at", "issuing_stops", ["lifted_at"])
    op.create_table(
        "city_calendars",
        sa.Column("version", sa.String(length=64), nullable=False),
        sa.Column("holidays", sa.JSON(), nullable=False),
        sa.Column("workdays", sa.JSON(), nullable=False),
        sa.Column("special", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("version", name=op.f("pk_city_calendars")),
    )
    op.create_index(op.f("ix_city_calendars_created_at"), "city_calendars", ["created_at"])


def downgrade() -> None:
    op.drop_index(op.f("ix_city_calendars_created_at"), table_name="city_calendars")
    op.drop_table("city_calendars")
    op.drop_index("ix_issuing_stops_lifted_at", table_name="issuing_stops")
    op.drop_table("issuing_stops")
