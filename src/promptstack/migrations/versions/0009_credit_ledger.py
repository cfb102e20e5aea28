"""credit ledger: every change of a credit balance; balances in 64 bits, never negative

Revision ID: 0009
Revises: 0008
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import promptstack.core.database

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "credit_ledger",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("delta", sa.BigInteger(), nullable=False),
        sa.Column("balance", sa.BigInteger(), nullable=False),
        sa.Column(
            "reason",
            sa.Enum(
                "purchase",
                "usage",
                "adjustment",
                name="credit_reason",
                native_enum=False,
                create_constraint=True,
                length=16,
            ),
            nullable=False,
        ),
        sa.Column("reference", sa.String(length=128), nullable=False),
        sa.Column(
            "created_at", promptstack.core.database.UTCDateTime(timezone=True), nullable=False
        ),
        sa.CheckConstraint("delta <> 0", name=op.f("ck_credit_ledger_delta_not_zero")),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_credit_ledger_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_credit_ledger")),
        sa.UniqueConstraint("reason", "reference", name=op.f("uq_credit_ledger_reason_reference")),
    )
    with op.batch_alter_table("credit_ledger", schema=None) as batch_op:
        batch_op.create_index(
            "ix_credit_ledger_user_created_at_id", ["user_id", "created_at", "id"], unique=False
        )

    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.alter_column(
            "credits", existing_type=sa.INTEGER(), type_=sa.BigInteger(), existing_nullable=False
        )
        batch_op.create_check_constraint(op.f("ck_users_credits_not_negative"), "credits >= 0")


def downgrade() -> None:
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_users_credits_not_negative"), type_="check")
        batch_op.alter_column(
            "credits", existing_type=sa.BigInteger(), type_=sa.INTEGER(), existing_nullable=False
        )

    with op.batch_alter_table("credit_ledger", schema=None) as batch_op:
        batch_op.drop_index("ix_credit_ledger_user_created_at_id")

    op.drop_table("credit_ledger")
