"""Documents, their chunks, and the searches the database does itself: full text (FTS5
on SQLite, a `tsvector` with a GIN index on PostgreSQL), nearest neighbours through
pgvector's HNSW index where PostgreSQL has it, and the cheap questions exact vector
search asks before it reads a user's vectors."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import numpy.typing as npt
from sqlalchemy import Uuid, bindparam, delete, insert, or_, select, text
from sqlalchemy.dialects.postgresql import insert as postgres_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Row

from promptstack.ai.documents.models import (
    PGVECTOR_DIMENSION,
    Document,
    DocumentChunk,
    DocumentVectorSet,
    document_vectors,
)
from promptstack.core.pagination import Page, PageRequest
from promptstack.core.repository import PagedQuery, Repository
from promptstack.jobs.models import Job

# A document as a reader sees it: its columns but the text, and its job's state.
_SHOWN = (
    Document.id,
    Document.title,
    Document.kind,
    Document.size_bytes,
    Document.chunk_count,
    Document.model,
    Document.created_at,
    Document.indexed_at,
    Document.job_id,
    Job.state.label("job_state"),
    Job.current.label("job_current"),
    Job.total.label("job_total"),
    Job.error.label("job_error"),
)
_OWN = (
    select(*_SHOWN)
    .outerjoin(Job, Job.id == Document.job_id)
    .where(Document.user_id == bindparam("user_id"))
)
_LISTING = PagedQuery(_OWN, at=Document.created_at, id_=Document.id, newest_first=True)
_ONE = _OWN.where(Document.id == bindparam("document_id"))

_SQLITE_KEYWORD = text(
    "SELECT c.id, -bm25(document_chunks_fts) AS score FROM document_chunks_fts "
    "JOIN document_chunks AS c ON c.id = document_chunks_fts.rowid "
    "WHERE document_chunks_fts MATCH :query AND c.user_id = :user_id "
    "ORDER BY score DESC, c.id LIMIT :limit"
).bindparams(bindparam("user_id", type_=Uuid()))
_POSTGRES_KEYWORD = text(
    "SELECT c.id, ts_rank_cd(c.search_vector, q) AS score "
    "FROM document_chunks AS c, to_tsquery('english', :query) AS q "
    "WHERE c.user_id = :user_id AND c.search_vector @@ q "
    "ORDER BY score DESC, c.id LIMIT :limit"
).bindparams(bindparam("user_id", type_=Uuid()))

# A document's chunks as they are handed to `replace_chunks`.
ChunkRow = dict[str, Any]
ShownDocument = Row[Any]


@dataclass(frozen=True, slots=True)
class FoundChunk:
    id: int
    document_id: uuid.UUID
    title: str
    chunk_index: int
    text: str


class DocumentRepository(Repository[Document]):
    model = Document

    async def listing(self, user_id: uuid.UUID, request: PageRequest) -> Page[ShownDocument]:
        """A user's documents, newest first; served by (user_id, created_at, id)."""
        return await self.page_rows(_LISTING, request, {"user_id": user_id})

    async def shown(self, user_id: uuid.UUID, document_id: uuid.UUID) -> ShownDocument | None:
        """One of `user_id`'s documents; None for another user's, as for an unknown one."""
        connection = await self.connection()
        result = await connection.execute(_ONE, {"user_id": user_id, "document_id": document_id})
        return cast("ShownDocument | None", result.first())

    async def for_indexing(self, document_id: uuid.UUID) -> Document | None:
        """The document, locked until the transaction ends (on PostgreSQL; SQLite has one
        writer at a time anyway), so a deletion waits for its chunks to be written, or
        the writing finds it gone."""
        query = select(Document).where(Document.id == document_id).with_for_update()
        return (await self.session.scalars(query)).first()

    async def remove(self, user_id: uuid.UUID, document_id: uuid.UUID) -> bool:
        """Delete one of `user_id`'s documents with its chunks; False when there is none."""
        owned = select(Document.id).where(Document.id == document_id, Document.user_id == user_id)
        if await self.session.scalar(owned.with_for_update()) is None:
            return False
        await self._remove_chunks(document_id)
        await self.session.execute(delete(Document).where(Document.id == document_id))
        return True

    async def _remove_chunks(self, document_id: uuid.UUID) -> set[tuple[uuid.UUID, str]]:
        """Delete the document's chunks, counted as a removal in each set they were in;
        those sets, by (user, model)."""
        found = await self.session.execute(
            select(DocumentChunk.user_id, DocumentChunk.model)
            .where(DocumentChunk.document_id == document_id)
            .distinct()
        )
        sets = {(user_id, model) for user_id, model in found}
        for user_id, model in sorted(sets):
            await self._next_version(user_id, model, removal=True)
        await self.session.execute(
            delete(DocumentChunk).where(DocumentChunk.document_id == document_id)
        )
        return sets

    async def _next_version(self, user_id: uuid.UUID, model: str, *, removal: bool) -> int:
        """Take the set's row lock and its next version (made at 1 for a new set)."""
        connection = await self.connection()
        insert_ = postgres_insert if connection.dialect.name == "postgresql" else sqlite_insert
        removed = 1 if removal else 0
        statement = (
            insert_(DocumentVectorSet)
            .values(user_id=user_id, model=model, version=1, removals=removed)
            .on_conflict_do_update(
                index_elements=["user_id", "model"],
                set_={
                    "version": DocumentVectorSet.version + 1,
                    "removals": DocumentVectorSet.removals + removed,
                },
            )
            .returning(DocumentVectorSet.version)
        )
        return int((await self.session.execute(statement)).scalar_one())

    async def to_reembed(self, model: str, *, everything: bool) -> list[uuid.UUID]:
        """The documents whose chunks are not of `model` (or not there), oldest first;
        with `everything`, all of them."""
        query = select(Document.id).order_by(Document.created_at, Document.id)
        if not everything:
            query = query.where(or_(Document.model.is_(None), Document.model != model))
        return list((await self.session.scalars(query)).all())

    async def replace_chunks(self, document_id: uuid.UUID, rows: Sequence[ChunkRow]) -> None:
        """The document's chunks become `rows`, whatever it had before (their vectors in
        pgvector's index too, where there is one), in a new version of their set."""
        replaced = await self._remove_chunks(document_id)
        if not rows:
            return
        user_id, model = rows[0]["user_id"], rows[0]["model"]
        if (user_id, model) in replaced:
            # Counted once: the removal above took this set's version already.
            version = await self._version(user_id, model)
        else:
            version = await self._next_version(user_id, model, removal=False)
        rows = [{**row, "set_version": version} for row in rows]
        if not await self.has_vector_index():
            await self.session.execute(insert(DocumentChunk), list(rows))
            return
        stored = await self.session.execute(
            insert(DocumentChunk).returning(DocumentChunk.id, sort_by_parameter_order=True),
            list(rows),
        )
        indexed = [
            {
                "chunk_id": chunk_id,
                "user_id": row["user_id"],
                "model": row["model"],
                "embedding": np.frombuffer(row["embedding"], dtype="<f4"),
            }
            for chunk_id, row in zip(stored.scalars().all(), rows, strict=True)
            if row["dimension"] == PGVECTOR_DIMENSION
        ]
        if indexed:
            await self.session.execute(insert(document_vectors), indexed)

    async def has_vector_index(self) -> bool:
        """Whether this database keeps vectors under pgvector's index (migration 0016)."""
        connection = await self.connection()
        if connection.dialect.name != "postgresql":
            return False
        found = await connection.scalar(text("SELECT to_regclass('document_vectors') IS NOT NULL"))
        return bool(found)

    async def nearest(
        self, user_id: uuid.UUID, model: str, query: npt.NDArray[np.float32], top_k: int
    ) -> list[tuple[int, float]]:
        """The user's `top_k` chunks of `model` closest to `query` through pgvector's HNSW
        index, as (chunk id, cosine). The scan is iterative: it goes on past chunks of
        other users until it has `top_k` of this one's (or has seen `max_scan_tuples`),
        in exact distance order."""
        connection = await self.connection()
        await connection.execute(text("SET LOCAL hnsw.iterative_scan = strict_order"))
        await connection.execute(text(f"SET LOCAL hnsw.ef_search = {max(100, min(top_k, 1000))}"))
        distance = document_vectors.c.embedding.cosine_distance(query)
        found = await connection.execute(
            select(document_vectors.c.chunk_id, (1 - distance).label("score"))
            .where(document_vectors.c.user_id == user_id, document_vectors.c.model == model)
            .order_by(distance)
            .limit(top_k)
        )
        return [(int(row.chunk_id), float(row.score)) for row in found]

    async def _version(self, user_id: uuid.UUID, model: str) -> int:
        query = select(DocumentVectorSet.version).where(
            DocumentVectorSet.user_id == user_id, DocumentVectorSet.model == model
        )
        return int(await self.session.scalar(query) or 0)

    async def vector_set(self, user_id: uuid.UUID, model: str) -> tuple[int, int]:
        """The (version, removals) of the user's set of vectors of `model`; (0, 0) for
        a set that never had any."""
        query = select(DocumentVectorSet.version, DocumentVectorSet.removals).where(
            DocumentVectorSet.user_id == user_id, DocumentVectorSet.model == model
        )
        found = (await self.session.execute(query)).first()
        return (0, 0) if found is None else (int(found.version), int(found.removals))

    async def vectors(
        self, user_id: uuid.UUID, model: str, *, since: int | None = None
    ) -> list[tuple[int, int, bytes]]:
        """The user's vectors of `model` (those added after version `since`, if given),
        as (chunk id, set version, float32 bytes)."""
        query = select(DocumentChunk.id, DocumentChunk.set_version, DocumentChunk.embedding).where(
            DocumentChunk.user_id == user_id, DocumentChunk.model == model
        )
        if since is not None:
            query = query.where(DocumentChunk.set_version > since)
        connection = await self.connection()
        found = await connection.execute(query.order_by(DocumentChunk.id))
        return [(row.id, row.set_version, row.embedding) for row in found]

    async def keyword(
        self, user_id: uuid.UUID, terms: Sequence[str], limit: int
    ) -> list[tuple[int, float]]:
        """Chunks of the user's that hold any of `terms` (words: letters, digits and _),
        best first by the database's own rank (BM25 on SQLite, cover density on
        PostgreSQL), as (chunk id, score)."""
        if not terms:
            return []
        connection = await self.connection()
        if connection.dialect.name == "sqlite":
            statement, query = _SQLITE_KEYWORD, " OR ".join(f'"{term}"' for term in terms)
        else:
            statement, query = _POSTGRES_KEYWORD, " | ".join(terms)
        values = {"query": query, "user_id": user_id, "limit": limit}
        result = await connection.execute(statement, values)
        return [(int(row.id), float(row.score)) for row in result]

    async def chunks(self, user_id: uuid.UUID, ids: Sequence[int]) -> dict[int, FoundChunk]:
        """The user's chunks among `ids`, with their documents' titles, by id."""
        if not ids:
            return {}
        query = (
            select(
                DocumentChunk.id,
                DocumentChunk.document_id,
                Document.title,
                DocumentChunk.chunk_index,
                DocumentChunk.text,
            )
            .join(Document, Document.id == DocumentChunk.document_id)
            .where(DocumentChunk.user_id == user_id, DocumentChunk.id.in_(list(ids)))
        )
        connection = await self.connection()
        return {
            row.id: FoundChunk(row.id, row.document_id, row.title, row.chunk_index, row.text)
            for row in await connection.execute(query)
        }
