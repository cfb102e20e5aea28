"""What every LLM provider adapter owes the gateway, whichever SDK carries it: each
scenario below runs once per provider (OpenAI, Anthropic, Gemini), through the official
SDK against a fake of the provider's API on a real socket, end to end through the
gateway. Answers and streams billed by reported usage, faults mapped to the same
problems, retries, the breaker, fallback, and closing the upstream call.

What is one provider's own (the wire: paths, headers, body fields; where system
messages go; what its SDK reads from the environment) is in its own test module, which
binds the fixtures here to its case with `fixtures_for`.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncGenerator, AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import pytest

from promptstack.ai.llm.guards import FAILURES_TO_OPEN, ProviderGuards
from promptstack.ai.llm.models import Outcome
from promptstack.ai.llm.providers.base import CompletionRequest, Message, Source
from promptstack.ai.llm.service import Ask, Delta
from promptstack.ai.llm.tokens import TokenCounter
from promptstack.core.clock import FrozenClock
from tests.ai.test_llm_generate import account_state, calls_of, funded
from tests.ai.test_llm_streaming import parse, streamed
from tests.fixtures.fake_anthropic import AnthropicWire
from tests.fixtures.fake_gemini import GeminiWire
from tests.fixtures.fake_llm import FakeLlmServer, WireProtocol, served
from tests.fixtures.fake_openai import OpenAIWire
from tests.fixtures.support import Api, assert_problem, eventually

GENERATE = "/api/v1/llm/generate"
PROMPT = "Say hello to the gateway"
# The fake counts a token a word: the prompt's 5, and "Echo:" with them back.
ANSWER = "Echo: Say hello to the gateway"
PROMPT_TOKENS, COMPLETION_TOKENS = 5, 6

pytestmark = pytest.mark.adapter_only


@dataclass(frozen=True)
class ProviderCase:
    """One provider, as the shared scenarios need to know it."""

    name: str
    wire: type[WireProtocol]
    key_setting: str
    key: str
    url_setting: str
    # What goes after the fake's origin in the base URL setting (the SDK adds the rest).
    url_path: str
    model: str
    # The standard answer's cost: PROMPT_TOKENS and COMPLETION_TOKENS at the model's
    # price in `prices.py`, written out so that a change to the table shows here.
    cost: int
    # The 5xx answers of its API for trouble that passes: each is retried.
    server_errors: tuple[int, ...]
    # What it answers when it cannot serve for now.
    overloaded: int
    # The deltas a stream gives before the fake breaks it at its third frame, and the
    # completion tokens then counted.
    broken_deltas: tuple[str, ...]
    broken_completion_tokens: int

    def settings(self, url: str, *, with_key: bool = True) -> dict[str, Any]:
        """The settings that point the provider at the fake server at `url`."""
        pointed = {self.url_setting: f"{url}{self.url_path}"}
        return {self.key_setting: self.key, **pointed} if with_key else pointed

    def ask(self, **more: Any) -> dict[str, Any]:
        return {"prompt": PROMPT, "provider": self.name, **more}


OPENAI = ProviderCase(
    name="openai",
    wire=OpenAIWire,
    key_setting="openai_api_key",
    key="sk-test-key",
    url_setting="openai_base_url",
    url_path="/v1",
    model="gpt-4o-mini",
    cost=5 * 15 + 6 * 60,
    server_errors=(500, 502, 503),
    overloaded=503,
    # The first frame only says who speaks; the second has the first word.
    broken_deltas=("Echo:",),
    broken_completion_tokens=2,
)
ANTHROPIC = ProviderCase(
    name="anthropic",
    wire=AnthropicWire,
    key_setting="anthropic_api_key",
    key="sk-ant-test-key",
    url_setting="anthropic_base_url",
    url_path="",
    model="claude-haiku-4-5",
    cost=5 * 100 + 6 * 500,
    # 529: overloaded, Anthropic's own.
    server_errors=(503, 529),
    overloaded=529,
    # The first frame holds the events before the text.
    broken_deltas=("Echo:",),
    broken_completion_tokens=2,
)
GEMINI = ProviderCase(
    name="gemini",
    wire=GeminiWire,
    key_setting="gemini_api_key",
    key="gemini-test-key",
    url_setting="gemini_base_url",
    url_path="",
    model="gemini-2.5-flash",
    cost=5 * 30 + 6 * 250,
    server_errors=(500, 503),
    overloaded=503,
    # Each chunk is a word: two came before the break.
    broken_deltas=("Echo:", " Say"),
    broken_completion_tokens=TokenCounter().count("Echo: Say", "gemini-2.5-flash").tokens,
)
CASES = (OPENAI, ANTHROPIC, GEMINI)


def each_server_error() -> pytest.MarkDecorator:
    """Parametrize a test by provider and by each of that provider's server errors."""
    return pytest.mark.parametrize(
        ("case", "status"),
        [pytest.param(c, s, id=f"{c.name}-{s}") for c in CASES for s in c.server_errors],
        indirect=["case"],
        scope="module",
    )


