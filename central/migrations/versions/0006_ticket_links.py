"""ticket_links: the progress pages' tokens (as SHA-256) and their tickets

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07 09:30:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

def upgrade() -> None:
    op.create_table(
        "ticket_links",
        sa.Column("token_sha256", sa.String(length=64), nullable=False),
        sa.Column("site_id", sa.String(length=64), nullable=False),
        sa.Column("ticket", sa.String(length=8), nullable=False),
        sa.Column("service", sa.String(length=64), nullable=False),
        sa.Column("issued_seq", sa.BigInteger(), nullable=False),
        sa.Column("issued_ms", sa.BigInteger(), nullable=False),
        sa.Column("wait_p50_s", sa.Integer(), nullable=True),
        sa.Column("wait_p90_s", sa.Integer(), nullable=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["site_id"], ["sites.id"],
                                name=op.f("fk_ticket_links_site_id_sites"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("token_sha256", name=op.f("pk_ticket_links")),
    )
    op.create_index(op.f("ix_ticket_links_expires_at"), "ticket_links", ["expires_at"])


def downgrade() -> None:
    op.drop_index(op.f("ix_ticket_links_expires_at"), table_name="ticket_links")
    op.drop_table("ticket_links")
