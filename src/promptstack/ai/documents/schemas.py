"""Documents as the API accepts and shows them."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, ConfigDict, Field, StringConstraints

from promptstack.ai.documents.models import TITLE_MAX_LENGTH, DocumentKind, DocumentStatus
from promptstack.http.schemas import Input, Output, clean_text, one_line
from promptstack.jobs.models import JobState

Title = Annotated[
    str,
    StringConstraints(min_length=1, max_length=TITLE_MAX_LENGTH, strip_whitespace=True),
    AfterValidator(clean_text),
    AfterValidator(one_line),
]
# Line breaks and tabs belong in a document. Its size is bounded by DOCUMENT_MAX_BYTES
# (the service checks); the schema states the most that setting can be.
CONTENT_MAX_LENGTH = 1024**3
Content = Annotated[
    str, StringConstraints(min_length=1, max_length=CONTENT_MAX_LENGTH), AfterValidator(clean_text)
]
SEARCH_QUERY_MAX_LENGTH = 2000
TOP_K_MAX = 50

SearchMode = Literal["semantic", "keyword", "hybrid"]


class DocumentIn(Input):
    """A document given as text (Markdown is recognised as such); a file is sent as
    multipart/form-data instead, with a `file` part and an optional `title`."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "title": "Returns policy",
                    "content": "# Returns\n\nUnworn items can be returned within 30 days.",
                }
            ]
        }
    )

    title: Title
    content: Content


class DocumentAccepted(Output):
    """The document was stored and is being indexed: follow `job_id` at
    `GET /api/v1/jobs/{job_id}`, or the document itself (the Location header)."""

    id: uuid.UUID
    status: DocumentStatus
    job_id: uuid.UUID


class IndexingJob(Output):
    id: uuid.UUID
    state: JobState
    current: int = Field(description="Chunks embedded so far")
    total: int | None = Field(description="Chunks in all, once the text is cut")
    error: str | None


class DocumentOut(Output):
    id: uuid.UUID
    title: str
    kind: DocumentKind
    size_bytes: int
    status: DocumentStatus
    chunk_count: int = Field(description="Chunks searchable now")
    model: str | None = Field(description="The embedding model of those chunks")
    created_at: datetime
    indexed_at: datetime | None
    job: IndexingJob | None


class SearchIn(Input):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"query": "how long do I have to send something back?", "top_k": 5}]
        }
    )

    query: Annotated[
        str,
        StringConstraints(min_length=1, max_length=SEARCH_QUERY_MAX_LENGTH, strip_whitespace=True),
        AfterValidator(clean_text),
    ]
    top_k: int = Field(default=5, ge=1, le=TOP_K_MAX, strict=True)
    mode: SearchMode = Field(
        default="hybrid",
        description="semantic: by meaning (cosine of the embeddings); keyword: full text; "
        "hybrid: both, by reciprocal rank fusion",
    )


class SearchResult(Output):
    document_id: uuid.UUID
    title: str
    chunk_index: int
    text: str
    score: float = Field(
        description="Higher is closer. semantic: the cosine; keyword: the database's text "
        "rank; hybrid: the fused reciprocal rank. Compare scores within one answer only."
    )


class SearchOut(Output):
    results: list[SearchResult]
