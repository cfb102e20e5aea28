"""Exact vector search: every one of a user's vectors scored against the query.

Reading a user's vectors from the database for each query would cost far more than
scoring them (150 MB at 100,000 chunks), so each process keeps the sets it searched, as
one float32 matrix per user and model, least recently used first out when the budget
(DOCUMENT_VECTOR_CACHE_MB) is spent. A held set is never trusted blindly: each search
first asks the database how many vectors the user has and the highest chunk id among
them. Chunk ids are never reused, so any insert, deletion or re-indexing changes that
pair; a set that only grew is topped up with the new rows, any other change reloads it.
Every process, API or worker, sees the same answers.
"""

from __future__ import annotations

import asyncio
import uuid
import weakref
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from promptstack.ai.documents.repository import DocumentRepository
from promptstack.ai.documents.search import nearest
from promptstack.core.unit_of_work import UnitOfWorkFactory

Vectors = npt.NDArray[np.float32]
# Above this many rows a search is scored in a worker thread, off the event loop
# (numpy releases the GIL); below it the hand-off would cost more than the work.
THREAD_ROWS = 20_000


@dataclass(frozen=True, slots=True)
class _Held:
    ids: npt.NDArray[np.int64]
    matrix: Vectors

    @property
    def signature(self) -> tuple[int, int]:
        return len(self.ids), int(self.ids[-1]) if len(self.ids) else 0

    @property
    def nbytes(self) -> int:
        return int(self.matrix.nbytes + self.ids.nbytes)


def _matrix(blobs: list[bytes], dimension: int) -> Vectors:
    if not blobs:
        return np.zeros((0, dimension), dtype=np.float32)
    return np.frombuffer(b"".join(blobs), dtype="<f4").reshape(len(blobs), dimension)


class ExactVectors:
    def __init__(self, uow: UnitOfWorkFactory, *, max_bytes: int) -> None:
        self.uow = uow
        self.max_bytes = max_bytes
        self._held: OrderedDict[tuple[uuid.UUID, str], _Held] = OrderedDict()
        self._loading: weakref.WeakValueDictionary[tuple[uuid.UUID, str], asyncio.Lock] = (
            weakref.WeakValueDictionary()
        )

    async def nearest(
        self, user_id: uuid.UUID, model: str, query: Vectors, top_k: int
    ) -> list[tuple[int, float]]:
        """The user's `top_k` chunks of `model` closest to `query`, as (chunk id, cosine)."""
        held = await self._current(user_id, model, dimension=query.shape[0])
        if len(held.ids) >= THREAD_ROWS:
            found = await asyncio.to_thread(nearest, held.matrix, query, top_k)
        else:
            found = nearest(held.matrix, query, top_k)
        return [(int(held.ids[row]), score) for row, score in found]

    async def _current(self, user_id: uuid.UUID, model: str, *, dimension: int) -> _Held:
        key = (user_id, model)
        lock = self._loading.get(key)
        if lock is None:
            lock = self._loading[key] = asyncio.Lock()
        async with lock, self.uow(read_only=True) as reading:
            documents = DocumentRepository.of(reading)
            signature = await documents.vector_signature(user_id, model)
            held = self._held.get(key)
            if held is not None and held.signature == signature:
                self._held.move_to_end(key)
                return held
            held = await self._load(documents, user_id, model, dimension, held, signature)
        self._keep(key, held)
        return held

    async def _load(
        self,
        documents: DocumentRepository,
        user_id: uuid.UUID,
        model: str,
        dimension: int,
        held: _Held | None,
        signature: tuple[int, int],
    ) -> _Held:
        if held is not None:
            # Only new rows since? Then the old ones are all still there.
            added = await documents.vectors(user_id, model, after=held.signature[1])
            if held.signature[0] + len(added) == signature[0]:
                ids = np.array([row[0] for row in added], dtype=np.int64)
                matrix = _matrix([row[1] for row in added], dimension)
                return _Held(np.concatenate([held.ids, ids]), np.vstack([held.matrix, matrix]))
        rows = await documents.vectors(user_id, model)
        return _Held(
            np.array([row[0] for row in rows], dtype=np.int64),
            _matrix([row[1] for row in rows], dimension),
        )

    def _keep(self, key: tuple[uuid.UUID, str], held: _Held) -> None:
        self._held.pop(key, None)
        if held.nbytes > self.max_bytes:
            return
        self._held[key] = held
        total = sum(entry.nbytes for entry in self._held.values())
        while total > self.max_bytes:
            _, evicted = self._held.popitem(last=False)
            total -= evicted.nbytes
