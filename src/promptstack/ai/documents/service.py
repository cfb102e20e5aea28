"""Documents: uploading one, reading and deleting one's own, searching them.

An upload is read at once (parsing.py), so a client learns in its answer that a file is
not a document it can use; the text is stored with a `document.index` job in one
transaction, and the job (indexing.py) cuts, embeds and stores the chunks. A document's
status is its job's state, read with it. Search ranks a user's own chunks by meaning
(exact cosine over the vectors, vectors.py), by full text (the database's index), or by
both fused (search.py).
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import PurePosixPath, PureWindowsPath

from promptstack.accounts.models import UserSnapshot
from promptstack.ai.documents.embeddings import Embedder, Vectors
from promptstack.ai.documents.indexing import DOCUMENT_INDEX
from promptstack.ai.documents.models import (
    PGVECTOR_DIMENSION,
    TITLE_MAX_LENGTH,
    Document,
    DocumentKind,
    DocumentStatus,
)
from promptstack.ai.documents.parsing import NoText, Parsed, UnsupportedDocument, parse, read_text
from promptstack.ai.documents.repository import DocumentRepository, FoundChunk, ShownDocument
from promptstack.ai.documents.search import fuse
from promptstack.ai.documents.vectors import ExactVectors
from promptstack.ai.llm.retrieval import Passage
from promptstack.core.clock import Clock
from promptstack.core.errors import AppError, NotFound, ValidationFailed
from promptstack.core.ids import IdSource
from promptstack.core.pagination import Page, PageRequest
from promptstack.core.unit_of_work import UnitOfWorkFactory
from promptstack.jobs.models import JobState
from promptstack.jobs.service import JobService

_WORD = re.compile(r"\w+")
_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f]+")
# Full-text searches take this many words of a query at most.
MAX_TERMS = 32
_STATUS = {
    JobState.PENDING: DocumentStatus.PENDING,
    JobState.PROGRESS: DocumentStatus.INDEXING,
    JobState.SUCCESS: DocumentStatus.READY,
    JobState.FAILURE: DocumentStatus.FAILED,
}


class UnsupportedDocumentType(AppError):
    status = 415
    code = "unsupported_document"
    title = "This is not a document the service can read"


class UnsupportedMediaType(AppError):
    status = 415
    code = "unsupported_media_type"
    title = "The body is in a format this endpoint does not take"


class DocumentTooLarge(AppError):
    status = 413
    code = "content_too_large"
    title = "Content too large"


@dataclass(frozen=True, slots=True)
class Uploaded:
    id: uuid.UUID
    status: DocumentStatus
    job_id: uuid.UUID


@dataclass(frozen=True, slots=True)
class JobView:
    id: uuid.UUID
    state: JobState
    current: int
    total: int | None
    error: str | None


@dataclass(frozen=True, slots=True)
class DocumentView:
    id: uuid.UUID
    title: str
    kind: DocumentKind
    size_bytes: int
    status: DocumentStatus
    chunk_count: int
    model: str | None
    created_at: datetime
    indexed_at: datetime | None
    job: JobView | None


class Documents:
    def __init__(
        self,
        uow: UnitOfWorkFactory,
        jobs: JobService,
        embedder: Embedder,
        vectors: ExactVectors,
        clock: Clock,
        ids: IdSource,
        *,
        max_bytes: int,
        pgvector: bool = True,
    ) -> None:
        self.uow = uow
        self.jobs = jobs
        self.embedder = embedder
        self.vectors = vectors
        self.clock = clock
        self.ids = ids
        self.max_bytes = max_bytes
        # Whether to search through pgvector's index where the database has one; known
        # after the first semantic search.
        self._pgvector: bool | None = (
            None if pgvector and embedder.dimension == PGVECTOR_DIMENSION else False
        )

    async def upload_file(
        self, actor: UserSnapshot, data: bytes, *, filename: str | None, title: str | None
    ) -> Uploaded:
        """Store a file's text and start indexing it. Its type is read from its bytes."""
        self._within_limit(len(data))
        try:
            parsed = await asyncio.to_thread(parse, data)
        except UnsupportedDocument as exc:
            raise UnsupportedDocumentType(
                f"Send a PDF, or text in UTF-8 (plain or Markdown): {exc}."
            ) from None
        except NoText:
            raise ValidationFailed("the file holds no text", loc=("body", "file")) from None
        name = title or _title_from_filename(filename) or _title_from_text(parsed.text)
        return await self._store(actor, parsed, name, len(data))

    async def upload_text(self, actor: UserSnapshot, title: str, content: str) -> Uploaded:
        """Store text given as text, and start indexing it."""
        size = len(content.encode())
        self._within_limit(size)
        try:
            parsed = read_text(content)
        except NoText:
            raise ValidationFailed("holds no text", loc=("body", "content")) from None
        return await self._store(actor, parsed, title, size)

    def _within_limit(self, size: int) -> None:
        if size > self.max_bytes:
            raise DocumentTooLarge(f"Documents are limited to {self.max_bytes} bytes.")

    async def _store(self, actor: UserSnapshot, parsed: Parsed, title: str, size: int) -> Uploaded:
        document_id = self.ids.new()
        async with self.uow() as uow:
            job = await self.jobs.submit(
                uow, actor.id, DOCUMENT_INDEX, {"document_id": str(document_id)}
            )
            documents = DocumentRepository.of(uow)
            await documents.flush()  # the job's row first: the document refers to it
            documents.add(
                Document(
                    id=document_id,
                    user_id=actor.id,
                    title=title,
                    kind=DocumentKind(parsed.kind),
                    size_bytes=size,
                    text=parsed.text,
                    job_id=job.id,
                    chunk_count=0,
                    model=None,
                    created_at=self.clock.now(),
                    indexed_at=None,
                )
            )
        return Uploaded(document_id, DocumentStatus.PENDING, job.id)

    async def mine(self, actor: UserSnapshot, page: PageRequest) -> Page[DocumentView]:
        async with self.uow(read_only=True) as uow:
            found = await DocumentRepository.of(uow).listing(actor.id, page)
        return Page([_view(row) for row in found.items], found.next_cursor)

    async def get(self, actor: UserSnapshot, document_id: uuid.UUID) -> DocumentView:
        """One of the caller's documents; anyone else's does not exist for them."""
        async with self.uow(read_only=True) as uow:
            row = await DocumentRepository.of(uow).shown(actor.id, document_id)
        if row is None:
            raise NotFound("No such document.")
        return _view(row)

    async def delete(self, actor: UserSnapshot, document_id: uuid.UUID) -> None:
        """Delete one of the caller's documents, its chunks and vectors with it."""
        async with self.uow() as uow:
            removed = await DocumentRepository.of(uow).remove(actor.id, document_id)
        if not removed:
            raise NotFound("No such document.")

    async def search(
        self, actor: UserSnapshot, query: str, *, top_k: int, mode: str
    ) -> list[Passage]:
        """The caller's chunks that best answer `query`, best first."""
        # Fusion draws on deeper lists than it returns: an item second in both beats one
        # first in only one, which it cannot see if each list stops at top_k.
        depth = top_k if mode != "hybrid" else max(3 * top_k, 30)
        rankings: list[list[tuple[int, float]]] = []
        if mode in ("semantic", "hybrid"):
            rankings.append(await self._semantic(actor.id, query, depth))
        if mode in ("keyword", "hybrid"):
            rankings.append(await self._keyword(actor.id, query, depth))
        if mode == "hybrid":
            ranked = fuse([[chunk for chunk, _ in ranking] for ranking in rankings], top_k)
        else:
            ranked = rankings[0][:top_k]
        async with self.uow(read_only=True) as uow:
            chunks = await DocumentRepository.of(uow).chunks(actor.id, [i for i, _ in ranked])
        # A chunk deleted since it was ranked is left out.
        return [_passage(chunks[i], score) for i, score in ranked if i in chunks]

    @property
    def model(self) -> str:
        """The embedding model's name, as `/v1/embeddings` takes it."""
        return self.embedder.name

    @property
    def dimension(self) -> int:
        return self.embedder.dimension

    async def embed(self, texts: Sequence[str]) -> tuple[Vectors, int]:
        """The embedding of each text, and the tokens they held. A text longer than the
        model reads is refused, not cut: the vector would silently stand for less."""
        counts = await asyncio.to_thread(lambda: [self.embedder.count_tokens(t) for t in texts])
        for index, count in enumerate(counts):
            if count > self.embedder.max_input_tokens:
                raise ValidationFailed(
                    f"this text has {count} tokens; {self.embedder.name} reads at most "
                    f"{self.embedder.max_input_tokens}",
                    loc=("body", "input", index),
                )
        vectors = await asyncio.to_thread(self.embedder.embed, list(texts))
        return vectors, sum(counts)

    async def passages(self, user: UserSnapshot, query: str, top_k: int) -> list[Passage]:
        """What an answer from documents is given (`ai.llm.retrieval.Retriever`): the
        hybrid search's best chunks."""
        return await self.search(user, query, top_k=top_k, mode="hybrid")

    async def _semantic(
        self, user_id: uuid.UUID, query: str, depth: int
    ) -> list[tuple[int, float]]:
        vector = (await asyncio.to_thread(self.embedder.embed, [query]))[0]
        if self._pgvector is not False:
            async with self.uow(read_only=True) as uow:
                documents = DocumentRepository.of(uow)
                if self._pgvector is None:
                    self._pgvector = await documents.has_vector_index()
                if self._pgvector:
                    return await documents.nearest(user_id, self.embedder.name, vector, depth)
        return await self.vectors.nearest(user_id, self.embedder.name, vector, depth)

    async def _keyword(self, user_id: uuid.UUID, query: str, depth: int) -> list[tuple[int, float]]:
        terms = list(dict.fromkeys(word.lower() for word in _WORD.findall(query)))[:MAX_TERMS]
        async with self.uow(read_only=True) as uow:
            return await DocumentRepository.of(uow).keyword(user_id, terms, depth)


