"""Anthropic through the official SDK, against a fake Messages API on a real socket:
answers, streams, usage, faults and fallback, end to end through the gateway."""

from __future__ import annotations

import sys
from collections.abc import AsyncGenerator, AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from promptstack.ai.llm.guards import FAILURES_TO_OPEN, ProviderGuards
from promptstack.ai.llm.models import Outcome
from promptstack.ai.llm.prices import PRICES
from promptstack.ai.llm.providers.base import CompletionRequest, Message, Source
from promptstack.ai.llm.service import Ask, Delta
from promptstack.core.clock import FrozenClock
from tests.ai.test_llm_generate import account_state, calls_of, funded
from tests.ai.test_llm_streaming import parse, streamed
from tests.fixtures.fake_anthropic import AnthropicWire
from tests.fixtures.fake_llm import FakeLlmServer, served
from tests.fixtures.support import Api, assert_problem, eventually

GENERATE = "/api/v1/llm/generate"
ASK = {"prompt": "Say hello to the gateway", "provider": "anthropic"}
KEY = "sk-ant-test-key"
# The fake counts a token a word: 5 prompt words, and "Echo:" with them back.
PRICE = PRICES["anthropic/claude-haiku-4-5"]
COST = 5 * PRICE.prompt + 6 * PRICE.completion

pytestmark = pytest.mark.adapter_only


@pytest.fixture(scope="module")
def anthropic_server() -> Iterator[FakeLlmServer]:
    yield from served(AnthropicWire())


@pytest.fixture
def fake(anthropic_server: FakeLlmServer) -> FakeLlmServer:
    anthropic_server.reset()
    return anthropic_server


@pytest.fixture
def settings_overrides(anthropic_server: FakeLlmServer) -> dict[str, Any]:
    # The SDK adds /v1/messages to the bare origin.
    return {
        "anthropic_api_key": KEY,
        "anthropic_base_url": anthropic_server.url,
        "llm_timeout_seconds": 0.5,
    }


@pytest.fixture
def quick_retries(api: Api, clock: FrozenClock) -> None:
    api.container.llm.guards = ProviderGuards(clock.monotonic, retry_initial=0.001)


async def test_an_answer_comes_from_anthropic_billed_by_its_reported_usage(
    api: Api, fake: FakeLlmServer
) -> None:
    user = await funded(api, 100)

    answer = await api.client.post(GENERATE, json=ASK, headers=user.headers)

    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert (body["provider"], body["model"]) == ("anthropic", "claude-haiku-4-5")
    assert body["text"] == "Echo: Say hello to the gateway"
    usage = ("prompt_tokens", "completion_tokens", "usage_exact", "cost_micros")
    assert tuple(body[name] for name in usage) == (5, 6, True, COST)
    [sent] = fake.received
    assert sent.path == "/v1/messages"
    # This SDK (2.17) sends the key as a bearer token, not in x-api-key.
    assert sent.headers["authorization"] == f"Bearer {KEY}"
    assert "x-api-key" not in sent.headers
    assert sent.headers["anthropic-version"] == "2026-10-21"
    assert sent.body["max_tokens"] == 512
    assert sent.body["messages"] == [{"role": "user", "content": ASK["prompt"]}]
    assert "system" not in sent.body
    [call] = await calls_of(api, user)
    assert (call.outcome, call.cost_micros, call.usage_exact) == (Outcome.SUCCESS, COST, True)
    assert await account_state(api, user) == (100, COST, 100)


async def test_system_messages_and_sources_go_to_the_system_parameter(
    api: Api, fake: FakeLlmServer
) -> None:
    provider = api.container.llm.registry.get("anthropic")
    assert provider is not None
    request = CompletionRequest(
        model="claude-haiku-4-5",
        messages=(
            Message("system", "Be brief."),
            Message("user", "What is it?"),
            Message("assistant", "It is a thing."),
            Message("user", "Which thing?"),
        ),
        max_tokens=3,
        sources=(Source("Manual", "The thing is a widget."),),
    )

    completion = await provider.generate(request)

    assert (completion.text, completion.finish_reason) == ("Echo: Which thing?", "stop")
    [sent] = fake.received
    assert [m["role"] for m in sent.body["messages"]] == ["user", "assistant", "user"]
    system = sent.body["system"]
    assert system.startswith("Answer from the numbered sources below")
    assert "[1] Manual\nThe thing is a widget." in system
    assert system.endswith("\n\nBe brief.")


