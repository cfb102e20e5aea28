"""payments and reservations: the saga's payment and inventory steps, and the sandbox

Revision ID: 0010
Revises: 0009
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import promptstack.core.database

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "payment_sandbox",
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("outcome", sa.String(length=32), nullable=False),
        sa.Column("amount_cents", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("reference", sa.String(length=200), nullable=False),
        sa.Column("charge_id", sa.String(length=64), nullable=True),
        sa.Column(
            "created_at", promptstack.core.database.UTCDateTime(timezone=True), nullable=False
        ),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_payment_sandbox")),
        sa.UniqueConstraint("id", name=op.f("uq_payment_sandbox_id")),
    )
    with op.batch_alter_table("payment_sandbox", schema=None) as batch_op:
        batch_op.create_index("ix_payment_sandbox_reference", ["reference"], unique=False)

    op.create_table(
        "payments",
        sa.Column("order_id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("amount_cents", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("token", sa.String(length=128), nullable=False),
        sa.Column("lines", sa.JSON(), nullable=False),
        sa.Column(
            "status",
            sa.Enum(
                "pending",
                "charging",
                "charged",
                "declined",
                "abandoned",
                "voided",
                "refunding",
                "refunded",
                name="payment_status",
                native_enum=False,
                create_constraint=True,
                length=16,
            ),
            nullable=False,
        ),
        sa.Column("cancel_requested", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("charge_id", sa.String(length=128), nullable=True),
        sa.Column("refunded_cents", sa.BigInteger(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column(
            "first_attempt_at", promptstack.core.database.UTCDateTime(timezone=True), nullable=True
        ),
        sa.Column(
            "created_at", promptstack.core.database.UTCDateTime(timezone=True), nullable=False
        ),
        sa.Column(
            "updated_at", promptstack.core.database.UTCDateTime(timezone=True), nullable=False
        ),
        sa.PrimaryKeyConstraint("order_id", name=op.f("pk_payments")),
    )
    op.create_table(
        "reservations",
        sa.Column("order_id", sa.Uuid(), nullable=False),
        sa.Column("lines", sa.JSON(), nullable=False),
        sa.Column(
            "status",
            sa.Enum(
                "reserved",
                "refused",
                "released",
                name="reservation_status",
                native_enum=False,
                create_constraint=True,
                length=16,
            ),
            nullable=False,
        ),
        sa.Column(
            "created_at", promptstack.core.database.UTCDateTime(timezone=True), nullable=False
        ),
        sa.Column(
            "updated_at", promptstack.core.database.UTCDateTime(timezone=True), nullable=False
        ),
        sa.PrimaryKeyConstraint("order_id", name=op.f("pk_reservations")),
    )


def downgrade() -> None:
    op.drop_table("reservations")
    op.drop_table("payments")
    with op.batch_alter_table("payment_sandbox", schema=None) as batch_op:
        batch_op.drop_index("ix_payment_sandbox_reference")

    op.drop_table("payment_sandbox")
