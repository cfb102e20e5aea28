"""POST /llm/generate: every call held, charged and recorded; credits exact under load."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from promptstack.accounts.credit_models import CreditEntry, CreditReason
from promptstack.accounts.credits import MICROS_PER_CREDIT
from promptstack.accounts.models import User
from promptstack.ai.llm.models import LlmCall, Outcome
from promptstack.ai.llm.prices import Price
from promptstack.ai.llm.providers.base import (
    Chunk,
    Completion,
    CompletionRequest,
    ModelInfo,
    ProviderError,
    ProviderRateLimited,
    ProviderTimeout,
    TokenCount,
    Usage,
)
from promptstack.ai.llm.service import Ask
from promptstack.ai.llm.usage import Served
from promptstack.core.clock import FrozenClock
from tests.fixtures.support import Account, Api, assert_problem

GENERATE = "/api/v1/llm/generate"
LONG_PROMPT = "Tell me, at length and in detail, everything about sagas and compensation."
# A credit per completion token, prompts free: a call of max_tokens=3 costs 3 credits.
CREDIT_PER_TOKEN = {"llm_prices": {"demo/demo": {"prompt": 0, "completion": MICROS_PER_CREDIT}}}


async def funded(api: Api, credits: int) -> Account:
    user = await api.user()
    if credits:
        async with api.container.uow() as uow:
            await api.container.accounts.credits.grant(
                uow, uuid.UUID(user.id), credits, CreditReason.PURCHASE, f"test:{user.id}"
            )
    return user


async def account_state(api: Api, user: Account) -> tuple[int, int, int]:
    """The balance, the micro-credits carried, and what the ledger's entries add up to."""
    user_id = uuid.UUID(user.id)
    async with api.container.uow(read_only=True) as uow:
        row = (
            await uow.session.execute(
                select(User.credits, User.credit_micros).where(User.id == user_id)
            )
        ).one()
        total = await uow.session.scalar(
            select(func.coalesce(func.sum(CreditEntry.delta), 0)).where(
                CreditEntry.user_id == user_id
            )
        )
    return int(row.credits), int(row.credit_micros), int(total or 0)


async def calls_of(api: Api, user: Account) -> list[LlmCall]:
    async with api.container.uow(read_only=True) as uow:
        found = await uow.session.scalars(
            select(LlmCall)
            .where(LlmCall.user_id == uuid.UUID(user.id))
            .order_by(LlmCall.created_at)
        )
        return list(found)


async def test_a_demo_call_answers_free_and_is_recorded(api: Api) -> None:
    user = await api.user()

    response = await api.client.post(
        GENERATE, json={"prompt": "What is a saga?"}, headers=user.headers
    )

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["text"] == "Demo answer to: What is a saga?"
    assert (body["provider"], body["model"], body["finish_reason"]) == ("demo", "demo", "stop")
    assert body["tokens_used"] == body["prompt_tokens"] + body["completion_tokens"]
    assert (body["cost_micros"], body["credits_charged"], body["usage_exact"]) == (0, 0, True)
    [call] = await calls_of(api, user)
    assert str(call.id) == body["id"]
    assert call.outcome is Outcome.SUCCESS
    assert (call.prompt_tokens, call.completion_tokens) == (
        body["prompt_tokens"],
        body["completion_tokens"],
    )
    assert call.latency_ms is not None
    assert await account_state(api, user) == (0, 0, 0)


