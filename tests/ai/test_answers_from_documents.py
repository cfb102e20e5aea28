"""POST /llm/generate with use_documents: the caller's best passages become numbered
sources, and the answer comes back with its citations; exact offline, on the demo
provider, which answers from the sources it is given."""

from __future__ import annotations

from typing import Any

from tests.ai.test_llm_streaming import parse, streamed
from tests.fixtures.documents import uploaded
from tests.fixtures.support import Account, Api

GENERATE = "/api/v1/llm/generate"
RETURNS = (
    "# Returns\n\nUnworn shoes can be returned within thirty days of delivery.\n\n"
    "Refunds reach the original card within five working days."
)
SHIPPING = "Parcels leave the warehouse every weekday at noon, by courier."


async def ask(api: Api, account: Account, prompt: str, **more: Any) -> dict[str, Any]:
    response = await api.client.post(
        GENERATE, json={"prompt": prompt, "use_documents": True, **more}, headers=account.headers
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_an_answer_from_documents_cites_its_sources(api: Api) -> None:
    account = await api.user()
    returns = await uploaded(api, account, "Returns policy", RETURNS)
    await uploaded(api, account, "Shipping", SHIPPING)

    body = await ask(api, account, "How long do refunds take to reach my card?")

    first = body["citations"][0]
    assert first["number"] == 1
    assert (first["document_id"], first["title"], first["cited"]) == (
        returns,
        "Returns policy",
        True,
    )
    assert "Refunds reach the original card within five working days [1]." in body["text"]
    numbers = [citation["number"] for citation in body["citations"]]
    assert numbers == list(range(1, len(numbers) + 1))
    scores = [citation["score"] for citation in body["citations"]]
    assert scores == sorted(scores, reverse=True)
    for citation in body["citations"]:
        assert citation["cited"] == (f"[{citation['number']}]" in body["text"])


async def test_the_sources_are_part_of_the_prompt_that_is_counted(api: Api) -> None:
    account = await api.user()
    await uploaded(api, account, "Returns policy", RETURNS)
    prompt = "How long do refunds take?"

    grounded = await ask(api, account, prompt)
    plain = await api.client.post(GENERATE, json={"prompt": prompt}, headers=account.headers)

    assert plain.json()["citations"] is None
    assert grounded["prompt_tokens"] > plain.json()["prompt_tokens"]


async def test_a_streamed_answer_ends_with_its_citations(api: Api) -> None:
    account = await api.user()
    returns = await uploaded(api, account, "Returns policy", RETURNS)

    status, _, body = await streamed(
        api, account.headers, prompt="When are refunds back on my card?", use_documents=True
    )

    assert status == 200
    events = parse(body)
    text = "".join(data["text"] for kind, data in events if kind == "delta")
    [usage] = [data for kind, data in events if kind == "usage"]
    assert usage["citations"][0]["document_id"] == returns
    assert "[1]" in text


async def test_nobody_is_answered_from_another_users_documents(api: Api) -> None:
    owner, other = await api.user(), await api.user()
    await uploaded(api, owner, "Returns policy", RETURNS)

    body = await ask(api, other, "How long do refunds take to reach my card?")

    assert body["citations"] == []
    assert "Refunds reach" not in body["text"]
