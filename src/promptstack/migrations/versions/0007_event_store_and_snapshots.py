"""event store and snapshots: the streams of event-sourced aggregates

Revision ID: 0007
Revises: 0006
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import promptstack.core.database

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "event_store",
        sa.Column(
            "position",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("event_id", sa.Uuid(), nullable=False),
        sa.Column("category", sa.String(length=64), nullable=False),
        sa.Column("stream", sa.String(length=128), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("type", sa.String(length=128), nullable=False),
        sa.Column("schema_version", sa.Integer(), nullable=False),
        sa.Column(
            "occurred_at", promptstack.core.database.UTCDateTime(timezone=True), nullable=False
        ),
        sa.Column("correlation_id", sa.String(length=128), nullable=False),
        sa.Column("causation_id", sa.Uuid(), nullable=True),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.CheckConstraint("version >= 1", name=op.f("ck_event_store_version")),
        sa.PrimaryKeyConstraint("position", name=op.f("pk_event_store")),
        sa.UniqueConstraint("event_id", name=op.f("uq_event_store_event_id")),
        sa.UniqueConstraint("stream", "version", name="uq_event_store_stream_version"),
    )
    with op.batch_alter_table("event_store", schema=None) as batch_op:
        batch_op.create_index(
            "ix_event_store_category_stream", ["category", "stream"], unique=False
        )
        batch_op.create_index(
            "ix_event_store_occurred_at", ["occurred_at"], unique=False, postgresql_using="brin"
        )

    op.create_table(
        "snapshots",
        sa.Column("stream", sa.String(length=128), nullable=False),
        sa.Column("category", sa.String(length=64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("schema", sa.Integer(), nullable=False),
        sa.Column("state", sa.JSON(), nullable=False),
        sa.Column("taken_at", promptstack.core.database.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("stream", name=op.f("pk_snapshots")),
    )
    with op.batch_alter_table("snapshots", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_snapshots_category"), ["category"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("snapshots", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_snapshots_category"))

    op.drop_table("snapshots")
    with op.batch_alter_table("event_store", schema=None) as batch_op:
        batch_op.drop_index("ix_event_store_occurred_at", postgresql_using="brin")
        batch_op.drop_index("ix_event_store_category_stream")

    op.drop_table("event_store")
