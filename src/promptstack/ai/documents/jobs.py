"""The `document.index` job: indexing.py's work, run on the jobs backbone."""

from __future__ import annotations

import uuid

from promptstack.ai.documents.indexing import DOCUMENT_INDEX, DocumentIndexer
from promptstack.jobs.leases import FatalJobError
from promptstack.jobs.registry import JobContext, JobKinds, JobResult


def register(kinds: JobKinds, indexer: DocumentIndexer) -> None:
    async def index_document(job: JobContext) -> JobResult:
        try:
            document_id = uuid.UUID(str(job.params["document_id"]))
        except (KeyError, ValueError) as exc:
            raise FatalJobError("The job names no valid document.") from exc
        return await indexer.index(document_id, job.progress)

    kinds.add(DOCUMENT_INDEX, index_document)
