"""OpenAI through the official SDK, against a fake OpenAI API on a real socket: answers,
streams, usage, faults and fallback, end to end through the gateway."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from promptstack.ai.llm.guards import FAILURES_TO_OPEN, ProviderGuards
from promptstack.ai.llm.models import Outcome
from promptstack.ai.llm.service import Ask, Delta
from promptstack.core.clock import FrozenClock
from tests.ai.test_llm_generate import account_state, calls_of, funded
from tests.ai.test_llm_streaming import parse, streamed
from tests.fixtures.fake_llm import FakeLlmServer, served
from tests.fixtures.fake_openai import OpenAIWire
from tests.fixtures.support import Api, assert_problem, eventually

GENERATE = "/api/v1/llm/generate"
ASK = {"prompt": "Say hello to the gateway", "provider": "openai"}
# gpt-4o-mini's price in the table: 15 and 60 micro-credits a token; the fake counts a
# token a word: 5 prompt words, and "Echo:" with them back.
COST = 5 * 15 + 6 * 60

pytestmark = pytest.mark.adapter_only


@pytest.fixture(scope="module")
def openai_server() -> Iterator[FakeLlmServer]:
    yield from served(OpenAIWire())


@pytest.fixture
def fake(openai_server: FakeLlmServer) -> FakeLlmServer:
    openai_server.reset()
    return openai_server


@pytest.fixture
def settings_overrides(openai_server: FakeLlmServer) -> dict[str, Any]:
    return {
        "openai_api_key": "sk-test-key",
        "openai_base_url": f"{openai_server.url}/v1",
        "llm_timeout_seconds": 0.5,
    }


@pytest.fixture
def quick_retries(api: Api, clock: FrozenClock) -> None:
    api.container.llm.guards = ProviderGuards(clock.monotonic, retry_initial=0.001)


async def test_an_answer_comes_from_openai_billed_by_its_reported_usage(
    api: Api, fake: FakeLlmServer
) -> None:
    user = await funded(api, 100)

    answer = await api.client.post(GENERATE, json=ASK, headers=user.headers)

    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert (body["provider"], body["model"]) == ("openai", "gpt-4o-mini")
    assert body["text"] == "Echo: Say hello to the gateway"
    usage = ("prompt_tokens", "completion_tokens", "usage_exact", "cost_micros")
    assert tuple(body[name] for name in usage) == (5, 6, True, COST)
    [sent] = fake.received
    assert sent.headers["authorization"] == "Bearer sk-test-key"
    assert sent.body["max_completion_tokens"] == 512
    assert sent.body["messages"] == [{"role": "user", "content": ASK["prompt"]}]
    [call] = await calls_of(api, user)
    assert (call.outcome, call.cost_micros, call.usage_exact) == (Outcome.SUCCESS, COST, True)
    assert await account_state(api, user) == (100, COST, 100)


async def test_a_stream_asks_for_usage_and_is_billed_by_it(api: Api, fake: FakeLlmServer) -> None:
    user = await funded(api, 100)

    status, _, body = await streamed(api, user.headers, **ASK)

    assert status == 200
    events = parse(body)
    text = "".join(data["text"] for name, data in events if name == "delta")
    assert text == "Echo: Say hello to the gateway"
    [usage] = [data for name, data in events if name == "usage"]
    assert (usage["provider"], usage["completion_tokens"], usage["usage_exact"]) == (
        "openai",
        6,
        True,
    )
    assert fake.received[0].body["stream_options"] == {"include_usage": True}
    [call] = await calls_of(api, user)
    assert (call.streamed, call.cost_micros) == (True, COST)


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

    async def test_a_server_error_is_retried_then_a_502(
        self, api: Api, fake: FakeLlmServer
    ) -> None:
        user = await funded(api, 100)
        fake.fail("status", status=503, times=2)

        answer = await api.client.post(GENERATE, json=ASK, headers=user.headers)

        assert_problem(answer, 502, "provider_error")
        assert len(fake.received) == 2
        [call] = await calls_of(api, user)
        assert (call.outcome, call.error) == (Outcome.ERROR, "provider_error")
        assert await account_state(api, user) == (100, 0, 100)

    async def test_one_server_error_is_retried_away(self, api: Api, fake: FakeLlmServer) -> None:
        user = await funded(api, 100)
        fake.fail("status", status=500)

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
        fake.fail("status", status=503, times=2 * FAILURES_TO_OPEN)
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
    def settings_overrides(self, openai_server: FakeLlmServer) -> dict[str, Any]:
        return {
            "openai_api_key": "sk-test-key",
            "openai_base_url": f"{openai_server.url}/v1",
            "llm_fallbacks": "demo",
        }

    async def test_openai_down_falls_back_to_the_next_provider(
        self, api: Api, fake: FakeLlmServer
    ) -> None:
        user = await funded(api, 100)
        fake.fail("status", status=502, times=2)

        answer = await api.client.post(GENERATE, json=ASK, headers=user.headers)

        assert answer.status_code == 200, answer.text
        assert answer.json()["provider"] == "demo"


async def test_a_client_that_leaves_mid_stream_closes_the_upstream_call(
    api: Api, fake: FakeLlmServer
) -> None:
    user = await funded(api, 100)
    me = await api.container.accounts.auth.authenticate(user.access_token)
    fake.fail("stall")
    events = await api.container.llm.stream(me, Ask(ASK["prompt"], provider="openai"))

    first = await anext(events)
    await events.aclose()

    assert isinstance(first, Delta)
    await eventually(lambda: fake.disconnects, what="the fake provider to see us hang up")
    [call] = await calls_of(api, user)
    assert call.outcome == Outcome.CANCELLED


class TestUnconfigured:
    @pytest.fixture
    def settings_overrides(self) -> dict[str, Any]:
        return {}

    async def test_openai_without_a_key_is_listed_unavailable_and_refused(self, api: Api) -> None:
        user = await funded(api, 100)

        listed = await api.client.get("/api/v1/llm/providers", headers=user.headers)
        answer = await api.client.post(GENERATE, json=ASK, headers=user.headers)

        shown = {p["name"]: p["available"] for p in listed.json()["providers"]}
        assert shown["openai"] is False
        assert shown["demo"] is True
        problem = assert_problem(answer, 422, "provider_not_available")
        assert "demo" in problem["detail"]


class TestCompatible:
    @pytest.fixture
    def settings_overrides(self, openai_server: FakeLlmServer) -> dict[str, Any]:
        return {
            "openai_compatible_base_url": f"{openai_server.url}/v1",
            "openai_compatible_models": "llama3.1:8b,qwen2.5:7b",
            "llm_prices": {"openai_compatible/llama3.1:8b": {"prompt": 1, "completion": 2}},
        }

    async def test_a_compatible_server_serves_its_models_by_base_url(
        self, api: Api, fake: FakeLlmServer
    ) -> None:
        user = await funded(api, 100)

        listed = await api.client.get("/api/v1/llm/providers", headers=user.headers)
        answer = await api.client.post(
            GENERATE,
            json={"prompt": "Hi there", "provider": "openai_compatible", "max_tokens": 2},
            headers=user.headers,
        )

        [compatible] = [p for p in listed.json()["providers"] if p["name"] == "openai_compatible"]
        assert compatible["available"] is True
        assert [m["id"] for m in compatible["models"]] == ["llama3.1:8b", "qwen2.5:7b"]
        assert answer.status_code == 200, answer.text
        assert (answer.json()["model"], answer.json()["text"]) == ("llama3.1:8b", "Echo: Hi")
        [sent] = fake.received
        assert sent.body["max_tokens"] == 2
        assert "max_completion_tokens" not in sent.body
        [call] = await calls_of(api, user)
        assert call.cost_micros == 2 * 1 + 2 * 2
