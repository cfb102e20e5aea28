"""pgvector: an HNSW index over the chunks' vectors, on a PostgreSQL that has the extension

Revision ID: 0016
Revises: 0015

Nothing changes on SQLite, nor on a PostgreSQL without the `vector` extension (or
without the right to create it): search stays exact there. Where it can, this creates
the extension and `document_vectors` (the 384-dimension vectors of the chunks again, as
pgvector's type, removed with their chunk) with an HNSW index for cosine distance, and
fills it from the chunks already stored. An extension installed later is taken up by
running `promptstack migrate` again after `promptstack migrate 0015`.
"""

from collections.abc import Sequence

import numpy as np
import sqlalchemy as sa
from alembic import op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

DIMENSION = 384
TABLE = f"""
CREATE TABLE document_vectors (
    chunk_id BIGINT NOT NULL,
    user_id UUID NOT NULL,
    model VARCHAR(64) NOT NULL,
    embedding vector({DIMENSION}) NOT NULL,
    CONSTRAINT pk_document_vectors PRIMARY KEY (chunk_id),
    CONSTRAINT fk_document_vectors_chunk_id_document_chunks FOREIGN KEY (chunk_id)
        REFERENCES document_chunks (id) ON DELETE CASCADE
)
"""
INDEX = (
    "CREATE INDEX ix_document_vectors_embedding ON document_vectors "
    "USING hnsw (embedding vector_cosine_ops)"
)
# The user's filter runs inside the index scan; this index serves what it cannot.
USER_INDEX = "CREATE INDEX ix_document_vectors_user_id_model ON document_vectors (user_id, model)"


def _has_pgvector(bind: sa.Connection) -> bool:
    available = bind.scalar(sa.text("SELECT 1 FROM pg_available_extensions WHERE name = 'vector'"))
    if available is None:
        return False
    try:
        with bind.begin_nested():
            bind.execute(sa.text("CREATE EXTENSION IF NOT EXISTS vector"))
    except sa.exc.DBAPIError:
        return False  # not ours to create (no privilege): exact search it is
    return True


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql" or not _has_pgvector(bind):
        return
    op.execute(TABLE)
    op.execute(INDEX)
    op.execute(USER_INDEX)
    rows = bind.execute(
        sa.text("SELECT id, user_id, model, embedding FROM document_chunks WHERE dimension = :d"),
        {"d": DIMENSION},
    ).all()
    filled = [
        {
            "id": row.id,
            "user_id": row.user_id,
            "model": row.model,
            "embedding": "["
            + ",".join(f"{v:.9g}" for v in np.frombuffer(row.embedding, "<f4"))
            + "]",
        }
        for row in rows
    ]
    if filled:
        bind.execute(
            sa.text(
                "INSERT INTO document_vectors (chunk_id, user_id, model, embedding) "
                "VALUES (:id, :user_id, :model, CAST(:embedding AS vector))"
            ),
            filled,
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TABLE IF EXISTS document_vectors")