@pytest.fixture(scope="module", params=CASES, ids=[c.name for c in CASES])
def case(request: pytest.FixtureRequest) -> ProviderCase:
    return request.param  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def provider_server(case: ProviderCase) -> Iterator[FakeLlmServer]:
    yield from served(case.wire())


@pytest.fixture
def fake(provider_server: FakeLlmServer) -> FakeLlmServer:
    provider_server.reset()
    return provider_server


@pytest.fixture
def settings_overrides(case: ProviderCase, provider_server: FakeLlmServer) -> dict[str, Any]:
    return {**case.settings(provider_server.url), "llm_timeout_seconds": 0.5}


def fixtures_for(one: ProviderCase) -> tuple[Any, ...]:
    """For a provider's own test module, to bind at its top level: a `case` fixture of
    `one`, and the fixtures here that hang on it."""

    @pytest.fixture(scope="module", name="case")
    def only() -> ProviderCase:
        return one

    return only, provider_server, fake, settings_overrides


def conversation(model: str, **more: Any) -> CompletionRequest:
    """A request with a system message, a turn of each side before the last question,
    and a source: for where each provider puts what is not a user's or its own turn."""
    return CompletionRequest(
        model=model,
        messages=(
            Message("system", "Be brief."),
            Message("user", "What is it?"),
            Message("assistant", "It is a thing."),
            Message("user", "Which thing?"),
        ),
        max_tokens=3,
        sources=(Source("Manual", "The thing is a widget."),),
        **more,
    )


@pytest.fixture
def quick_retries(api: Api, clock: FrozenClock) -> None:
    api.container.llm.guards = ProviderGuards(clock.monotonic, retry_initial=0.001)


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


async def test_an_answer_is_billed_by_its_reported_usage(
    api: Api, fake: FakeLlmServer, case: ProviderCase
) -> None:
    user = await funded(api, 100)

    answer = await api.client.post(GENERATE, json=case.ask(), headers=user.headers)

    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert (body["provider"], body["model"]) == (case.name, case.model)
    assert body["text"] == ANSWER
    usage = ("prompt_tokens", "completion_tokens", "usage_exact", "cost_micros")
    assert tuple(body[name] for name in usage) == (
        PROMPT_TOKENS,
        COMPLETION_TOKENS,
        True,
        case.cost,
    )
    assert len(fake.received) == 1
    [call] = await calls_of(api, user)
    assert (call.outcome, call.cost_micros, call.usage_exact) == (Outcome.SUCCESS, case.cost, True)
    assert await account_state(api, user) == (100, case.cost, 100)


async def test_an_answer_cut_at_max_tokens_says_so(
    api: Api, fake: FakeLlmServer, case: ProviderCase
) -> None:
    user = await funded(api, 100)

    answer = await api.client.post(GENERATE, json=case.ask(max_tokens=2), headers=user.headers)

    assert answer.status_code == 200, answer.text
    assert answer.json()["text"] == "Echo: Say"
    assert answer.json()["finish_reason"] == "length"


