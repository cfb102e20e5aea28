"""POST /llm/generate with `stream: true`: server-sent events, billed like any call."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from promptstack.accounts.credits import MICROS_PER_CREDIT
from promptstack.ai.llm.models import Outcome
from promptstack.ai.llm.providers.base import (
    Chunk,
    Completion,
    CompletionRequest,
    ModelInfo,
    ProviderError,
    TokenCount,
)
from promptstack.ai.llm.service import Answer, Ask, Delta
from promptstack.ai.llm.tokens import TokenCounter
from tests.ai.test_llm_generate import account_state, calls_of, funded
from tests.fixtures.support import Api, assert_problem

GENERATE = "/api/v1/llm/generate"
TOKENS = TokenCounter()


def parse(body: str) -> list[tuple[str, Any]]:
    """The events of a text/event-stream body, in order, their data decoded."""
    events = []
    for block in body.split("\n\n"):
        if not block.strip():
            continue
        fields = dict(line.split(": ", 1) for line in block.splitlines())
        events.append((fields["event"], json.loads(fields["data"])))
    return events


async def streamed(api: Api, headers: dict[str, str], **ask: Any) -> tuple[int, str, str]:
    async with api.client.stream(
        "POST", GENERATE, json={**ask, "stream": True}, headers=headers
    ) as response:
        body = (await response.aread()).decode()
        return response.status_code, response.headers["content-type"], body


async def test_a_stream_sends_the_answer_in_pieces_then_its_usage(api: Api) -> None:
    user = await api.user()
    whole = await api.client.post(
        GENERATE, json={"prompt": "How do sagas end?"}, headers=user.headers
    )

    status, kind, body = await streamed(api, user.headers, prompt="How do sagas end?")

    assert status == 200
    assert kind.startswith("text/event-stream")
    events = parse(body)
    names = [name for name, _ in events]
    assert names[-2:] == ["usage", "done"]
    assert set(names[:-2]) == {"delta"}
    assert len(names) > 4
    assert "".join(data["text"] for name, data in events if name == "delta") == whole.json()["text"]
    usage = events[-2][1]
    expected = {key: value for key, value in whole.json().items() if key not in {"id", "text"}}
    assert {key: usage[key] for key in expected} == expected
    calls = await calls_of(api, user)
    assert [(c.streamed, c.outcome) for c in calls] == [
        (False, Outcome.SUCCESS),
        (True, Outcome.SUCCESS),
    ]
    assert str(calls[1].id) == usage["id"]


class BreakingProvider:
    """Streams two pieces, then fails as a provider's connection would."""

    name = "breaking"

    def is_available(self) -> bool:
        return True

    def models(self) -> tuple[ModelInfo, ...]:
        return (ModelInfo("breaking-1", 1000, 100),)

    @property
    def default_model(self) -> str:
        return "breaking-1"

    def count_tokens(self, text: str, model: str) -> TokenCount:
        return TokenCount(len(TOKENS.encode(text)), exact=False, encoding="cl100k_base")

    async def generate(self, request: CompletionRequest) -> Completion:
        raise NotImplementedError

    async def stream(self, request: CompletionRequest) -> AsyncIterator[Chunk]:
        yield Chunk(text="Half an")
        yield Chunk(text=" answer")
        raise ProviderError(self.name, "the connection dropped", transient=True)


class TestPricedStreams:
    @pytest.fixture
    def settings_overrides(self) -> dict[str, Any]:
        per_token = {"prompt": 0, "completion": MICROS_PER_CREDIT}
        return {"llm_prices": {"demo/demo": per_token, "breaking/breaking-1": per_token}}

    async def test_a_stream_costs_what_the_same_call_costs(self, api: Api) -> None:
        user = await funded(api, 100)

        status, _, body = await streamed(api, user.headers, prompt="Hi", max_tokens=50)

        assert status == 200
        usage = parse(body)[-2][1]
        assert usage["credits_charged"] == usage["completion_tokens"] > 0
        assert await account_state(api, user) == (
            100 - usage["completion_tokens"],
            0,
            100 - usage["completion_tokens"],
        )

    async def test_a_stream_the_balance_cannot_cover_is_refused_before_it_starts(
        self, api: Api
    ) -> None:
        user = await funded(api, 2)

        status, kind, body = await streamed(api, user.headers, prompt="Hi", max_tokens=50)

        assert (status, kind) == (402, "application/problem+json")
        assert json.loads(body)["code"] == "insufficient_credits"
        assert await calls_of(api, user) == []

    async def test_a_stream_broken_off_upstream_ends_with_a_problem_and_costs_what_came(
        self, api: Api
    ) -> None:
        api.container.llm.registry.register(BreakingProvider())
        user = await funded(api, 100)

        status, _, body = await streamed(
            api, user.headers, prompt="Hi", provider="breaking", max_tokens=50
        )

        assert status == 200
        events = parse(body)
        assert [name for name, _ in events] == ["delta", "delta", "error"]
        problem = events[-1][1]
        assert (problem["status"], problem["code"]) == (502, "provider_error")
        assert problem["request_id"]
        [call] = await calls_of(api, user)
        produced = len(TOKENS.encode("Half an answer"))
        assert (call.outcome, call.error, call.completion_tokens, call.usage_exact) == (
            Outcome.ERROR,
            "provider_error",
            produced,
            False,
        )
        assert await account_state(api, user) == (100 - produced, 0, 100 - produced)

    async def test_a_stream_the_client_leaves_is_closed_and_costs_what_was_sent(
        self, api: Api
    ) -> None:
        user = await funded(api, 100)
        me = await api.container.accounts.auth.authenticate(user.access_token)
        events = await api.container.llm.stream(
            me, Ask("Tell me everything about compensation", max_tokens=50)
        )

        first = await anext(events)
        second = await anext(events)
        await events.aclose()  # what the server does with a stream whose client went away

        assert isinstance(first, Delta)
        assert isinstance(second, Delta)
        [call] = await calls_of(api, user)
        produced = len(TOKENS.encode(first.text + second.text))
        assert (call.outcome, call.completion_tokens) == (Outcome.CANCELLED, produced)
        assert await account_state(api, user) == (100 - produced, 0, 100 - produced)


async def test_the_stream_and_its_answer_agree_in_the_service(api: Api) -> None:
    user = await api.user()
    me = await api.container.accounts.auth.authenticate(user.access_token)

    events = [event async for event in await api.container.llm.stream(me, Ask("Why?"))]

    *pieces, last = events
    assert isinstance(last, Answer)
    assert "".join(p.text for p in pieces if isinstance(p, Delta)) == last.completion.text
    assert last.call.id == uuid.UUID(str((await calls_of(api, user))[0].id))


async def test_bad_input_is_refused_as_a_problem_not_a_stream(api: Api) -> None:
    user = await api.user()

    response = await api.client.post(
        GENERATE, json={"prompt": "Hi", "stream": "yes"}, headers=user.headers
    )

    assert_problem(response, 422)
