"""Exact vector search: every one of a user's vectors scored against the query.

Reading a user's vectors from the database for each query would cost far more than
scoring them (150 MB at 100,000 chunks), so each process keeps the sets it searched, as
one float32 matrix per user and model, least recently used first out when the budget
(DOCUMENT_VECTOR_CACHE_MB) is spent. A held set is never trusted blindly: each search
first reads the set's row (`document_vector_sets`, one row by its key), whose version
goes up with every transaction that changes the set and whose removals count goes up
with every one that deletes from it. Unchanged, the held matrix is current; grown
without removals, it is topped up with the chunks of the versions after the newest it
holds (writers of a set take its row lock, so versions follow the order of commits);
otherwise it is read again. Every process, API or worker, sees what is committed.
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
    seen: tuple[int, int]  # the set's (version, removals), read before its rows were
    newest: int  # the highest version among the rows held

    @property
    def nbytes(self) -> int:
        return int(self.matrix.nbytes + self.ids.nbytes)


def _arrays(
    rows: list[tuple[int, int, bytes]], dimension: int
) -> tuple[npt.NDArray[np.int64], Vectors]:
    ids = np.array([row[0] for row in rows], dtype=np.int64)
    if not rows:
        return ids, np.zeros((0, dimension), dtype=np.float32)
    blobs = b"".join(row[2] for row in rows)
    return ids, np.frombuffer(blobs, dtype="<f4").reshape(len(rows), dimension)


def _newest(rows: list[tuple[int, int, bytes]], floor: int) -> int:
    return max((row[1] for row in rows), default=floor)


def _joined(held: _Held, added: _Held) -> _Held:
    return _Held(
        np.concatenate([held.ids, added.ids]),
        np.vstack([held.matrix, added.matrix]),
        added.seen,
        added.newest,
    )


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
        async with self.uow(read_only=True) as reading:
            held, _ = await self._checked(DocumentRepository.of(reading), key)
        if held is not None:
            return held
        # One load of a set at a time; searches that waited for it find it current.
        lock = self._loading.get(key)
        if lock is None:
            lock = self._loading[key] = asyncio.Lock()
        async with lock, self.uow(read_only=True) as reading:
            documents = DocumentRepository.of(reading)
            current, seen = await self._checked(documents, key)
            if current is not None:
                return current
            held = self._held.get(key)
            if held is not None and held.seen[1] == seen[1]:
                rows = await documents.vectors(user_id, model, since=held.newest)
                added = _Held(*_arrays(rows, dimension), seen, _newest(rows, held.newest))
                held = _joined(held, added)
            else:
                rows = await documents.vectors(user_id, model)
                held = _Held(*_arrays(rows, dimension), seen, _newest(rows, 0))
        self._keep(key, held)
        return held

    async def _checked(
        self, documents: DocumentRepository, key: tuple[uuid.UUID, str]
    ) -> tuple[_Held | None, tuple[int, int]]:
        """The held set if it is current, and the set's (version, removals) as read."""
        seen = await documents.vector_set(*key)
        held = self._held.get(key)
        if held is not None and held.seen == seen:
            self._held.move_to_end(key)
            return held, seen
        return None, seen

    def _keep(self, key: tuple[uuid.UUID, str], held: _Held) -> None:
        self._held.pop(key, None)
        if held.nbytes > self.max_bytes:
            return
        self._held[key] = held
        total = sum(entry.nbytes for entry in self._held.values())
        while total > self.max_bytes:
            _, evicted = self._held.popitem(last=False)
            total -= evicted.nbytes