async def test_a_stream_is_billed_by_the_usage_it_reports(
    api: Api, fake: FakeLlmServer, case: ProviderCase
) -> None:
    user = await funded(api, 100)

    status, _, body = await streamed(api, user.headers, **case.ask())

    assert status == 200
    events = parse(body)
    text = "".join(data["text"] for name, data in events if name == "delta")
    assert text == ANSWER
    [usage] = [data for name, data in events if name == "usage"]
    assert (usage["provider"], usage["completion_tokens"], usage["usage_exact"]) == (
        case.name,
        COMPLETION_TOKENS,
        True,
    )
    assert len(fake.received) == 1
    [call] = await calls_of(api, user)
    assert (call.streamed, call.cost_micros, call.prompt_tokens) == (
        True,
        case.cost,
        PROMPT_TOKENS,
    )


async def test_a_stream_without_usage_is_billed_by_a_flagged_count(
    api: Api, fake: FakeLlmServer, case: ProviderCase
) -> None:
    user = await funded(api, 100)
    fake.fail("no_usage")

    status, _, body = await streamed(api, user.headers, **case.ask())

    assert status == 200
    [usage] = [data for name, data in parse(body) if name == "usage"]
    assert usage["usage_exact"] is False
    [call] = await calls_of(api, user)
    assert call.usage_exact is False
    # Counted here, as they are: the hold's padding for an estimate is not billed.
    counter = TokenCounter()
    assert call.prompt_tokens == counter.count(PROMPT, case.model).tokens
    assert call.completion_tokens == counter.count(ANSWER, case.model).tokens


@pytest.mark.usefixtures("quick_retries")
class TestFaults:
    async def test_an_upstream_rate_limit_is_a_429_with_its_retry_after(
        self, api: Api, fake: FakeLlmServer, case: ProviderCase
    ) -> None:
        user = await funded(api, 100)
        fake.fail("status", status=429, retry_after="7")

        answer = await api.client.post(GENERATE, json=case.ask(), headers=user.headers)

        assert_problem(answer, 429, "provider_rate_limited")
        assert answer.headers["Retry-After"] == "7"
        assert len(fake.received) == 1
        assert await account_state(api, user) == (100, 0, 100)

    @each_server_error()
    async def test_a_server_error_is_retried_then_a_502(
        self, api: Api, fake: FakeLlmServer, case: ProviderCase, status: int
    ) -> None:
        user = await funded(api, 100)
        fake.fail("status", status=status, times=2)

        answer = await api.client.post(GENERATE, json=case.ask(), headers=user.headers)

        assert_problem(answer, 502, "provider_error")
        assert len(fake.received) == 2
        [call] = await calls_of(api, user)
        assert (call.outcome, call.error) == (Outcome.ERROR, "provider_error")
        assert await account_state(api, user) == (100, 0, 100)

    @each_server_error()
    async def test_one_server_error_is_retried_away(
        self, api: Api, fake: FakeLlmServer, case: ProviderCase, status: int
    ) -> None:
        user = await funded(api, 100)
        fake.fail("status", status=status)

        answer = await api.client.post(GENERATE, json=case.ask(), headers=user.headers)

        assert answer.status_code == 200, answer.text
        assert len(fake.received) == 2

    async def test_a_refusal_is_a_502_and_not_retried(
        self, api: Api, fake: FakeLlmServer, case: ProviderCase
    ) -> None:
        user = await funded(api, 100)
        fake.fail("status", status=400)

        answer = await api.client.post(GENERATE, json=case.ask(), headers=user.headers)

        assert_problem(answer, 502, "provider_error")
        assert len(fake.received) == 1

    async def test_a_provider_too_slow_is_a_504(
        self, api: Api, fake: FakeLlmServer, case: ProviderCase
    ) -> None:
        user = await funded(api, 100)
        fake.fail("slow", times=2)

        answer = await api.client.post(GENERATE, json=case.ask(), headers=user.headers)

        assert_problem(answer, 504, "provider_timeout")
        [call] = await calls_of(api, user)
        assert call.error == "provider_timeout"

    async def test_a_provider_failing_again_and_again_opens_its_circuit(
        self, api: Api, fake: FakeLlmServer, case: ProviderCase
    ) -> None:
        user = await funded(api, 100)
        fake.fail("status", status=case.overloaded, times=2 * FAILURES_TO_OPEN)
        for _ in range(FAILURES_TO_OPEN):
            await api.client.post(GENERATE, json=case.ask(), headers=user.headers)
        asked = len(fake.received)

        suspended = await api.client.post(GENERATE, json=case.ask(), headers=user.headers)

        assert_problem(suspended, 503, "provider_unavailable")
        assert len(fake.received) == asked

    @pytest.mark.parametrize("fault", ["malformed", "cut"])
    async def test_a_stream_broken_after_its_first_token_ends_in_an_error_event(
        self, api: Api, fake: FakeLlmServer, case: ProviderCase, fault: str
    ) -> None:
        user = await funded(api, 100)
        fake.fail(fault)  # type: ignore[arg-type]

        status, _, body = await streamed(api, user.headers, **case.ask())

        assert status == 200
        events = parse(body)
        deltas = [("delta", {"text": text}) for text in case.broken_deltas]
        assert events[: len(deltas)] == deltas
        name, problem = events[len(deltas)]
        assert (name, problem["code"]) == ("error", "provider_error")
        assert len(events) == len(deltas) + 1
        assert len(fake.received) == 1  # never retried after a token was sent
        [call] = await calls_of(api, user)
        assert (call.outcome, call.completion_tokens) == (
            Outcome.ERROR,
            case.broken_completion_tokens,
        )


