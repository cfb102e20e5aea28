"""The `openai_compatible` provider against a real server (vLLM, Ollama, llama.cpp's
server), when one is named: `TEST_OPENAI_COMPATIBLE_BASE_URL` (such as
`http://127.0.0.1:11434/v1` for Ollama) and `TEST_OPENAI_COMPATIBLE_MODEL` (such as
`llama3.2:1b`), with `TEST_OPENAI_COMPATIBLE_API_KEY` if it wants one.

Skipped without them, CI included: such a server and its model weights are the
operator's, not part of what this suite needs. The fake server of the same protocol
(`test_provider_contract.py`) proves the adapter everywhere else; this proves that a
real server's answers, streams and usage read as the fake's do.
"""

from __future__ import annotations

import os
from typing import Any

import pytest

from promptstack.ai.llm.models import Outcome
from tests.ai.test_llm_generate import calls_of, funded
from tests.ai.test_llm_streaming import parse, streamed
from tests.fixtures.support import Api

BASE_URL = os.environ.get("TEST_OPENAI_COMPATIBLE_BASE_URL")
MODEL = os.environ.get("TEST_OPENAI_COMPATIBLE_MODEL")
KEY = os.environ.get("TEST_OPENAI_COMPATIBLE_API_KEY")
ASK = {"prompt": "Say hello in one word.", "provider": "openai_compatible", "max_tokens": 16}

pytestmark = [
    pytest.mark.adapter_only,
    pytest.mark.skipif(
        not (BASE_URL and MODEL),
        reason="no real OpenAI-compatible server named (TEST_OPENAI_COMPATIBLE_BASE_URL "
        "and TEST_OPENAI_COMPATIBLE_MODEL)",
    ),
]


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {
        "openai_compatible_base_url": BASE_URL,
        "openai_compatible_models": MODEL,
        "openai_compatible_api_key": KEY,
        "llm_prices": {f"openai_compatible/{MODEL}": {"prompt": 0, "completion": 0}},
        "llm_timeout_seconds": 120,
    }


async def test_a_real_server_answers_with_its_usage(api: Api) -> None:
    user = await funded(api, 10)

    answer = await api.client.post("/api/v1/llm/generate", json=ASK, headers=user.headers)

    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["text"].strip()
    assert body["provider"] == "openai_compatible"
    assert body["prompt_tokens"] > 0
    assert 0 < body["completion_tokens"] <= ASK["max_tokens"]
    [call] = await calls_of(api, user)
    assert call.outcome == Outcome.SUCCESS


async def test_a_real_server_streams(api: Api) -> None:
    user = await funded(api, 10)

    status, _, body = await streamed(api, user.headers, **ASK)

    assert status == 200
    events = parse(body)
    assert [name for name, _ in events][-2:] == ["usage", "done"]
    assert "".join(data["text"] for name, data in events if name == "delta").strip()
