"""signup credits: a reason in the credit ledger for the credits a new account starts with

Revision ID: 0013
Revises: 0012
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_NAME = "ck_credit_ledger_credit_reason"


def _reasons(*reasons: str) -> str:
    return "reason IN (" + ", ".join(f"'{reason}'" for reason in reasons) + ")"


def upgrade() -> None:
    with op.batch_alter_table("credit_ledger", schema=None) as batch_op:
        batch_op.drop_constraint(op.f(_NAME), type_="check")
        batch_op.create_check_constraint(
            op.f(_NAME), _reasons("purchase", "usage", "adjustment", "signup")
        )


def downgrade() -> None:
    op.execute("DELETE FROM credit_ledger WHERE reason = 'signup'")
    with op.batch_alter_table("credit_ledger", schema=None) as batch_op:
        batch_op.drop_constraint(op.f(_NAME), type_="check")
        batch_op.create_check_constraint(op.f(_NAME), _reasons("purchase", "usage", "adjustment"))
