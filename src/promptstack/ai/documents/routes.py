"""The document endpoints under /api/v1/documents: uploads, reading, deleting, search."""

from __future__ import annotations

import json
import uuid
from typing import Any

from fastapi import APIRouter, HTTPException, Request, Response
from fastapi.exceptions import RequestValidationError
from pydantic import TypeAdapter, ValidationError
from starlette.datastructures import UploadFile

from promptstack.ai.documents.dependencies import DocumentsDep
from promptstack.ai.documents.schemas import (
    DocumentAccepted,
    DocumentIn,
    DocumentOut,
    SearchIn,
    SearchOut,
    SearchResult,
    Title,
)
from promptstack.ai.documents.service import (
    DocumentTooLarge,
    DocumentView,
    UnsupportedDocumentType,
    UnsupportedMediaType,
    Uploaded,
)
from promptstack.ai.llm.dependencies import AiUser
from promptstack.ai.llm.service import FeatureDisabled
from promptstack.core.errors import NotFound, Unauthorized, ValidationFailed
from promptstack.core.pagination import Page
from promptstack.http import API_V1
from promptstack.http.openapi import problem_responses
from promptstack.http.pagination import PageDep
from promptstack.http.schemas import PageOut

UPLOAD_PATH = f"{API_V1}/documents"
# Room for the multipart envelope around a file of DOCUMENT_MAX_BYTES.
MULTIPART_SLACK = 64 * 1024

_TITLE: TypeAdapter[str] = TypeAdapter(Title)
_UPLOAD_BODY = {
    "required": True,
    "content": {
        "application/json": {"schema": DocumentIn.model_json_schema()},
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "required": ["file"],
                "properties": {
                    "file": {
                        "type": "string",
                        "format": "binary",
                        "description": "A PDF, or a text or Markdown file in UTF-8",
                    },
                    "title": {
                        "type": "string",
                        "maxLength": 200,
                        "description": "By default the file's name",
                    },
                },
            }
        },
    },
}

router = APIRouter(
    prefix=UPLOAD_PATH,
    tags=["documents"],
    responses=problem_responses(Unauthorized, FeatureDisabled),
)


@router.post(
    "",
    status_code=202,
    response_model=DocumentAccepted,
    responses=problem_responses(
        ValidationFailed, UnsupportedDocumentType, UnsupportedMediaType, DocumentTooLarge
    ),
    openapi_extra={"requestBody": _UPLOAD_BODY},
)
async def upload_document(
    request: Request, user: AiUser, documents: DocumentsDep, response: Response
) -> Uploaded:
    """Upload a document to search and to answer from: JSON `{title, content}`, or a
    file as multipart/form-data (`file`, and `title` if not the file's name). Its type
    is read from its bytes, whatever its name says: PDF (one locked with an empty
    password opens), or UTF-8 text, plain or Markdown. It is indexed in the background:
    follow the job, or the document (the Location header), until it is `ready`."""
    media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media == "application/json":
        given = _validated_json(await request.body())
        uploaded = await documents.upload_text(user, given.title, given.content)
    elif media == "multipart/form-data":
        async with request.form(max_files=1, max_fields=1) as form:
            file, title = form.get("file"), form.get("title")
            if not isinstance(file, UploadFile):
                raise _invalid(("body", "file"), "a file is required", "missing")
            data = await file.read()
            name = _validated_title(title)
            uploaded = await documents.upload_file(user, data, filename=file.filename, title=name)
    else:
        raise UnsupportedMediaType("Send application/json or multipart/form-data.")
    response.headers["Location"] = f"{UPLOAD_PATH}/{uploaded.id}"
    return uploaded


@router.get("", response_model=PageOut[DocumentOut])
async def list_documents(
    user: AiUser, documents: DocumentsDep, page: PageDep
) -> Page[DocumentView]:
    """Your documents, newest first, with their indexing status."""
    return await documents.mine(user, page)


@router.post("/search", response_model=SearchOut)
async def search_documents(body: SearchIn, user: AiUser, documents: DocumentsDep) -> SearchOut:
    """Your chunks that best answer `query`, best first: by meaning (`semantic`), by
    words (`keyword`), or both fused (`hybrid`, the default). Only documents whose
    indexing has finished are found."""
    hits = await documents.search(user, body.query, top_k=body.top_k, mode=body.mode)
    return SearchOut(results=[SearchResult.model_validate(hit) for hit in hits])


@router.get("/{document_id}", response_model=DocumentOut, responses=problem_responses(NotFound))
async def get_document(
    document_id: uuid.UUID, user: AiUser, documents: DocumentsDep
) -> DocumentView:
    """One of your documents: its status, its chunks, and its indexing job's progress."""
    return await documents.get(user, document_id)


@router.delete("/{document_id}", status_code=204, responses=problem_responses(NotFound))
async def delete_document(document_id: uuid.UUID, user: AiUser, documents: DocumentsDep) -> None:
    """Delete one of your documents, with its chunks and their vectors."""
    await documents.delete(user, document_id)


def _validated_json(body: bytes) -> DocumentIn:
    """The body as FastAPI would read a declared one: malformed JSON is a 422, a body
    that cannot be decoded at all (not UTF-8, nested too deep) a 400."""
    try:
        given = json.loads(body)
    except json.JSONDecodeError as exc:
        raise _invalid(("body", exc.pos), "JSON decode error", "json_invalid") from None
    except (UnicodeDecodeError, RecursionError, ValueError):
        raise HTTPException(400, "There was an error parsing the body") from None
    try:
        return DocumentIn.model_validate(given)
    except ValidationError as exc:
        raise RequestValidationError(
            [{**error, "loc": ("body", *error["loc"])} for error in exc.errors(include_url=False)]
        ) from None


def _validated_title(title: object) -> str | None:
    if title is None:
        return None
    if not isinstance(title, str):
        raise _invalid(("body", "title"), "must be text, not a file", "string_type")
    try:
        return _TITLE.validate_python(title)
    except ValidationError as exc:
        raise RequestValidationError(
            [{**error, "loc": ("body", "title")} for error in exc.errors(include_url=False)]
        ) from None


def _invalid(loc: tuple[str | int, ...], message: str, kind: str) -> RequestValidationError:
    error: dict[str, Any] = {"loc": loc, "msg": message, "type": kind}
    return RequestValidationError([error])
