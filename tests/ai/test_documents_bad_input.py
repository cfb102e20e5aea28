"""Bad input at the document routes: a 4xx problem document, never a 500, and nothing
written (no document, no chunk, no job, no event).

The shared families (`tests.fixtures.bad_input`) run over the routes listed here; the
tests below them are the uploads' own: files that are not documents, files too large,
bodies of the wrong kind, another user's documents.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.fixtures.bad_input import (
    EXTRAS,
    MEGABYTE,
    NIL_UUID,
    Authorization,
    Endpoint,
    JsonBodies,
    Listing,
    Listings,
    PathIds,
    Scene,
    assert_invalid,
    stored_state,
)
from tests.fixtures.documents import encrypted, indexed, pdf
from tests.fixtures.support import Api, assert_problem

DOCUMENTS = "/api/v1/documents"
MAX_BYTES = 4096

UPLOAD = Endpoint(
    "upload",
    "POST",
    "/documents",
    "user",
    lambda s: {"title": "Returns", "content": "Unworn shoes come back within 30 days."},
    required=("title", "content"),
    text=("title", "content"),
    long=("content",),
    plain_text=(415, "unsupported_media_type"),
    bad_values=[
        ("title", ""),
        ("title", "   "),
        ("title", "x" * 201),
        ("title", "two\nlines"),
        ("title", MEGABYTE),
        ("content", ""),
        ("content", " \n\n\t "),
    ],
)
SEARCH = Endpoint(
    "search",
    "POST",
    "/documents/search",
    "user",
    lambda s: {"query": "when do refunds arrive?", "top_k": 5, "mode": "hybrid"},
    required=("query",),
    text=("query",),
    choices=("mode",),
    bad_values=[
        ("query", ""),
        ("query", "   "),
        ("query", "q" * 2001),
        ("top_k", 0),
        ("top_k", -1),
        ("top_k", 51),
        ("top_k", 10**30),
        ("top_k", 1.5),
        ("top_k", "5"),
        ("top_k", True),
        ("top_k", None),
        ("mode", "fuzzy"),
        ("mode", "SEMANTIC"),
        ("mode", None),
    ],
)
LIST = Endpoint("list", "GET", "/documents", "user")
GET = Endpoint("get", "GET", "/documents/{document_id}", "user")
DELETE = Endpoint("delete", "DELETE", "/documents/{document_id}", "user")

PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00"
NOT_DOCUMENTS = [
    pytest.param(PNG, id="png-named-txt"),
    pytest.param(b"PK\x03\x04\x14\x00\x00\x00\x08\x00", id="zip"),
    pytest.param("café au lait".encode("latin-1"), id="latin-1"),
    pytest.param(b"text with a \x00 in it", id="nul"),
    pytest.param(b"%PDF-1.4\n this is no PDF at all", id="broken-pdf"),
    pytest.param(encrypted(pdf("Secret."), user_password="hunter2"), id="locked-pdf"),
]
NO_TEXT = [
    pytest.param(b"", id="0-bytes"),
    pytest.param(b" \n\t\n ", id="blank"),
    pytest.param(b"\xef\xbb\xbf", id="byte-order-mark-only"),
    pytest.param(pdf(""), id="pdf-without-text"),
]


class TestDocumentsBadInput(JsonBodies, PathIds, Listings, Authorization):
    endpoints = (UPLOAD, SEARCH, LIST, GET, DELETE)
    listings = (Listing("/documents", "user"),)
    extras = (
        *EXTRAS,
        {"user_id": NIL_UUID},
        {"chunk_count": 3},
        {"status": "ready"},
        {"file": "notes.txt"},
    )

    async def prepare(self, scene: Scene) -> None:
        """One document of the target's; the caller's ids are filled in per test."""
        response = await scene.api.client.post(
            DOCUMENTS,
            json={"title": "Theirs", "content": "The target's own text."},
            headers=scene.target.headers,
        )
        assert response.status_code == 202, response.text
        scene.names["document_id"] = response.json()["id"]
        # Indexed before the scene is taken, so no job changes what is stored meanwhile.
        await indexed(scene.api, scene.target, response.json()["id"])


SUITE = TestDocumentsBadInput()


async def _sent(scene: Scene, headers: dict[str, str] | None = None, **request: Any) -> Any:
    sent = {**scene.caller.headers, **(headers or {})}
    response = await scene.api.client.post(DOCUMENTS, headers=sent, **request)
    documented = await scene.documented("POST", DOCUMENTS)
    assert response.status_code in documented, response.text
    return response


@pytest.mark.parametrize("data", NOT_DOCUMENTS)
async def test_a_file_that_is_no_document_is_refused_whatever_its_name(
    api: Api, data: bytes
) -> None:
    scene = await SUITE.scene(api, "user")

    response = await _sent(scene, files={"file": ("notes.txt", data, "text/plain")})

    problem = assert_problem(response, 415, "unsupported_document")
    assert "hunter2" not in response.text
    assert "PNG" not in problem["detail"]
    await scene.assert_untouched()


@pytest.mark.parametrize("data", NO_TEXT)
async def test_a_file_with_no_text_is_refused(api: Api, data: bytes) -> None:
    scene = await SUITE.scene(api, "user")

    response = await _sent(scene, files={"file": ("empty.md", data, "text/markdown")})

    assert_invalid(response, ["body", "file"])
    await scene.assert_untouched()


@pytest.mark.parametrize("settings_overrides", [{"document_max_bytes": MAX_BYTES}])
@pytest.mark.parametrize("how", ["file", "json"])
async def test_a_document_over_the_limit_is_too_large(api: Api, how: str) -> None:
    scene = await SUITE.scene(api, "user")
    text = "word " * (MAX_BYTES // 5 + 1)
    assert len(text) > MAX_BYTES

    if how == "file":
        response = await _sent(scene, files={"file": ("big.txt", text.encode(), "text/plain")})
    else:
        response = await _sent(scene, json={"title": "Big", "content": text})

    assert_problem(response, 413, "content_too_large")
    await scene.assert_untouched()


@pytest.mark.parametrize("settings_overrides", [{"document_max_bytes": MAX_BYTES}])
async def test_a_body_far_over_the_limit_is_refused_before_it_is_read(api: Api) -> None:
    scene = await SUITE.scene(api, "user")

    response = await _sent(scene, files={"file": ("big.txt", b"w" * (1024 * 1024), "text/plain")})

    assert_problem(response, 413, "content_too_large")
    await scene.assert_untouched()


async def test_the_upload_limit_is_above_the_general_body_limit(api: Api) -> None:
    scene = await SUITE.scene(api, "user")
    text = "Sentences of a long document. " * (api.settings.max_request_body_bytes // 30 + 100)
    assert api.settings.max_request_body_bytes < len(text) < api.settings.document_max_bytes

    response = await _sent(scene, files={"file": ("long.txt", text.encode(), "text/plain")})

    assert response.status_code == 202, response.text
    elsewhere = await api.client.post(
        f"{DOCUMENTS}/search", json={"query": text}, headers=scene.caller.headers
    )
    assert_problem(elsewhere, 413, "content_too_large")


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/xml", "application/x-www-form-urlencoded", ""]
)
async def test_a_body_of_another_kind_is_refused(api: Api, content_type: str) -> None:
    scene = await SUITE.scene(api, "user")

    response = await _sent(
        scene, content=b"title=Notes&content=Text", headers={"content-type": content_type}
    )

    assert_problem(response, 415, "unsupported_media_type")
    await scene.assert_untouched()


@pytest.mark.parametrize(
    ("parts", "loc"),
    [
        pytest.param(
            {"files": {"other": ("x.txt", b"Text.")}, "data": {"title": "No file"}},
            ["body", "file"],
            id="no-file",
        ),
        pytest.param({"files": {"file": (None, "just a field")}}, ["body", "file"], id="field"),
        pytest.param(
            {"files": {"file": ("a.txt", b"Text.")}, "data": {"title": "x" * 201}},
            ["body", "title"],
            id="title-too-long",
        ),
        pytest.param(
            {"files": {"file": ("a.txt", b"Text.")}, "data": {"title": "bell\x07"}},
            ["body", "title"],
            id="title-control-character",
        ),
    ],
)
async def test_a_form_without_what_it_needs_is_refused(
    api: Api, parts: dict[str, Any], loc: list[str]
) -> None:
    scene = await SUITE.scene(api, "user")

    response = await _sent(scene, **parts)

    assert_invalid(response, loc)
    await scene.assert_untouched()


@pytest.mark.parametrize(
    "files",
    [
        pytest.param([("file", ("a.txt", b"One.")), ("file", ("b.txt", b"Two."))], id="two"),
        pytest.param([("file", ("a.txt", b"One.")), ("title", ("t.txt", b"A."))], id="title"),
    ],
)
async def test_a_form_with_more_than_one_file_is_refused(api: Api, files: list[Any]) -> None:
    scene = await SUITE.scene(api, "user")

    response = await _sent(scene, files=files)

    assert_problem(response, 400)
    await scene.assert_untouched()


async def test_searching_stores_nothing(api: Api) -> None:
    scene = await SUITE.scene(api, "user")

    response = await SEARCH.send(scene, b'{"query": "shoes", "mode": "keyword"}')

    assert response.status_code == 200, response.text
    assert await stored_state(api) == scene.before
