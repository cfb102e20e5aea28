"""pgvector on a real PostgreSQL with the extension: the migration builds the HNSW index,
the index is what a search reads, and it ranks exactly as exact search does on the same
vectors, user by user."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import numpy as np
import pytest
from alembic import command
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from promptstack.accounts.models import Role, Tier, User
from promptstack.ai.documents.models import PGVECTOR_DIMENSION, Document, DocumentKind
from promptstack.ai.documents.repository import DocumentRepository
from promptstack.ai.documents.vectors import ExactVectors
from promptstack.core.database import Database
from promptstack.core.unit_of_work import UnitOfWorkFactory
from promptstack.migrations.runner import alembic_config
from tests.conftest import empty_postgres, make_settings

pytestmark = pytest.mark.postgres

MODEL = "random-unit-384"
USERS = 3
CHUNKS_EACH = 150


@pytest.fixture
async def uow(pgvector_url: str, tmp_path: object) -> AsyncIterator[UnitOfWorkFactory]:
    await empty_postgres(pgvector_url)
    database = Database(make_settings(pgvector_url, tmp_path))  # type: ignore[arg-type]
    yield UnitOfWorkFactory(database)
    await database.dispose()


def _unit(rows: int, seed: int) -> np.ndarray:
    matrix = np.random.default_rng(seed).standard_normal((rows, PGVECTOR_DIMENSION))
    return (matrix / np.linalg.norm(matrix, axis=1, keepdims=True)).astype(np.float32)


async def _stored(uow: UnitOfWorkFactory) -> list[uuid.UUID]:
    """USERS users, each with one document of CHUNKS_EACH random unit vectors."""
    now = datetime.now(UTC)
    users = [uuid.uuid4() for _ in range(USERS)]
    for n, user_id in enumerate(users):
        async with uow() as writing:
            writing.session.add(
                User(
                    id=user_id,
                    email=f"u{n}@example.com",
                    email_key=f"u{n}@example.com",
                    username=f"user{n}",
                    username_key=f"user{n}",
                    search_key=f"user{n}",
                    full_name=None,
                    password_hash="!",
                    role=Role.USER,
                    tier=Tier.FREE,
                    created_at=now,
                    updated_at=now,
                )
            )
            await writing.session.flush()
            document_id = uuid.uuid4()
            documents = DocumentRepository.of(writing)
            documents.add(
                Document(
                    id=document_id,
                    user_id=user_id,
                    title=f"Random {n}",
                    kind=DocumentKind.TEXT,
                    size_bytes=1,
                    text="-",
                    job_id=None,
                    chunk_count=CHUNKS_EACH,
                    model=MODEL,
                    created_at=now,
                    indexed_at=now,
                )
            )
            await documents.flush()
            vectors = _unit(CHUNKS_EACH, seed=n)
            await documents.replace_chunks(
                document_id,
                [
                    {
                        "document_id": document_id,
                        "user_id": user_id,
                        "chunk_index": i,
                        "text": f"chunk {i}",
                        "tokens": 2,
                        "carried": 0,
                        "model": MODEL,
                        "dimension": PGVECTOR_DIMENSION,
                        "embedding": vectors[i].astype("<f4").tobytes(),
                    }
                    for i in range(CHUNKS_EACH)
                ],
            )
    return users


async def test_the_migration_builds_an_hnsw_index_that_searches_read(
    uow: UnitOfWorkFactory, pgvector_url: str
) -> None:
    await _stored(uow)
    engine = create_async_engine(pgvector_url)
    async with engine.connect() as connection:
        definition = await connection.scalar(
            text(
                "SELECT indexdef FROM pg_indexes WHERE indexname = 'ix_document_vectors_embedding'"
            )
        )
        count = await connection.scalar(text("SELECT count(*) FROM document_vectors"))
        # Few rows: the planner would read them all; here it is asked what it can use.
        await connection.execute(text("SET enable_seqscan = off"))
        query = "[" + ",".join(["0.05"] * PGVECTOR_DIMENSION) + "]"

        # For one user the planner weighs this index (the filter inside its scan)
        # against reading that user's rows by their own index and sorting them, which
        # is cheaper, and exact, for a user with few.
        rows = await connection.execute(
            text(
                "EXPLAIN SELECT chunk_id FROM document_vectors "
                "ORDER BY embedding <=> CAST(:q AS vector) LIMIT 5"
            ),
            {"q": query},
        )
        everyone = "\n".join(row[0] for row in rows)
    await engine.dispose()

    assert "hnsw" in str(definition)
    assert "vector_cosine_ops" in str(definition)
    assert count == USERS * CHUNKS_EACH
    assert "Index Scan using ix_document_vectors_embedding" in everyone


@pytest.mark.parametrize("top_k", [1, 5, 50])
async def test_pgvector_ranks_as_exact_search_does(uow: UnitOfWorkFactory, top_k: int) -> None:
    users = await _stored(uow)
    exact = ExactVectors(uow, max_bytes=2**30)
    queries = _unit(12, seed=99)

    for user_id in users:
        for query in queries:
            async with uow(read_only=True) as reading:
                indexed = await DocumentRepository.of(reading).nearest(user_id, MODEL, query, top_k)
            scored = await exact.nearest(user_id, MODEL, query, top_k)

            assert [chunk for chunk, _ in indexed] == [chunk for chunk, _ in scored]
            assert np.allclose([s for _, s in indexed], [s for _, s in scored], atol=1e-5)


async def test_deleting_a_chunk_takes_its_vector_out_of_the_index(uow: UnitOfWorkFactory) -> None:
    users = await _stored(uow)
    query = _unit(1, seed=0)[0]  # user 0's first vector is the query itself
    async with uow(read_only=True) as reading:
        [(best, score)] = await DocumentRepository.of(reading).nearest(users[0], MODEL, query, 1)
    assert score == pytest.approx(1.0, abs=1e-5)

    async with uow() as writing:
        await writing.session.execute(
            text("DELETE FROM document_chunks WHERE id = :id"), {"id": best}
        )
    async with uow(read_only=True) as reading:
        found = await DocumentRepository.of(reading).nearest(users[0], MODEL, query, 5)

    assert best not in {chunk for chunk, _ in found}
    assert len(found) == 5


async def test_the_migration_fills_the_index_from_the_chunks_already_stored(
    uow: UnitOfWorkFactory, pgvector_url: str
) -> None:
    """pgvector installed after documents were: 0016 run again takes them all in."""
    await _stored(uow)
    config = alembic_config(pgvector_url)
    await asyncio.to_thread(command.downgrade, config, "0015")
    try:
        async with uow(read_only=True) as reading:
            assert not await DocumentRepository.of(reading).has_vector_index()
    finally:
        await asyncio.to_thread(command.upgrade, config, "head")

    async with uow(read_only=True) as reading:
        documents = DocumentRepository.of(reading)
        assert await documents.has_vector_index()
        count = await reading.session.scalar(text("SELECT count(*) FROM document_vectors"))
        chunks = await reading.session.scalar(text("SELECT count(*) FROM document_chunks"))
    assert count == chunks == USERS * CHUNKS_EACH
