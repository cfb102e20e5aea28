"""vector set versions: a row per user and model saying how their vectors changed

Revision ID: 0017
Revises: 0016

Exact search holds a user's vectors in memory and asks, before each query, whether they
changed. Counting them on every query took time in proportion to their number; this row,
read by its key, says it at once: `version` goes up with each transaction that adds or
removes vectors (the chunks carry the version that added them), `removals` with each
that removes some. Existing chunks start at version 0.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "document_vector_sets",
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("model", sa.String(length=64), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("removals", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_document_vector_sets_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("user_id", "model", name=op.f("pk_document_vector_sets")),
    )
    # Not in a batch: on SQLite a batch copies the table, and its full-text triggers with
    # it would be lost. Adding a column and indexes needs no copy.
    op.add_column(
        "document_chunks",
        sa.Column("set_version", sa.BigInteger(), server_default="0", nullable=False),
    )
    op.drop_index("ix_document_chunks_user_id_model_id", table_name="document_chunks")
    op.create_index(
        "ix_document_chunks_user_id_model_set_version",
        "document_chunks",
        ["user_id", "model", "set_version"],
    )


def downgrade() -> None:
    op.drop_index("ix_document_chunks_user_id_model_set_version", table_name="document_chunks")
    op.create_index(
        "ix_document_chunks_user_id_model_id", "document_chunks", ["user_id", "model", "id"]
    )
    op.drop_column("document_chunks", "set_version")
    op.drop_table("document_vector_sets")
