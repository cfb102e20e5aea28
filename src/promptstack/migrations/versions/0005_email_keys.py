"""email keys recomputed: NFKC, then casefold, domains in their ASCII form

Revision ID: 0005
Revises: 0004

Keys of existing accounts are recomputed with the rules of this revision, oldest account
first. An address the rules now refuse, or whose new key another account already holds,
keeps its old key, and is named in the migration's log for someone to look at.
"""

import logging
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from promptstack.accounts.rules import email_key

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

log = logging.getLogger("alembic.runtime.migration")

users = sa.table(
    "users",
    sa.column("id", sa.Uuid()),
    sa.column("email", sa.String()),
    sa.column("email_key", sa.String()),
    sa.column("created_at", sa.DateTime()),
    sa.column("deleted_at", sa.DateTime()),
)


def upgrade() -> None:
    connection = op.get_bind()
    rows = connection.execute(
        sa.select(users.c.id, users.c.email, users.c.email_key, users.c.deleted_at).order_by(
            users.c.created_at, users.c.id
        )
    ).all()
    held = {row.email_key for row in rows}
    for row in rows:
        if row.deleted_at is not None:
            continue
        try:
            key = email_key(row.email)
        except ValueError as exc:
            log.warning("account %s keeps its email key: %s", row.id, exc)
            continue
        if key == row.email_key:
            continue
        if key in held:
            log.warning("account %s keeps its email key: another account holds %s", row.id, key)
            continue
        connection.execute(sa.update(users).where(users.c.id == row.id).values(email_key=key))
        held.discard(row.email_key)
        held.add(key)


def downgrade() -> None:
    """Keys stay as recomputed: the earlier form is not kept, and the new one is stricter."""
