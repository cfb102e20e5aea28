"""Documents end to end through the API: uploads of text, Markdown and PDF, the indexing
job followed to the end, reading, deleting, and search by meaning, by words and both,
each user seeing only their own. On SQLite, on PostgreSQL (exact vector search), and on
PostgreSQL with pgvector (its HNSW index, and a test embedder of the dimension it
serves)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import func, select, text
from typer.testing import CliRunner

from promptstack.ai.documents.embeddings import MiniLM
from promptstack.ai.documents.models import PGVECTOR_DIMENSION, DocumentChunk
from promptstack.bootstrap import Container, bootstrap
from promptstack.cli import app
from promptstack.core.clock import FrozenClock
from promptstack.core.settings import Settings
from tests.conftest import empty_postgres
from tests.fixtures.documents import DOCUMENTS, WordHashEmbedder, indexed, pdf
from tests.fixtures.support import Account, Api, assert_problem

SEARCH = f"{DOCUMENTS}/search"


@pytest.fixture(
    params=[
        "sqlite",
        pytest.param("postgres", marks=pytest.mark.postgres),
        pytest.param("pgvector", marks=pytest.mark.postgres),
    ]
)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def database_url(database_url: str, backend: str, request: pytest.FixtureRequest) -> str:
    if backend != "pgvector":
        return database_url
    url: str = request.getfixturevalue("pgvector_url")
    asyncio.run(empty_postgres(url))
    return url


@pytest.fixture
async def container(
    settings: Settings, clock: FrozenClock, backend: str
) -> AsyncIterator[Container]:
    embedder = WordHashEmbedder(PGVECTOR_DIMENSION if backend == "pgvector" else 256)
    built = bootstrap(settings, clock=clock, embedder=embedder)
    yield built
    await built.aclose()


RETURNS = (
    "# Returns\n\nUnworn shoes can be returned within thirty days of delivery.\n\n"
    "## Refunds\n\nRefunds reach the original card within five working days."
)
SHIPPING = "Parcels leave the warehouse every weekday at noon, by courier."


async def upload(api: Api, account: Account, title: str, content: str) -> dict[str, Any]:
    response = await api.client.post(
        DOCUMENTS, json={"title": title, "content": content}, headers=account.headers
    )
    assert response.status_code == 202, response.text
    body: dict[str, Any] = response.json()
    assert set(body) == {"id", "status", "job_id"}
    assert body["status"] == "pending"
    assert response.headers["location"] == f"{DOCUMENTS}/{body['id']}"
    return body


async def search(api: Api, account: Account, query: str, **options: Any) -> list[dict[str, Any]]:
    response = await api.client.post(
        SEARCH, json={"query": query, **options}, headers=account.headers
    )
    assert response.status_code == 200, response.text
    results: list[dict[str, Any]] = response.json()["results"]
    scores = [result["score"] for result in results]
    assert scores == sorted(scores, reverse=True)
    return results


async def chunk_rows(api: Api, document_id: str) -> int:
    async with api.container.uow(read_only=True) as uow:
        query = select(func.count()).where(DocumentChunk.document_id == uuid.UUID(document_id))
        return int(await uow.session.scalar(query) or 0)


async def test_a_text_upload_is_indexed_into_chunks_and_found(api: Api) -> None:
    account = await api.user()
    accepted = await upload(api, account, "Returns policy", RETURNS)

    document = await indexed(api, account, accepted["id"])

    assert document["status"] == "ready"
    assert document["kind"] == "markdown"
    assert document["title"] == "Returns policy"
    assert document["size_bytes"] == len(RETURNS.encode())
    assert document["model"] == api.container.documents.service.model
    assert document["chunk_count"] >= 1
    assert document["chunk_count"] == await chunk_rows(api, accepted["id"])
    job = document["job"]
    assert job["id"] == accepted["job_id"]
    assert job["state"] == "success"
    assert job["current"] == job["total"] == document["chunk_count"]
    followed = await api.client.get(f"/api/v1/jobs/{accepted['job_id']}", headers=account.headers)
    assert followed.json()["result"]["chunks"] == document["chunk_count"]

    results = await search(api, account, "how do refunds reach my card?", mode="semantic")
    assert results[0]["document_id"] == accepted["id"]
    assert "card" in results[0]["text"]
    assert set(results[0]) == {"document_id", "title", "chunk_index", "text", "score"}


@pytest.mark.parametrize(
    "settings_overrides", [{"document_chunk_tokens": 24, "document_chunk_overlap_tokens": 6}]
)
async def test_progress_counts_chunks_and_every_chunk_is_stored_once(api: Api) -> None:
    account = await api.user()
    paragraphs = "\n\n".join(
        f"Paragraph {n} speaks of topic {n} at some length." for n in range(40)
    )
    accepted = await upload(api, account, "Long", paragraphs)

    document = await indexed(api, account, accepted["id"])

    assert document["chunk_count"] > 5
    assert document["job"]["total"] == document["chunk_count"]
    async with api.container.uow(read_only=True) as uow:
        indexes = (
            await uow.session.scalars(
                select(DocumentChunk.chunk_index)
                .where(DocumentChunk.document_id == uuid.UUID(accepted["id"]))
                .order_by(DocumentChunk.chunk_index)
            )
        ).all()
    assert list(indexes) == list(range(document["chunk_count"]))


async def test_indexing_twice_leaves_one_set_of_chunks(api: Api) -> None:
    account = await api.user()
    accepted = await upload(api, account, "Returns", RETURNS)
    first = await indexed(api, account, accepted["id"])
    async with api.container.uow(read_only=True) as uow:
        before = set((await uow.session.scalars(select(DocumentChunk.id))).all())

    # The job's work again, as a rerun after a crash would do it.
    heard: list[tuple[int, int | None]] = []

    async def progress(current: int, total: int | None = None) -> None:
        heard.append((current, total))

    await api.container.documents.indexer.index(uuid.UUID(accepted["id"]), progress)

    assert heard[-1] == (first["chunk_count"], first["chunk_count"])
    assert await chunk_rows(api, accepted["id"]) == first["chunk_count"]
    async with api.container.uow(read_only=True) as uow:
        after = set((await uow.session.scalars(select(DocumentChunk.id))).all())
    assert after.isdisjoint(before)  # replaced, not added to
    results = await search(api, account, "refunds", mode="keyword")
    assert len({(r["document_id"], r["chunk_index"]) for r in results}) == len(results)


async def test_files_are_uploaded_as_multipart_and_read_by_their_bytes(api: Api) -> None:
    account = await api.user()
    markdown = await api.client.post(
        DOCUMENTS,
        files={"file": ("guide.md", RETURNS.encode(), "application/octet-stream")},
        headers=account.headers,
    )
    assert markdown.status_code == 202, markdown.text
    paper = await api.client.post(
        DOCUMENTS,
        files={"file": ("notes.txt", pdf("Outboxes relay events after commit."), "text/plain")},
        data={"title": "Relay notes"},
        headers=account.headers,
    )
    assert paper.status_code == 202, paper.text

    guide = await indexed(api, account, markdown.json()["id"])
    notes = await indexed(api, account, paper.json()["id"])

    assert (guide["kind"], guide["title"], guide["status"]) == ("markdown", "guide", "ready")
    assert (notes["kind"], notes["title"], notes["status"]) == ("pdf", "Relay notes", "ready")
    results = await search(api, account, "outboxes relay", mode="keyword")
    assert [r["document_id"] for r in results] == [paper.json()["id"]]


async def test_the_list_pages_through_ones_own_documents_newest_first(api: Api) -> None:
    owner, other = await api.user(), await api.user()
    ids = [(await upload(api, owner, f"Doc {n}", f"Text number {n}."))["id"] for n in range(5)]
    await upload(api, other, "Not yours", "Someone else's text.")

    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = await api.client.get(DOCUMENTS, params=params, headers=owner.headers)
        assert page.status_code == 200, page.text
        seen += [item["id"] for item in page.json()["items"]]
        cursor = page.json()["next_cursor"]
        if cursor is None:
            break

    assert seen == list(reversed(ids))


async def test_another_users_document_does_not_exist_for_them(api: Api) -> None:
    owner, other = await api.user(), await api.user()
    accepted = await upload(api, owner, "Returns", RETURNS)
    await indexed(api, owner, accepted["id"])

    for method in ("GET", "DELETE"):
        response = await api.client.request(
            method, f"{DOCUMENTS}/{accepted['id']}", headers=other.headers
        )
        assert_problem(response, 404, "not_found")
    for mode in ("semantic", "keyword", "hybrid"):
        assert await search(api, other, "refunds card returned", mode=mode) == []
    assert await chunk_rows(api, accepted["id"]) > 0
    still = await api.client.get(f"{DOCUMENTS}/{accepted['id']}", headers=owner.headers)
    assert still.status_code == 200


async def test_two_users_searching_the_same_words_each_find_only_their_own(api: Api) -> None:
    ada, bob = await api.user(), await api.user()
    mine = await upload(api, ada, "Ada's", RETURNS)
    theirs = await upload(api, bob, "Bob's", RETURNS + "\n\n" + SHIPPING)
    await indexed(api, ada, mine["id"])
    await indexed(api, bob, theirs["id"])

    for mode in ("semantic", "keyword", "hybrid"):
        for account, own in ((ada, mine["id"]), (bob, theirs["id"])):
            results = await search(api, account, "refunds card returned shoes", mode=mode, top_k=50)
            assert results, mode
            assert {r["document_id"] for r in results} == {own}, mode


async def test_deleting_a_document_removes_its_chunks_from_every_search(api: Api) -> None:
    account = await api.user()
    doomed = await upload(api, account, "Returns", RETURNS)
    kept = await upload(api, account, "Shipping", SHIPPING)
    await indexed(api, account, doomed["id"])
    await indexed(api, account, kept["id"])
    assert await search(api, account, "refunds", mode="keyword")
    # Searched once, so its vectors are held in memory too.
    assert await search(api, account, "refunds card", mode="semantic")

    response = await api.client.delete(f"{DOCUMENTS}/{doomed['id']}", headers=account.headers)

    assert response.status_code == 204
    assert await chunk_rows(api, doomed["id"]) == 0
    gone = await api.client.get(f"{DOCUMENTS}/{doomed['id']}", headers=account.headers)
    assert_problem(gone, 404)
    for mode in ("semantic", "keyword", "hybrid"):
        results = await search(api, account, "refunds card returned", mode=mode, top_k=50)
        assert doomed["id"] not in {r["document_id"] for r in results}, mode
    assert await search(api, account, "courier weekday parcels", mode="keyword")
    again = await api.client.delete(f"{DOCUMENTS}/{doomed['id']}", headers=account.headers)
    assert_problem(again, 404)


@pytest.mark.adapter_only
async def test_the_full_text_index_follows_deletions(api: Api) -> None:
    """On SQLite the FTS5 table is kept by triggers; nothing of a deleted chunk stays
    (PostgreSQL's index is a column of the row itself)."""
    account = await api.user()
    accepted = await upload(api, account, "Returns", RETURNS)
    await indexed(api, account, accepted["id"])
    await api.client.delete(f"{DOCUMENTS}/{accepted['id']}", headers=account.headers)

    async with api.container.uow(read_only=True) as uow:
        left = await uow.session.scalar(
            text(
                "SELECT count(*) FROM document_chunks_fts WHERE document_chunks_fts MATCH 'refunds'"
            )
        )
    assert left == 0


async def test_hybrid_search_ranks_a_chunk_found_both_ways_first(api: Api) -> None:
    account = await api.user()
    both = await upload(api, account, "Both", "Refunds reach the original card quickly.")
    words = await upload(api, account, "Words", "Refunds refunds refunds, said the clerk.")
    await upload(api, account, "Neither", SHIPPING)
    for accepted in (both, words):
        await indexed(api, account, accepted["id"])

    results = await search(api, account, "original card refunds", mode="hybrid")

    assert results[0]["document_id"] == both["id"]


async def test_a_document_whose_indexing_has_not_run_is_not_found_yet(api: Api) -> None:
    account = await api.user()
    accepted = await upload(api, account, "Returns", RETURNS)

    # The relay has not dispatched the job: nothing is indexed yet.
    assert await search(api, account, "refunds", mode="keyword") == []
    document = (
        await api.client.get(f"{DOCUMENTS}/{accepted['id']}", headers=account.headers)
    ).json()
    assert (document["status"], document["chunk_count"]) == ("pending", 0)


async def test_another_users_better_matches_never_crowd_out_ones_own(api: Api) -> None:
    """Each ranking is of the caller's chunks alone, before any cut to top_k: with
    someone else's chunks in it, their better matches would take the only place."""
    ada, bob = await api.user(), await api.user()
    mine = await upload(api, ada, "Ada's", "Refunds are possible, eventually, for shoes.")
    theirs = await upload(api, bob, "Bob's", "Refunds refunds: refunds for shoes refunds.")
    await indexed(api, ada, mine["id"])
    await indexed(api, bob, theirs["id"])

    for mode in ("semantic", "keyword", "hybrid"):
        results = await search(api, ada, "refunds refunds shoes", mode=mode, top_k=1)
        assert [r["document_id"] for r in results] == [mine["id"]], mode


async def test_reembed_moves_every_document_to_the_configured_model(
    api: Api, settings: Settings
) -> None:
    """The suite's documents are embedded by the test embedder; the command, like any
    process built from the settings alone, embeds with the shipped model."""
    account = await api.user()
    returns = await upload(api, account, "Returns", RETURNS)
    shipping = await upload(api, account, "Shipping", SHIPPING)
    for accepted in (returns, shipping):
        await indexed(api, account, accepted["id"])
    env = {"DATABASE_URL": settings.database_url, "ENVIRONMENT": "test", "LOG_JSON": "false"}

    first = await asyncio.to_thread(CliRunner().invoke, app, ["reembed"], env=env)
    again = await asyncio.to_thread(CliRunner().invoke, app, ["reembed"], env=env)
    forced = await asyncio.to_thread(CliRunner().invoke, app, ["reembed", "--all"], env=env)

    assert first.exit_code == 0, first.output
    assert f"Embedded 2 document(s) again with {MiniLM.name}" in first.output
    assert "Embedded 0 document(s)" in again.output
    assert "Embedded 2 document(s)" in forced.output
    async with api.container.uow(read_only=True) as uow:
        models = (await uow.session.scalars(select(DocumentChunk.model).distinct())).all()
    assert list(models) == [MiniLM.name]
    for accepted in (returns, shipping):
        shown = await api.client.get(f"{DOCUMENTS}/{accepted['id']}", headers=account.headers)
        assert shown.json()["model"] == MiniLM.name


async def test_a_document_deleted_while_it_is_indexed_stays_deleted(api: Api) -> None:
    account = await api.user()
    accepted = await upload(api, account, "Returns", RETURNS)
    deleted: list[int] = []

    async def delete_midway(current: int, total: int | None = None) -> None:
        if not deleted:
            response = await api.client.delete(
                f"{DOCUMENTS}/{accepted['id']}", headers=account.headers
            )
            deleted.append(response.status_code)

    result = await api.container.documents.indexer.index(uuid.UUID(accepted["id"]), delete_midway)

    assert deleted == [204]
    assert result == {"document_id": accepted["id"], "deleted": True}
    assert await chunk_rows(api, accepted["id"]) == 0