async def test_the_sdk_takes_our_key_whatever_its_environment_says(
    api: Api, fake: FakeLlmServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Set before the first call, which is when the SDK's client is made.
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-from-the-environment")
    monkeypatch.setenv("ANTHROPIC_AUTH_TOKEN", "token-from-the-environment")
    user = await funded(api, 100)

    answer = await api.client.post(GENERATE, json=ASK, headers=user.headers)

    assert answer.status_code == 200, answer.text
    [sent] = fake.received
    assert sent.headers["authorization"] == f"Bearer {KEY}"


async def test_an_answer_cut_at_max_tokens_says_so(api: Api, fake: FakeLlmServer) -> None:
    user = await funded(api, 100)

    answer = await api.client.post(GENERATE, json={**ASK, "max_tokens": 2}, headers=user.headers)

    assert answer.status_code == 200, answer.text
    assert answer.json()["text"] == "Echo: Say"
    assert answer.json()["finish_reason"] == "length"


async def test_a_stream_is_billed_by_the_usage_it_reports(api: Api, fake: FakeLlmServer) -> None:
    user = await funded(api, 100)

    status, _, body = await streamed(api, user.headers, **ASK)

    assert status == 200
    events = parse(body)
    text = "".join(data["text"] for name, data in events if name == "delta")
    assert text == "Echo: Say hello to the gateway"
    [usage] = [data for name, data in events if name == "usage"]
    assert (usage["provider"], usage["completion_tokens"], usage["usage_exact"]) == (
        "anthropic",
        6,
        True,
    )
    assert fake.received[0].body["stream"] is True
    [call] = await calls_of(api, user)
    assert (call.streamed, call.cost_micros, call.prompt_tokens) == (True, COST, 5)


async def test_a_stream_without_usage_is_billed_by_a_flagged_count(
    api: Api, fake: FakeLlmServer
) -> None:
    user = await funded(api, 100)
    fake.fail("no_usage")

    status, _, body = await streamed(api, user.headers, **ASK)

    assert status == 200
    [usage] = [data for name, data in parse(body) if name == "usage"]
    assert usage["usage_exact"] is False
    [call] = await calls_of(api, user)
    assert call.usage_exact is False
    assert call.completion_tokens > 0


@pytest.mark.usefixtures("quick_retries")
class TestFaults:
    async def test_an_upstream_rate_limit_is_a_429_with_its_retry_after(
        self, api: Api, fake: FakeLlmServer
    ) -> None:
        user = await funded(api, 100)
        fake.fail("status", status=429, retry_after="7")

        answer = await api.client.post(GENERATE, json=ASK, headers=user.headers)

        assert_problem(answer, 429, "provider_rate_limited")
        assert answer.headers["Retry-After"] == "7"
        assert len(fake.received) == 1
        assert await account_state(api, user) == (100, 0, 100)

    @pytest.mark.parametrize("status", [503, 529])
    async def test_a_server_error_or_overload_is_retried_then_a_502(
        self, api: Api, fake: FakeLlmServer, status: int
    ) -> None:
        user = await funded(api, 100)
        fake.fail("status", status=status, times=2)

        answer = await api.client.post(GENERATE, json=ASK, headers=user.headers)

        assert_problem(answer, 502, "provider_error")
        assert len(fake.received) == 2
        [call] = await calls_of(api, user)
        assert (call.outcome, call.error) == (Outcome.ERROR, "provider_error")
        assert await account_state(api, user) == (100, 0, 100)

    async def test_one_overload_is_retried_away(self, api: Api, fake: FakeLlmServer) -> None:
        user = await funded(api, 100)
        fake.fail("status", status=529)

        answer = await api.client.post(GENERATE, json=ASK, headers=user.headers)

        assert answer.status_code == 200, answer.text
        assert len(fake.received) == 2

    async def test_a_refusal_is_a_502_and_not_retried(self, api: Api, fake: FakeLlmServer) -> None:
        user = await funded(api, 100)
        fake.fail("status", status=400)

        answer = await api.client.post(GENERATE, json=ASK, headers=user.headers)

        assert_problem(answer, 502, "provider_error")
        assert len(fake.received) == 1

    async def test_a_provider_too_slow_is_a_504(self, api: Api, fake: FakeLlmServer) -> None:
        user = await funded(api, 100)
        fake.fail("slow", times=2)

        answer = await api.client.post(GENERATE, json=ASK, headers=user.headers)

        assert_problem(answer, 504, "provider_timeout")
        [call] = await calls_of(api, user)
        assert call.error == "provider_timeout"

    async def test_a_provider_failing_again_and_again_opens_its_circuit(
        self, api: Api, fake: FakeLlmServer
    ) -> None:
        user = await funded(api, 100)
        fake.fail("status", status=529, times=2 * FAILURES_TO_OPEN)
        for _ in range(FAILURES_TO_OPEN):
            await api.client.post(GENERATE, json=ASK, headers=user.headers)
        asked = len(fake.received)

        suspended = await api.client.post(GENERATE, json=ASK, headers=user.headers)

        assert_problem(suspended, 503, "provider_unavailable")
        assert len(fake.received) == asked

    @pytest.mark.parametrize("fault", ["malformed", "cut"])
    async def test_a_stream_broken_after_its_first_token_ends_in_an_error_event(
        self, api: Api, fake: FakeLlmServer, fault: str
    ) -> None:
        user = await funded(api, 100)
        fake.fail(fault)  # type: ignore[arg-type]

        status, _, body = await streamed(api, user.headers, **ASK)

        assert status == 200
        events = parse(body)
        assert events[0] == ("delta", {"text": "Echo:"})
        name, problem = events[-1]
        assert (name, problem["code"]) == ("error", "provider_error")
        assert len(fake.received) == 1  # never retried after a token was sent
        [call] = await calls_of(api, user)
        assert (call.outcome, call.completion_tokens) == (Outcome.ERROR, 2)


@pytest.mark.usefixtures("quick_retries")
class TestFallback:
    @pytest.fixture
    def settings_overrides(self, anthropic_server: FakeLlmServer) -> dict[str, Any]:
        return {
            "anthropic_api_key": KEY,
            "anthropic_base_url": anthropic_server.url,
            "llm_fallbacks": "demo",
        }

    async def test_anthropic_overloaded_falls_back_to_the_next_provider(
        self, api: Api, fake: FakeLlmServer
    ) -> None:
        user = await funded(api, 100)
        fake.fail("status", status=529, times=2)

        answer = await api.client.post(GENERATE, json=ASK, headers=user.headers)

        assert answer.status_code == 200, answer.text
        assert answer.json()["provider"] == "demo"
        assert len(fake.received) == 2


async def test_a_client_that_leaves_mid_stream_closes_the_upstream_call(
    api: Api, fake: FakeLlmServer
) -> None:
    user = await funded(api, 100)
    me = await api.container.accounts.auth.authenticate(user.access_token)
    fake.fail("stall")
    events = await api.container.llm.stream(me, Ask(ASK["prompt"], provider="anthropic"))

    assert isinstance(events, AsyncGenerator)
    first = await anext(events)
    await events.aclose()

    assert isinstance(first, Delta)
    await eventually(lambda: fake.disconnects, what="the fake provider to see us hang up")
    [call] = await calls_of(api, user)
    assert call.outcome == Outcome.CANCELLED


@asynccontextmanager
async def no_finalizing() -> AsyncIterator[None]:
    """While inside, async generators that are dropped unclosed are kept, not closed by
    the event loop: what closes the upstream call is then the adapter's own doing, not
    the garbage collector's. They are closed on the way out."""
    kept: list[AsyncGenerator[Any, Any]] = []
    hooks = sys.get_asyncgen_hooks()
    sys.set_asyncgen_hooks(firstiter=hooks.firstiter, finalizer=kept.append)
    try:
        yield
    finally:
        sys.set_asyncgen_hooks(*hooks)
        for dropped in kept:
            await dropped.aclose()


class TestClosing:
    @pytest.fixture
    def settings_overrides(self, anthropic_server: FakeLlmServer) -> dict[str, Any]:
        # Long enough that no read timeout closes the connection in the adapter's stead.
        return {
            "anthropic_api_key": KEY,
            "anthropic_base_url": anthropic_server.url,
            "llm_timeout_seconds": 120,
        }

    async def test_closing_a_stream_closes_the_upstream_call_itself(
        self, api: Api, fake: FakeLlmServer
    ) -> None:
        provider = api.container.llm.registry.get("anthropic")
        assert provider is not None
        request = CompletionRequest("claude-haiku-4-5", (Message("user", "Hi there"),), 8)
        fake.fail("stall")

        async with no_finalizing():
            chunks = provider.stream(request)
            assert isinstance(chunks, AsyncGenerator)
            first = await anext(chunks)
            await chunks.aclose()

            assert first.text == "Echo:"
            await eventually(lambda: fake.disconnects, what="the fake provider to see us hang up")


class TestUnconfigured:
    @pytest.fixture
    def settings_overrides(self, anthropic_server: FakeLlmServer) -> dict[str, Any]:
        # A base URL alone is not enough: Anthropic needs a key.
        return {"anthropic_base_url": anthropic_server.url}

    async def test_anthropic_without_a_key_is_listed_unavailable_and_refused(
        self, api: Api, fake: FakeLlmServer
    ) -> None:
        user = await funded(api, 100)

        listed = await api.client.get("/api/v1/llm/providers", headers=user.headers)
        answer = await api.client.post(GENERATE, json=ASK, headers=user.headers)

        shown = {p["name"]: p["available"] for p in listed.json()["providers"]}
        assert shown["anthropic"] is False
        assert shown["demo"] is True
        problem = assert_problem(answer, 422, "provider_not_available")
        assert "demo" in problem["detail"]
        assert fake.received == []
