"""Retries, a breaker per provider, and falling back through LLM_FALLBACKS."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest

from promptstack.ai.llm.guards import FAILURES_TO_OPEN, RECOVERY_SECONDS, ProviderGuards
from promptstack.ai.llm.models import Outcome
from promptstack.ai.llm.providers.base import (
    Chunk,
    Completion,
    CompletionRequest,
    ModelInfo,
    ProviderRejected,
    ProviderUnreachable,
    TokenCount,
    Usage,
)
from promptstack.core.clock import FrozenClock
from tests.ai.test_llm_generate import calls_of
from tests.ai.test_llm_streaming import parse, streamed
from tests.fixtures.support import Api, assert_problem

GENERATE = "/api/v1/llm/generate"


class Unwell:
    """A provider that fails as told: before answering, or after its first chunk."""

    name = "unwell"

    def __init__(self) -> None:
        self.calls = 0
        self.failure: Exception | None = ProviderUnreachable(
            self.name, "upstream answered 503", transient=True
        )
        self.after_first_chunk = False

    def is_available(self) -> bool:
        return True

    def models(self) -> tuple[ModelInfo, ...]:
        return (ModelInfo("unwell-1", 4096, 1000),)

    @property
    def default_model(self) -> str:
        return "unwell-1"

    def count_tokens(self, text: str, model: str) -> TokenCount:
        return TokenCount(len(text.split()), exact=False, encoding="words")

    async def generate(self, request: CompletionRequest) -> Completion:
        self.calls += 1
        if self.failure is None:
            return Completion("fine", request.model, Usage(1, 1))
        raise self.failure

    async def stream(self, request: CompletionRequest) -> AsyncIterator[Chunk]:
        self.calls += 1
        if self.after_first_chunk:
            yield Chunk(text="Half")
        if self.failure is not None:
            raise self.failure
        yield Chunk(text="fine", usage=Usage(1, 1), finish_reason="stop")


FREE = {"llm_prices": {"unwell/unwell-1": {"prompt": 0, "completion": 0}}}


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"llm_fallbacks": "demo", **FREE}


@pytest.fixture
def unwell(api: Api, clock: FrozenClock) -> Unwell:
    provider = Unwell()
    api.container.llm.registry.register(provider)
    # Retries without waiting: the test is about which tries happen, not their pace.
    api.container.llm.guards = ProviderGuards(clock.monotonic, retry_initial=0.001)
    return provider


async def test_a_provider_that_cannot_answer_is_retried_then_the_fallback_answers(
    api: Api, unwell: Unwell
) -> None:
    user = await api.user()

    answer = await api.client.post(
        GENERATE, json={"prompt": "Hi", "provider": "unwell"}, headers=user.headers
    )

    assert answer.status_code == 200, answer.text
    assert (answer.json()["provider"], answer.json()["model"]) == ("demo", "demo")
    assert unwell.calls == 2  # the first try and one retry
    [call] = await calls_of(api, user)
    assert (call.provider, call.model, call.outcome) == ("demo", "demo", Outcome.SUCCESS)


async def test_a_refused_request_is_not_retried_nor_sent_elsewhere(
    api: Api, unwell: Unwell
) -> None:
    unwell.failure = ProviderRejected("unwell", "the prompt is too long for this model")
    user = await api.user()

    answer = await api.client.post(
        GENERATE, json={"prompt": "Hi", "provider": "unwell"}, headers=user.headers
    )

    assert_problem(answer, 502, "provider_error")
    assert unwell.calls == 1
    [call] = await calls_of(api, user)
    assert (call.provider, call.outcome) == ("unwell", Outcome.ERROR)


async def test_a_stream_falls_back_before_its_first_token_never_after(
    api: Api, unwell: Unwell
) -> None:
    user = await api.user()

    status, _, before = await streamed(api, user.headers, prompt="Hi", provider="unwell")
    unwell.after_first_chunk = True
    status_after, _, after = await streamed(api, user.headers, prompt="Hi", provider="unwell")

    assert status == status_after == 200
    assert parse(before)[-2][1]["provider"] == "demo"
    assert [name for name, _ in parse(after)] == ["delta", "error"]
    assert json.loads(after.split("data: ")[-1])["code"] == "provider_error"


class TestTheBreaker:
    @pytest.fixture
    def settings_overrides(self) -> dict[str, Any]:
        return FREE

    async def test_a_provider_failing_again_and_again_is_not_asked_for_a_while(
        self, api: Api, unwell: Unwell, clock: FrozenClock
    ) -> None:
        user = await api.user()
        ask = {"prompt": "Hi", "provider": "unwell"}

        failed = [
            await api.client.post(GENERATE, json=ask, headers=user.headers)
            for _ in range(FAILURES_TO_OPEN)
        ]
        asked = unwell.calls
        suspended = await api.client.post(GENERATE, json=ask, headers=user.headers)

        assert {a.status_code for a in failed} == {502}
        assert_problem(suspended, 503, "provider_unavailable")
        assert int(suspended.headers["Retry-After"]) >= 1
        assert unwell.calls == asked  # refused without asking
        calls = await calls_of(api, user)
        assert calls[-1].error == "provider_unavailable"

        unwell.failure = None
        clock.advance(timedelta(seconds=RECOVERY_SECONDS + 1))
        recovered = await api.client.post(GENERATE, json=ask, headers=user.headers)
        assert recovered.status_code == 200, recovered.text
        assert recovered.json()["provider"] == "unwell"
