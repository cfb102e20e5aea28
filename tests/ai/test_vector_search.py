"""Ranking: exact nearest neighbours agree with a sort of every score, fusion favours
what both rankings found, and the vectors a process holds follow the database."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from promptstack.ai.documents.repository import DocumentRepository
from promptstack.ai.documents.search import fuse, nearest
from tests.fixtures.documents import uploaded
from tests.fixtures.support import Api


def _unit(rows: int, dimension: int, seed: int) -> np.ndarray:
    generator = np.random.default_rng(seed)
    matrix = generator.standard_normal((rows, dimension)).astype(np.float32)
    return matrix / np.linalg.norm(matrix, axis=1, keepdims=True)


@settings(max_examples=60, deadline=None)
@given(
    rows=st.integers(0, 300),
    top_k=st.integers(1, 60),
    seed=st.integers(0, 2**32 - 1),
    repeats=st.booleans(),
)
def test_nearest_is_a_full_sort_cut_to_top_k(
    rows: int, top_k: int, seed: int, repeats: bool
) -> None:
    matrix = _unit(rows, 16, seed)
    if repeats and rows > 4:
        matrix[rows // 2 :] = matrix[0]  # many exact ties, across the cut
    query = _unit(1, 16, seed + 1)[0]

    found = nearest(matrix, query, top_k)

    scores = matrix @ query
    expected = sorted(range(rows), key=lambda row: (-scores[row], row))[:top_k]
    assert [row for row, _ in found] == expected
    assert [score for _, score in found] == [float(scores[row]) for row in expected]


def test_fusion_puts_what_both_rankings_found_first() -> None:
    semantic = ["a", "b", "c", "d"]
    keyword = ["x", "c", "y", "b"]

    fused = fuse([semantic, keyword], 3)

    assert [item for item, _ in fused] == ["c", "b", "a"]
    assert fused[0][1] == 1 / 63 + 1 / 62
    assert [score for _, score in fused] == sorted((s for _, s in fused), reverse=True)


def test_fusion_of_one_ranking_keeps_its_order() -> None:
    assert [item for item, _ in fuse([[3, 1, 2]], 10)] == [3, 1, 2]
    assert fuse([[], []], 5) == []


async def test_vectors_held_in_memory_follow_new_and_deleted_documents(api: Api) -> None:
    account = await api.user()
    headers = account.headers

    async def found(query: str, top_k: int = 50) -> list[str]:
        response = await api.client.post(
            "/api/v1/documents/search",
            json={"query": query, "mode": "semantic", "top_k": top_k},
            headers=headers,
        )
        return [result["document_id"] for result in response.json()["results"]]

    first = await uploaded(api, account, "Cats", "Cats purr and sleep in the sun.")
    assert await found("cats purr") == [first]  # now held
    second = await uploaded(api, account, "Dogs", "Dogs bark and fetch sticks.")

    assert (await found("dogs bark"))[0] == second  # the held set was topped up
    await api.client.delete(f"/api/v1/documents/{first}", headers=headers)
    # Reloaded after the deletion: a stale set would spend the one place on a gone chunk.
    assert await found("cats purr", top_k=1) == [second]
    third = await uploaded(api, account, "Cats again", "Cats purr and sleep in the sun.")
    assert (await found("cats purr"))[0] == third


async def test_concurrent_searches_load_a_users_vectors_once(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    account = await api.user()
    document = await uploaded(api, account, "Cats", "Cats purr and sleep in the sun.")
    loads: list[int | None] = []
    read = DocumentRepository.vectors

    async def counted(self: DocumentRepository, *args: Any, **kwargs: Any) -> Any:
        loads.append(kwargs.get("since"))
        return await read(self, *args, **kwargs)

    monkeypatch.setattr(DocumentRepository, "vectors", counted)

    answers = await asyncio.gather(
        *(
            api.client.post(
                "/api/v1/documents/search",
                json={"query": "cats purr", "mode": "semantic"},
                headers=account.headers,
            )
            for _ in range(12)
        )
    )

    assert loads == [None]
    for answer in answers:
        assert [r["document_id"] for r in answer.json()["results"]] == [document]