def _view(row: ShownDocument) -> DocumentView:
    job = None
    status = DocumentStatus.READY if row.indexed_at is not None else DocumentStatus.PENDING
    if row.job_id is not None and row.job_state is not None:
        job = JobView(row.job_id, row.job_state, row.job_current, row.job_total, row.job_error)
        status = _STATUS[row.job_state]
    return DocumentView(
        id=row.id,
        title=row.title,
        kind=row.kind,
        size_bytes=row.size_bytes,
        status=status,
        chunk_count=row.chunk_count,
        model=row.model,
        created_at=row.created_at,
        indexed_at=row.indexed_at,
        job=job,
    )


def _passage(chunk: FoundChunk, score: float) -> Passage:
    return Passage(chunk.document_id, chunk.title, chunk.chunk_index, chunk.text, score)


def _title_from_filename(filename: str | None) -> str | None:
    """A file's name without its folders and extension, printable and short enough."""
    if not filename:
        return None
    name = PureWindowsPath(PurePosixPath(filename).name).name
    stem = _UNPRINTABLE.sub(" ", name.rsplit(".", 1)[0] if "." in name[1:] else name).strip()
    return stem[:TITLE_MAX_LENGTH].strip() or None


def _title_from_text(text: str) -> str:
    first = text.split("\n", 1)[0].lstrip("#").strip()
    return _UNPRINTABLE.sub(" ", first)[:TITLE_MAX_LENGTH].strip() or "Untitled"
