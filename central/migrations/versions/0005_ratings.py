"""好差评: rating records with their report status, 差评 cases and notes, staff names,
rating profiles (region code, default department)

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07 09:11:12
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "rating_profiles",
        sa.Column("site_id", sa.String(length=64), nullable=False),
        sa.Column("region_code", sa.String(length=12), nullable=False),
        sa.Column("department", sa.String(length=64), nullable=True),
        sa.Column("department_name", sa.String(length=64), nullable=True),
        sa.ForeignKeyConstraint(
            ["site_id"],
            ["sites.id"],
            name=op.f("fk_rating_profiles_site_id_sites"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("site_id", name=op.f("pk_rating_profiles")),
    )
    op.create_table(
        "ratings",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("site_id", sa.String(length=64), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("event_id", sa.Uuid(), nullable=False),
        sa.Column("ts_ms", sa.BigInteger(), nullable=False),
        sa.Column("day", sa.String(length=10), nullable=False),
        sa.Column("ticket", sa.String(length=8), nullable=False),
        sa.Column("window", sa.Integer(), nullable=False),
        sa.Column("staff_id", sa.String(length=64), nullable=False),
        sa.Column(
            "origin",
            sa.Enum("citizen", "unrated", name="ratingorigin", native_enum=False, length=24),
            nullable=False,
        ),
        sa.Column("value", sa.Integer(), nullable=True),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("reasons", sa.JSON(), nullable=False),
        sa.Column("case_no", sa.String(length=64), nullable=True),
        sa.Column("case_source", sa.String(length=16), nullable=True),
        sa.Column("item_code", sa.String(length=64), nullable=True),
        sa.Column("item_name", sa.String(length=64), nullable=True),
        sa.Column("department", sa.String(length=64), nullable=True),
        sa.Column("department_name", sa.String(length=64), nullable=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "report_status",
            sa.Enum(
                "pending",
                "sent",
                "duplicate",
                "rejected",
                "failed",
                "skipped",
                name="reportstatus",
                native_enum=False,
                length=24,
            ),
            nullable=False,
        ),
        sa.Column("report_attempts", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("report_next_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("report_error", sa.String(length=400), nullable=True),
        sa.Column("reported_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["site_id"], ["sites.id"], name=op.f("fk_ratings_site_id_sites"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ratings")),
        sa.UniqueConstraint("site_id", "seq", name=op.f("uq_ratings_site_id_seq")),
    )
    with op.batch_alter_table("ratings", schema=None) as batch_op:
        batch_op.create_index("ix_ratings_day", ["day"], unique=False)
        batch_op.create_index(
            "ix_ratings_report_status_report_next_at",
            ["report_status", "report_next_at"],
            unique=False,
        )
        batch_op.create_index("ix_ratings_site_id_case_no", ["site_id", "case_no"], unique=False)

    op.create_table(
        "staff",
        sa.Column("site_id", sa.String(length=64), nullable=False),
        sa.Column("staff_id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=50), nullable=False),
        sa.ForeignKeyConstraint(
            ["site_id"], ["sites.id"], name=op.f("fk_staff_site_id_sites"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("site_id", "staff_id", name=op.f("pk_staff")),
    )
    op.create_table(
        "bad_ratings",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column(
            "rating_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("site_id", sa.String(length=64), nullable=False),
        sa.Column("town", sa.String(length=50), nullable=False),
        sa.Column(
            "status",
            sa.Enum(
                "open",
                "contacted",
                "appealed",
                "rectified",
                "revoked",
                name="badratingstatus",
                native_enum=False,
                length=24,
            ),
            nullable=False,
        ),
        sa.Column("opened_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("contact_due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("rectify_due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("contacted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("rectified_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("appealed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("appeal_from", sa.String(length=16), nullable=True),
        sa.Column("reviewed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["rating_id"],
            ["ratings.id"],
            name=op.f("fk_bad_ratings_rating_id_ratings"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["site_id"], ["sites.id"], name=op.f("fk_bad_ratings_site_id_sites"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_bad_ratings")),
        sa.UniqueConstraint("rating_id", name=op.f("uq_bad_ratings_rating_id")),
    )
    with op.batch_alter_table("bad_ratings", schema=None) as batch_op:
        batch_op.create_index("ix_bad_ratings_status_town", ["status", "town"], unique=False)

    op.create_table(
        "bad_rating_notes",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("case_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("actor", sa.String(length=100), nullable=False),
        sa.Column("actor_id", sa.String(length=64), nullable=True),
        sa.Column("source", sa.String(length=100), nullable=False),
        sa.Column("text", sa.String(length=1000), nullable=False),
        sa.ForeignKeyConstraint(
            ["case_id"],
            ["bad_ratings.id"],
            name=op.f("fk_bad_rating_notes_case_id_bad_ratings"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_bad_rating_notes")),
    )
    with op.batch_alter_table("bad_rating_notes", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_bad_rating_notes_case_id"), ["case_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("bad_rating_notes", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_bad_rating_notes_case_id"))

    op.drop_table("bad_rating_notes")
    with op.batch_alter_table("bad_ratings", schema=None) as batch_op:
        batch_op.drop_index("ix_bad_ratings_status_town")

    op.drop_table("bad_ratings")
    op.drop_table("staff")
    with op.batch_alter_table("ratings", schema=None) as batch_op:
        batch_op.drop_index("ix_ratings_site_id_case_no")
        batch_op.drop_index("ix_ratings_report_status_report_next_at")
        batch_op.drop_index("ix_ratings_day")

    op.drop_table("ratings")
    op.drop_table("rating_profiles")
