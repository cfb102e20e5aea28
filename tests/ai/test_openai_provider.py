"""OpenAI through the official SDK, against a fake OpenAI API on a real socket: what is
OpenAI's own on the wire, and OpenAI-compatible servers. What every provider owes the
gateway (usage, faults, retries, fallback, closing) is in `test_provider_contract.py`,
whose fixtures these tests run on for the OpenAI case."""

from __future__ import annotations

from typing import Any

import pytest

from tests.ai.test_llm_generate import calls_of, funded
from tests.ai.test_llm_streaming import streamed
from tests.ai.test_provider_contract import GENERATE, OPENAI, PROMPT, fixtures_for
from tests.fixtures.fake_llm import FakeLlmServer
from tests.fixtures.support import Api

pytestmark = pytest.mark.adapter_only


# The contract's fixtures, for this case.
case, provider_server, fake, settings_overrides = fixtures_for(OPENAI)


async def test_openai_is_asked_with_our_key_for_max_completion_tokens(
    api: Api, fake: FakeLlmServer
) -> None:
    user = await funded(api, 100)

    answer = await api.client.post(GENERATE, json=OPENAI.ask(), headers=user.headers)

    assert answer.status_code == 200, answer.text
    [sent] = fake.received
    assert sent.headers["authorization"] == f"Bearer {OPENAI.key}"
    assert sent.body["max_completion_tokens"] == 512
    assert sent.body["messages"] == [{"role": "user", "content": PROMPT}]


async def test_a_stream_asks_for_usage(api: Api, fake: FakeLlmServer) -> None:
    user = await funded(api, 100)

    status, _, _ = await streamed(api, user.headers, **OPENAI.ask())

    assert status == 200
    [sent] = fake.received
    assert sent.body["stream"] is True
    assert sent.body["stream_options"] == {"include_usage": True}


class TestCompatible:
    @pytest.fixture
    def settings_overrides(self, provider_server: FakeLlmServer) -> dict[str, Any]:
        return {
            "openai_compatible_base_url": f"{provider_server.url}/v1",
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