class TestPricedCalls:
    @pytest.fixture
    def settings_overrides(self) -> dict[str, Any]:
        return CREDIT_PER_TOKEN

    async def test_a_call_costs_its_tokens_and_one_the_balance_cannot_cover_is_a_402(
        self, api: Api
    ) -> None:
        user = await funded(api, 10)
        ask = {"prompt": LONG_PROMPT, "max_tokens": 3}

        answers = [
            await api.client.post(GENERATE, json=ask, headers=user.headers) for _ in range(4)
        ]

        assert [a.status_code for a in answers[:3]] == [200, 200, 200]
        assert all(a.json()["credits_charged"] == 3 for a in answers[:3])
        refused = assert_problem(answers[3], 402, "insufficient_credits")
        assert refused["required"] == 3
        assert await account_state(api, user) == (1, 0, 1)
        assert [call.outcome for call in await calls_of(api, user)] == [Outcome.SUCCESS] * 3

    async def test_what_a_short_answer_does_not_use_is_given_back(self, api: Api) -> None:
        user = await funded(api, 100)

        answer = await api.client.post(
            GENERATE, json={"prompt": "Hi", "max_tokens": 50}, headers=user.headers
        )

        assert answer.status_code == 200, answer.text
        used = answer.json()["completion_tokens"]
        assert used < 50
        assert answer.json()["credits_charged"] == used
        assert await account_state(api, user) == (100 - used, 0, 100 - used)

    async def test_concurrent_calls_never_spend_more_than_the_balance(self, api: Api) -> None:
        user = await funded(api, 13)
        ask = {"prompt": LONG_PROMPT, "max_tokens": 3}

        answers = await asyncio.gather(
            *(api.client.post(GENERATE, json=ask, headers=user.headers) for _ in range(12))
        )

        statuses = sorted(a.status_code for a in answers)
        assert statuses == [200] * 4 + [402] * 8
        assert await account_state(api, user) == (1, 0, 1)
        assert len(await calls_of(api, user)) == 4


class TestPartsOfACredit:
    @pytest.fixture
    def settings_overrides(self) -> dict[str, Any]:
        return {"llm_prices": {"demo/demo": {"prompt": 30_000, "completion": 70_000}}}

    async def test_parts_of_a_credit_add_up_and_are_charged_when_they_make_one(
        self, api: Api
    ) -> None:
        user = await funded(api, 20)

        answers = [
            await api.client.post(
                GENERATE, json={"prompt": f"Call {n}", "max_tokens": 20}, headers=user.headers
            )
            for n in range(6)
        ]

        costs = [a.json()["cost_micros"] for a in answers]
        assert all(0 < cost < 2 * MICROS_PER_CREDIT for cost in costs)
        spent = sum(costs)
        charged = sum(a.json()["credits_charged"] for a in answers)
        assert charged == spent // MICROS_PER_CREDIT
        assert await account_state(api, user) == (
            20 - charged,
            spent % MICROS_PER_CREDIT,
            20 - charged,
        )


class FailingProvider:
    """A provider whose answer the prompt decides: how the gateway treats each failure."""

    name = "failing"

    def __init__(self) -> None:
        self.started = asyncio.Event()

    def is_available(self) -> bool:
        return True

    def models(self) -> tuple[ModelInfo, ...]:
        return (ModelInfo("failing-1", 1000, 100),)

    @property
    def default_model(self) -> str:
        return "failing-1"

    def count_tokens(self, text: str, model: str) -> TokenCount:
        return TokenCount(len(text.split()), exact=False, encoding="words")

    async def generate(self, request: CompletionRequest) -> Completion:
        prompt = request.messages[-1].content
        if prompt == "rate":
            raise ProviderRateLimited(self.name, "slow down", transient=True, retry_after=7)
        if prompt == "timeout":
            raise ProviderTimeout(self.name, "no answer in 30 s", transient=True)
        if prompt == "hang":
            self.started.set()
            await asyncio.Event().wait()
        raise ProviderError(self.name, "upstream answered 500", transient=True)

    async def stream(self, request: CompletionRequest) -> AsyncIterator[Chunk]:
        raise NotImplementedError
        yield Chunk()