@pytest.mark.usefixtures("quick_retries")
class TestFallback:
    @pytest.fixture
    def settings_overrides(
        self, case: ProviderCase, provider_server: FakeLlmServer
    ) -> dict[str, Any]:
        return {**case.settings(provider_server.url), "llm_fallbacks": "demo"}

    async def test_a_provider_down_falls_back_to_the_next_provider(
        self, api: Api, fake: FakeLlmServer, case: ProviderCase
    ) -> None:
        user = await funded(api, 100)
        fake.fail("status", status=case.overloaded, times=2)

        answer = await api.client.post(GENERATE, json=case.ask(), headers=user.headers)

        assert answer.status_code == 200, answer.text
        assert answer.json()["provider"] == "demo"
        assert len(fake.received) == 2


async def test_a_client_that_leaves_mid_stream_closes_the_upstream_call(
    api: Api, fake: FakeLlmServer, case: ProviderCase
) -> None:
    user = await funded(api, 100)
    me = await api.container.accounts.auth.authenticate(user.access_token)
    fake.fail("stall")
    events = await api.container.llm.stream(me, Ask(PROMPT, provider=case.name))

    assert isinstance(events, AsyncGenerator)
    first = await anext(events)
    await events.aclose()

    assert isinstance(first, Delta)
    await eventually(lambda: fake.disconnects, what="the fake provider to see us hang up")
    [call] = await calls_of(api, user)
    assert call.outcome == Outcome.CANCELLED


class TestClosing:
    @pytest.fixture
    def settings_overrides(
        self, case: ProviderCase, provider_server: FakeLlmServer
    ) -> dict[str, Any]:
        # Long enough that no read timeout closes the connection in the adapter's stead.
        return {**case.settings(provider_server.url), "llm_timeout_seconds": 120}

    async def test_closing_a_stream_closes_the_upstream_call_itself(
        self, api: Api, fake: FakeLlmServer, case: ProviderCase
    ) -> None:
        provider = api.container.llm.registry.get(case.name)
        assert provider is not None
        request = CompletionRequest(case.model, (Message("user", "Hi there"),), 8)
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
    def settings_overrides(
        self, case: ProviderCase, provider_server: FakeLlmServer
    ) -> dict[str, Any]:
        # A base URL alone is not enough: each of these needs a key.
        return case.settings(provider_server.url, with_key=False)

    async def test_a_provider_without_a_key_is_listed_unavailable_and_refused(
        self, api: Api, fake: FakeLlmServer, case: ProviderCase
    ) -> None:
        user = await funded(api, 100)

        listed = await api.client.get("/api/v1/llm/providers", headers=user.headers)
        answer = await api.client.post(GENERATE, json=case.ask(), headers=user.headers)

        shown = {p["name"]: p["available"] for p in listed.json()["providers"]}
        assert shown[case.name] is False
        assert shown["demo"] is True
        problem = assert_problem(answer, 422, "provider_not_available")
        assert "demo" in problem["detail"]
        assert fake.received == []
