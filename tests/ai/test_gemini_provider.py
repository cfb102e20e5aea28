"""Gemini through the official `google-genai` SDK, against a fake Gemini API on a real
socket: what is Gemini's own on the wire, where its system messages go, and what its
SDK makes of the environment. What every provider owes the gateway (usage, faults,
retries, fallback, closing) is in `test_provider_contract.py`, whose fixtures these
tests run on for the Gemini case."""

from __future__ import annotations

import pytest

from tests.ai.test_llm_generate import funded
from tests.ai.test_llm_streaming import streamed
from tests.ai.test_provider_contract import GEMINI, GENERATE, PROMPT, conversation, fixtures_for
from tests.fixtures.fake_gemini import RETRY_DELAY
from tests.fixtures.fake_llm import FakeLlmServer
from tests.fixtures.support import Api, assert_problem

pytestmark = pytest.mark.adapter_only


# The contract's fixtures, for this case.
case, provider_server, fake, settings_overrides = fixtures_for(GEMINI)


async def test_gemini_is_asked_at_the_models_path_with_our_key(
    api: Api, fake: FakeLlmServer
) -> None:
    user = await funded(api, 100)

    answer = await api.client.post(GENERATE, json=GEMINI.ask(), headers=user.headers)

    assert answer.status_code == 200, answer.text
    [sent] = fake.received
    # The SDK adds the API version and the model's path to the bare origin.
    assert (sent.path, sent.query) == ("/v1beta/models/gemini-2.5-flash:generateContent", "")
    assert sent.headers["x-goog-api-key"] == GEMINI.key
    assert "authorization" not in sent.headers
    assert sent.body["contents"] == [{"role": "user", "parts": [{"text": PROMPT}]}]
    assert sent.body["generationConfig"] == {"maxOutputTokens": 512}
    assert "systemInstruction" not in sent.body


async def test_system_messages_and_sources_go_to_the_system_instruction(
    api: Api, fake: FakeLlmServer
) -> None:
    provider = api.container.llm.registry.get("gemini")
    assert provider is not None
    request = conversation("gemini-2.5-flash", temperature=0.25)

    completion = await provider.generate(request)

    assert (completion.text, completion.finish_reason) == ("Echo: Which thing?", "stop")
    [sent] = fake.received
    assert [c["role"] for c in sent.body["contents"]] == ["user", "model", "user"]
    assert sent.body["generationConfig"] == {"maxOutputTokens": 3, "temperature": 0.25}
    [part] = sent.body["systemInstruction"]["parts"]
    system = part["text"]
    assert system.startswith("Answer from the numbered sources below")
    assert "[1] Manual\nThe thing is a widget." in system
    assert system.endswith("\n\nBe brief.")


async def test_the_sdk_goes_by_our_settings_whatever_its_environment_says(
    api: Api, fake: FakeLlmServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Set before the first call, which is when the SDK's client is made: a key, Vertex
    # AI with a Google Cloud project, another API version, the SDK's replay mode.
    environment = {
        "GOOGLE_API_KEY": "from-the-environment",
        "GEMINI_API_KEY": "from-the-environment-too",
        "GOOGLE_GENAI_USE_VERTEXAI": "true",
        "GOOGLE_CLOUD_PROJECT": "some-project",
        "GOOGLE_CLOUD_LOCATION": "us-central1",
        "GOOGLE_GENAI_API_VERSION": "v1",
        "GOOGLE_GENAI_CLIENT_MODE": "replay",
    }
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    user = await funded(api, 100)

    answer = await api.client.post(GENERATE, json=GEMINI.ask(), headers=user.headers)

    assert answer.status_code == 200, answer.text
    [sent] = fake.received
    assert sent.path == "/v1beta/models/gemini-2.5-flash:generateContent"
    assert sent.headers["x-goog-api-key"] == GEMINI.key


async def test_a_stream_is_asked_for_by_its_path_as_server_sent_events(
    api: Api, fake: FakeLlmServer
) -> None:
    user = await funded(api, 100)

    status, _, _ = await streamed(api, user.headers, **GEMINI.ask())

    assert status == 200
    [sent] = fake.received
    assert sent.path == "/v1beta/models/gemini-2.5-flash:streamGenerateContent"
    assert sent.query == "alt=sse"
    assert sent.headers["x-goog-api-key"] == GEMINI.key


async def test_a_rate_limit_says_when_to_come_back_in_its_body(
    api: Api, fake: FakeLlmServer
) -> None:
    user = await funded(api, 100)
    fake.fail("status", status=429)  # no Retry-After header: RetryInfo in the body

    answer = await api.client.post(GENERATE, json=GEMINI.ask(), headers=user.headers)

    assert_problem(answer, 429, "provider_rate_limited")
    assert answer.headers["Retry-After"] == RETRY_DELAY.removesuffix("s")
