"""order views: the orders' read model, indexed for every list

Revision ID: 0011
Revises: 0010
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import promptstack.core.database

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "order_views",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("cancel_reason", sa.String(length=32), nullable=True),
        sa.Column("items", sa.JSON(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("discount_percent", sa.Integer(), nullable=False),
        sa.Column("subtotal_cents", sa.BigInteger(), nullable=False),
        sa.Column("discount_cents", sa.BigInteger(), nullable=False),
        sa.Column("total_cents", sa.BigInteger(), nullable=False),
        sa.Column("payment_id", sa.String(length=128), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column(
            "created_at", promptstack.core.database.UTCDateTime(timezone=True), nullable=False
        ),
        sa.Column(
            "updated_at", promptstack.core.database.UTCDateTime(timezone=True), nullable=False
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_order_views")),
    )
    with op.batch_alter_table("order_views", schema=None) as batch_op:
        batch_op.create_index("ix_order_views_created_at_id", ["created_at", "id"], unique=False)
        batch_op.create_index(
            "ix_order_views_status_created_at_id", ["status", "created_at", "id"], unique=False
        )
        batch_op.create_index(
            "ix_order_views_unsettled",
            ["updated_at"],
            unique=False,
            postgresql_where=sa.text("status IN ('pending', 'paid')"),
            sqlite_where=sa.text("status IN ('pending', 'paid')"),
        )
        batch_op.create_index(
            "ix_order_views_user_created_at_id", ["user_id", "created_at", "id"], unique=False
        )
        batch_op.create_index(
            "ix_order_views_user_status_created_at_id",
            ["user_id", "status", "created_at", "id"],
            unique=False,
        )


def downgrade() -> None:
    with op.batch_alter_table("order_views", schema=None) as batch_op:
        batch_op.drop_index("ix_order_views_user_status_created_at_id")
        batch_op.drop_index("ix_order_views_user_created_at_id")
        batch_op.drop_index(
            "ix_order_views_unsettled",
            postgresql_where=sa.text("status IN ('pending', 'paid')"),
            sqlite_where=sa.text("status IN ('pending', 'paid')"),
        )
        batch_op.drop_index("ix_order_views_status_created_at_id")
        batch_op.drop_index("ix_order_views_created_at_id")

    op.drop_table("order_views")
