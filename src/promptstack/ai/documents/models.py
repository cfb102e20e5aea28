"""Documents and their chunks: the text a user uploaded, cut up, embedded and indexed.

A chunk's vector is kept as float32 bytes on both databases, with the name and the
dimension of the model that made it; that copy is what exact search reads and what
every other index is built from. Full-text indexes live beside the table, outside the
models (migration 0015): an FTS5 table kept by triggers on SQLite, a generated
`tsvector` column with a GIN index on PostgreSQL. On a PostgreSQL with the pgvector
extension, `document_vectors` holds the vectors of 384 dimensions again, as pgvector's
type, under an HNSW index (migration 0016); it exists on no other database, so it is
described on a metadata of its own.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

from pgvector.sqlalchemy import Vector
from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    Uuid,
)
from sqlalchemy.orm import Mapped, mapped_column

from promptstack.core.database import Base, UTCDateTime, str_enum

TITLE_MAX_LENGTH = 200
MODEL_NAME_MAX_LENGTH = 64
# Made by hand in migration 0015, for one database each, and mapped by no model: the
# schema comparison (`migrations.runner.compared`) leaves names that start so alone.
UNMAPPED_PREFIXES = (
    "document_chunks_fts",
    "search_vector",
    "ix_document_chunks_search_vector",
    "document_vectors",
)
# The dimension pgvector's index serves: the shipped model's. Other models' vectors are
# searched exactly.
PGVECTOR_DIMENSION = 384


Base.metadata.info.setdefault("unmapped_prefixes", set()).update(UNMAPPED_PREFIXES)


class DocumentKind(StrEnum):
    PDF = "pdf"
    MARKDOWN = "markdown"
    TEXT = "text"


class DocumentStatus(StrEnum):
    """What a reader is told about a document, from the state of its indexing job."""

    PENDING = "pending"
    INDEXING = "indexing"
    READY = "ready"
    FAILED = "failed"


class Document(Base):
    __tablename__ = "documents"
    __table_args__ = (
        Index("ix_documents_user_id_created_at_id", "user_id", "created_at", "id"),
        CheckConstraint("size_bytes >= 0 AND chunk_count >= 0", name="counts"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    user_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("users.id", ondelete="CASCADE"))
    title: Mapped[str] = mapped_column(String(TITLE_MAX_LENGTH))
    kind: Mapped[DocumentKind] = mapped_column(str_enum(DocumentKind, "document_kind"))
    size_bytes: Mapped[int] = mapped_column(Integer)
    # The text read from the upload; the upload's bytes are not kept.
    text: Mapped[str] = mapped_column(Text)
    # The latest job that indexes it (the upload's, or a re-embedding's).
    job_id: Mapped[uuid.UUID | None] = mapped_column(
        Uuid, ForeignKey("jobs.id", ondelete="SET NULL")
    )
    chunk_count: Mapped[int] = mapped_column(Integer, default=0)
    # The model of the chunks stored now; None until the first indexing succeeds.
    model: Mapped[str | None] = mapped_column(String(MODEL_NAME_MAX_LENGTH))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    indexed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class DocumentChunk(Base):
    __tablename__ = "document_chunks"
    __table_args__ = (
        UniqueConstraint("document_id", "chunk_index"),
        CheckConstraint("chunk_index >= 0 AND tokens >= 0 AND carried >= 0", name="counts"),
        CheckConstraint("dimension > 0 AND length(embedding) = 4 * dimension", name="vector"),
        # Exact search loads a user's vectors of one model, or those added since a version.
        Index("ix_document_chunks_user_id_model_set_version", "user_id", "model", "set_version"),
        # Never reuse an id: the full-text index refers to chunks by it.
        {"sqlite_autoincrement": True},
    )

    # An integer, not a UUID: the full-text index refers to chunks by it.
    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    document_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("documents.id", ondelete="CASCADE")
    )
    # The owner again, so a search filters by one indexed column.
    user_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("users.id", ondelete="CASCADE"))
    chunk_index: Mapped[int] = mapped_column(Integer)
    text: Mapped[str] = mapped_column(Text)
    tokens: Mapped[int] = mapped_column(Integer)
    # How many first characters repeat the end of the chunk before (the overlap).
    carried: Mapped[int] = mapped_column(Integer, default=0)
    model: Mapped[str] = mapped_column(String(MODEL_NAME_MAX_LENGTH))
    dimension: Mapped[int] = mapped_column(Integer)
    # float32, little-endian, `dimension` values, unit length.
    embedding: Mapped[bytes] = mapped_column(LargeBinary)
    # The version of the user's set of vectors of this model that added it.
    set_version: Mapped[int] = mapped_column(BigInteger, server_default="0")


class DocumentVectorSet(Base):
    """How a user's vectors of one model have changed: `version` goes up with every
    transaction that adds or removes some (their chunks carry the version that added
    them), `removals` with every one that removes some. Writers of one set take its row
    lock, so versions follow the order of commits; a process holding the vectors in
    memory tops them up with the chunks of later versions while nothing was removed, and
    reloads them otherwise."""

    __tablename__ = "document_vector_sets"

    user_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    model: Mapped[str] = mapped_column(String(MODEL_NAME_MAX_LENGTH), primary_key=True)
    version: Mapped[int] = mapped_column(BigInteger)
    removals: Mapped[int] = mapped_column(BigInteger)


PGVECTOR = MetaData()
document_vectors = Table(
    "document_vectors",
    PGVECTOR,
    Column(
        "chunk_id",
        BigInteger,
        ForeignKey("document_chunks.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("user_id", Uuid, nullable=False),
    Column("model", String(MODEL_NAME_MAX_LENGTH), nullable=False),
    Column("embedding", Vector(PGVECTOR_DIMENSION), nullable=False),
)
