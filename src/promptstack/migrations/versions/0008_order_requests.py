"""order requests: the idempotency keys of placing orders

Revision ID: 0008
Revises: 0007
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import promptstack.core.database

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "order_requests",
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("body_hash", sa.String(length=64), nullable=False),
        sa.Column("order_id", sa.Uuid(), nullable=False),
        sa.Column(
            "created_at", promptstack.core.database.UTCDateTime(timezone=True), nullable=False
        ),
        sa.PrimaryKeyConstraint("user_id", "key", name=op.f("pk_order_requests")),
    )
    with op.batch_alter_table("order_requests", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_order_requests_created_at"), ["created_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("order_requests", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_order_requests_created_at"))

    op.drop_table("order_requests")