class TestProviderFailures:
    @pytest.fixture
    def settings_overrides(self) -> dict[str, Any]:
        return {"llm_prices": {"failing/failing-1": {"prompt": 0, "completion": MICROS_PER_CREDIT}}}

    @pytest.fixture
    def failing(self, api: Api) -> FailingProvider:
        provider = FailingProvider()
        api.container.llm.registry.register(provider)
        return provider

    @pytest.mark.parametrize(
        ("prompt", "status", "code"),
        [
            ("rate", 429, "provider_rate_limited"),
            ("timeout", 504, "provider_timeout"),
            ("boom", 502, "provider_error"),
        ],
    )
    async def test_a_failure_upstream_is_a_problem_and_costs_nothing(
        self, api: Api, failing: FailingProvider, prompt: str, status: int, code: str
    ) -> None:
        user = await funded(api, 500)

        response = await api.client.post(
            GENERATE,
            json={"prompt": prompt, "provider": "failing", "max_tokens": 100},
            headers=user.headers,
        )

        assert_problem(response, status, code)
        if status == 429:
            assert response.headers["Retry-After"] == "7"
        [call] = await calls_of(api, user)
        assert (call.outcome, call.error, call.credits_held, call.credits_charged) == (
            Outcome.ERROR,
            code,
            100,
            0,
        )
        assert await account_state(api, user) == (500, 0, 500)

    async def test_a_call_whose_client_goes_away_is_closed_and_charged_nothing(
        self, api: Api, failing: FailingProvider
    ) -> None:
        user = await funded(api, 500)
        me = await api.container.accounts.auth.authenticate(user.access_token)
        asking = asyncio.create_task(
            api.container.llm.generate(me, Ask("hang", provider="failing", max_tokens=100))
        )
        await failing.started.wait()
        assert await account_state(api, user) == (400, 0, 400)

        asking.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asking

        [call] = await calls_of(api, user)
        assert call.outcome is Outcome.CANCELLED
        assert await account_state(api, user) == (500, 0, 500)


@pytest.mark.parametrize("settings_overrides", [CREDIT_PER_TOKEN])
async def test_a_hold_left_by_a_crash_is_returned_by_the_sweep(
    api: Api, clock: FrozenClock, settings_overrides: dict[str, Any]
) -> None:
    user = await funded(api, 50)
    usage = api.container.llm.usage
    # The process dies after the hold committed, before the provider answered.
    opened = await usage.open(uuid.UUID(user.id), "demo", "demo", held=20, streamed=False)
    await usage.sweep()
    assert await account_state(api, user) == (30, 0, 30)  # not yet: it may still be running

    clock.advance(timedelta(minutes=16))
    await usage.sweep()

    [call] = await calls_of(api, user)
    assert (call.outcome, call.credits_charged) == (Outcome.ABANDONED, 0)
    assert await account_state(api, user) == (50, 0, 50)
    # The call's own close, arriving after all, finds it closed and charges nothing.
    served = Served("demo", "demo", Price(0, MICROS_PER_CREDIT))
    late = await usage.close(opened, served, Outcome.SUCCESS, Usage(0, 20))
    assert late.credits_charged == 0
    assert await account_state(api, user) == (50, 0, 50)


async def test_a_model_asked_for_more_than_it_can_produce_is_a_422(api: Api) -> None:
    user = await api.user()

    too_long = await api.client.post(
        GENERATE, json={"prompt": "Hi", "max_tokens": 4097}, headers=user.headers
    )
    unknown = await api.client.post(
        GENERATE, json={"prompt": "Hi", "model": "gpt-5"}, headers=user.headers
    )
    elsewhere = await api.client.post(
        GENERATE, json={"prompt": "Hi", "provider": "openai"}, headers=user.headers
    )

    assert assert_problem(too_long, 422)["errors"][0]["loc"] == ["body", "max_tokens"]
    assert assert_problem(unknown, 422, "unknown_model")["errors"][0]["loc"] == ["body", "model"]
    assert assert_problem(elsewhere, 422, "provider_not_available")["errors"][0]["loc"] == [
        "body",
        "provider",
    ]
    assert await calls_of(api, user) == []
