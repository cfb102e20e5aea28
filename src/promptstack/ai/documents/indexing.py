"""Indexing a document: its text cut into chunks, the chunks embedded, the set stored.

This is the `document.index` job's work (jobs.py runs it on the jobs backbone). The
chunks are embedded in batches, each batch reported as progress in chunks, and written
in one transaction at the end, in place of whatever the document had: a rerun after a
crash or a retry after a failure leaves one complete set, never a mix of two. A
document deleted meanwhile is left deleted. Embedding runs in a worker thread, so the
process's event loop (which may be serving requests) is not held up by the model.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np

from promptstack.ai.documents.chunking import Chunk, chunk
from promptstack.ai.documents.embeddings import Embedder
from promptstack.ai.documents.repository import ChunkRow, DocumentRepository
from promptstack.core.clock import Clock
from promptstack.core.unit_of_work import UnitOfWorkFactory

DOCUMENT_INDEX = "document.index"

Progress = Callable[[int, int | None], Awaitable[None]]


async def _unheard(current: int, total: int | None = None) -> None:
    return None


class DocumentIndexer:
    def __init__(
        self,
        uow: UnitOfWorkFactory,
        embedder: Embedder,
        clock: Clock,
        *,
        chunk_tokens: int,
        overlap_tokens: int,
        batch: int,
    ) -> None:
        self.uow = uow
        self.embedder = embedder
        self.clock = clock
        self.chunk_tokens = chunk_tokens
        self.overlap_tokens = overlap_tokens
        self.batch = batch

    async def index(self, document_id: uuid.UUID, progress: Progress) -> dict[str, Any]:
        """Chunk, embed and store the document; what was stored, as the job's result."""
        async with self.uow(read_only=True) as reading:
            document = await DocumentRepository.of(reading).get(document_id)
            if document is None:
                return {"document_id": str(document_id), "deleted": True}
            user_id, text = document.user_id, document.text
        pieces = await asyncio.to_thread(self._chunks, text)
        await progress(0, len(pieces))
        vectors = []
        for start in range(0, len(pieces), self.batch):
            batch = [piece.text for piece in pieces[start : start + self.batch]]
            vectors.append(await asyncio.to_thread(self.embedder.embed, batch))
            await progress(start + len(batch), len(pieces))
        rows = self._rows(document_id, user_id, pieces, vectors)
        async with self.uow() as writing:
            documents = DocumentRepository.of(writing)
            document = await documents.for_indexing(document_id)
            if document is None:
                return {"document_id": str(document_id), "deleted": True}
            await documents.replace_chunks(document_id, rows)
            document.chunk_count = len(rows)
            document.model = self.embedder.name
            document.indexed_at = self.clock.now()
        return {
            "document_id": str(document_id),
            "chunks": len(rows),
            "model": self.embedder.name,
            "dimension": self.embedder.dimension,
        }

    async def reembed(self, *, everything: bool, advanced: Callable[[int, int], None]) -> int:
        """Index again, one after the other, the documents whose chunks another model
        made (or that have none), or with `everything` all of them; `advanced` hears how
        many are done of how many. How many there were."""
        async with self.uow(read_only=True) as reading:
            found = await DocumentRepository.of(reading).to_reembed(
                self.embedder.name, everything=everything
            )
        for done, document_id in enumerate(found, start=1):
            await self.index(document_id, _unheard)
            advanced(done, len(found))
        return len(found)

    def _chunks(self, text: str) -> list[Chunk]:
        return chunk(
            text,
            max_tokens=self.chunk_tokens,
            overlap_tokens=self.overlap_tokens,
            count=self.embedder.count_tokens,
        )

    def _rows(
        self,
        document_id: uuid.UUID,
        user_id: uuid.UUID,
        pieces: list[Chunk],
        vectors: list[np.ndarray[Any, np.dtype[np.float32]]],
    ) -> list[ChunkRow]:
        matrix = np.vstack(vectors) if vectors else np.zeros((0, self.embedder.dimension))
        stored = matrix.astype("<f4", copy=False)
        return [
            {
                "document_id": document_id,
                "user_id": user_id,
                "chunk_index": piece.index,
                "text": piece.text,
                "tokens": piece.tokens,
                "carried": piece.carried,
                "model": self.embedder.name,
                "dimension": self.embedder.dimension,
                "embedding": stored[row].tobytes(),
            }
            for row, piece in enumerate(pieces)
        ]
