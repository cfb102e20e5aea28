"""outbox, inbox, jobs and notifications

Revision ID: 0003
Revises: 0002
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import promptstack.core.database

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "inbox",
        sa.Column("consumer", sa.String(length=128), nullable=False),
        sa.Column("event_id", sa.Uuid(), nullable=False),
        sa.Column(
            "processed_at", promptstack.core.database.UTCDateTime(timezone=True), nullable=False
        ),
        sa.PrimaryKeyConstraint("consumer", "event_id", name=op.f("pk_inbox")),
    )
    with op.batch_alter_table("inbox", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_inbox_processed_at"), ["processed_at"], unique=False)

    op.create_table(
        "outbox",
        sa.Column(
            "position",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("type", sa.String(length=128), nullable=False),
        sa.Column("schema_version", sa.Integer(), nullable=False),
        sa.Column("aggregate_id", sa.String(length=128), nullable=False),
        sa.Column(
            "occurred_at", promptstack.core.database.UTCDateTime(timezone=True), nullable=False
        ),
        sa.Column("correlation_id", sa.String(length=128), nullable=False),
        sa.Column("causation_id", sa.Uuid(), nullable=True),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column(
            "available_at", promptstack.core.database.UTCDateTime(timezone=True), nullable=False
        ),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column(
            "published_at", promptstack.core.database.UTCDateTime(timezone=True), nullable=True
        ),
        sa.Column("parked_at", promptstack.core.database.UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("position", name=op.f("pk_outbox")),
        sa.UniqueConstraint("id", name=op.f("uq_outbox_id")),
    )
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.create_index(
            "ix_outbox_parked",
            ["parked_at"],
            unique=False,
            postgresql_where=sa.text("parked_at IS NOT NULL"),
            sqlite_where=sa.text("parked_at IS NOT NULL"),
        )
        batch_op.create_index(
            "ix_outbox_pending",
            ["available_at", "position"],
            unique=False,
            postgresql_where=sa.text("published_at IS NULL AND parked_at IS NULL"),
            sqlite_where=sa.text("published_at IS NULL AND parked_at IS NULL"),
        )
        batch_op.create_index(
            "ix_outbox_pending_aggregate",
            ["aggregate_id", "position"],
            unique=False,
            postgresql_where=sa.text("published_at IS NULL AND parked_at IS NULL"),
            sqlite_where=sa.text("published_at IS NULL AND parked_at IS NULL"),
        )
        batch_op.create_index("ix_outbox_published_at", ["published_at"], unique=False)

    op.create_table(
        "jobs",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("owner_id", sa.Uuid(), nullable=True),
        sa.Column("kind", sa.String(length=64), nullable=False),
        sa.Column(
            "state",
            sa.Enum(
                "pending",
                "progress",
                "success",
                "failure",
                name="job_state",
                native_enum=False,
                create_constraint=True,
                length=16,
            ),
            nullable=False,
        ),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("result", sa.JSON(), nullable=True),
        sa.Column("current", sa.Integer(), nullable=False),
        sa.Column("total", sa.Integer(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column(
            "created_at", promptstack.core.database.UTCDateTime(timezone=True), nullable=False
        ),
        sa.Column(
            "updated_at", promptstack.core.database.UTCDateTime(timezone=True), nullable=False
        ),
        sa.Column(
            "started_at", promptstack.core.database.UTCDateTime(timezone=True), nullable=True
        ),
        sa.Column(
            "finished_at", promptstack.core.database.UTCDateTime(timezone=True), nullable=True
        ),
        sa.Column(
            "locked_until", promptstack.core.database.UTCDateTime(timezone=True), nullable=True
        ),
        sa.ForeignKeyConstraint(
            ["owner_id"], ["users.id"], name=op.f("fk_jobs_owner_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_jobs")),
    )
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.create_index(
            "ix_jobs_owner_id_created_at", ["owner_id", "created_at"], unique=False
        )
        batch_op.create_index(
            "ix_jobs_unfinished",
            ["created_at"],
            unique=False,
            postgresql_where=sa.text("state IN ('pending', 'progress')"),
            sqlite_where=sa.text("state IN ('pending', 'progress')"),
        )

    op.create_table(
        "notifications",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("sender_id", sa.Uuid(), nullable=True),
        sa.Column("subject", sa.String(length=200), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column(
            "created_at", promptstack.core.database.UTCDateTime(timezone=True), nullable=False
        ),
        sa.Column("read_at", promptstack.core.database.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["sender_id"],
            ["users.id"],
            name=op.f("fk_notifications_sender_id_users"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_notifications_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notifications")),
    )
    with op.batch_alter_table("notifications", schema=None) as batch_op:
        batch_op.create_index(
            "ix_notifications_user_id_created_at_id", ["user_id", "created_at", "id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("notifications", schema=None) as batch_op:
        batch_op.drop_index("ix_notifications_user_id_created_at_id")

    op.drop_table("notifications")
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_index(
            "ix_jobs_unfinished",
            postgresql_where=sa.text("state IN ('pending', 'progress')"),
            sqlite_where=sa.text("state IN ('pending', 'progress')"),
        )
        batch_op.drop_index("ix_jobs_owner_id_created_at")

    op.drop_table("jobs")
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_index("ix_outbox_published_at")
        batch_op.drop_index(
            "ix_outbox_pending_aggregate",
            postgresql_where=sa.text("published_at IS NULL AND parked_at IS NULL"),
            sqlite_where=sa.text("published_at IS NULL AND parked_at IS NULL"),
        )
        batch_op.drop_index(
            "ix_outbox_pending",
            postgresql_where=sa.text("published_at IS NULL AND parked_at IS NULL"),
            sqlite_where=sa.text("published_at IS NULL AND parked_at IS NULL"),
        )
        batch_op.drop_index(
            "ix_outbox_parked",
            postgresql_where=sa.text("parked_at IS NOT NULL"),
            sqlite_where=sa.text("parked_at IS NOT NULL"),
        )

    op.drop_table("outbox")
    with op.batch_alter_table("inbox", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_inbox_processed_at"))

    op.drop_table("inbox")
