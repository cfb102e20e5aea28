"""Anthropic through the official SDK, against a fake Messages API on a real socket:
what is Anthropic's own on the wire, where its system messages go, and what its SDK
makes of the environment. What every provider owes the gateway (usage, faults and its
529, retries, fallback, closing) is in `test_provider_contract.py`, whose fixtures
these tests run on for the Anthropic case."""

from __future__ import annotations

import pytest

from tests.ai.test_llm_generate import funded
from tests.ai.test_llm_streaming import streamed
from tests.ai.test_provider_contract import ANTHROPIC, GENERATE, PROMPT, conversation, fixtures_for
from tests.fixtures.fake_llm import FakeLlmServer
from tests.fixtures.support import Api

pytestmark = pytest.mark.adapter_only


# The contract's fixtures, for this case.
case, provider_server, fake, settings_overrides = fixtures_for(ANTHROPIC)


async def test_anthropic_is_asked_at_its_path_with_our_key_and_version(
    api: Api, fake: FakeLlmServer
) -> None:
    user = await funded(api, 100)

    answer = await api.client.post(GENERATE, json=ANTHROPIC.ask(), headers=user.headers)

    assert answer.status_code == 200, answer.text
    [sent] = fake.received
    # The SDK adds /v1/messages to the bare origin.
    assert sent.path == "/v1/messages"
    # This SDK (2.17) sends the key as a bearer token, not in x-api-key.
    assert sent.headers["authorization"] == f"Bearer {ANTHROPIC.key}"
    assert "x-api-key" not in sent.headers
    assert sent.headers["anthropic-version"] == "2026-10-21"
    assert sent.body["max_tokens"] == 512
    assert sent.body["messages"] == [{"role": "user", "content": PROMPT}]
    assert "system" not in sent.body


async def test_system_messages_and_sources_go_to_the_system_parameter(
    api: Api, fake: FakeLlmServer
) -> None:
    provider = api.container.llm.registry.get("anthropic")
    assert provider is not None
    request = conversation("claude-haiku-4-5")

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

    answer = await api.client.post(GENERATE, json=ANTHROPIC.ask(), headers=user.headers)

    assert answer.status_code == 200, answer.text
    [sent] = fake.received
    assert sent.headers["authorization"] == f"Bearer {ANTHROPIC.key}"


async def test_a_stream_is_asked_for_in_the_body(api: Api, fake: FakeLlmServer) -> None:
    user = await funded(api, 100)

    status, _, _ = await streamed(api, user.headers, **ANTHROPIC.ask())

    assert status == 200
    [sent] = fake.received
    assert sent.path == "/v1/messages"
    assert sent.body["stream"] is True
