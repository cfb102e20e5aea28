"""GET /llm/providers and POST /llm/count-tokens: what the gateway offers, and counts."""

from __future__ import annotations

from typing import Any

import pytest

from tests.fixtures.support import Api, assert_problem

LLM = "/api/v1/llm"


async def test_the_demo_provider_is_listed_available_and_default(api: Api) -> None:
    user = await api.user()

    listed = await api.client.get(f"{LLM}/providers", headers=user.headers)

    assert listed.status_code == 200, listed.text
    demo, *others = listed.json()["providers"]
    assert demo == {
        "name": "demo",
        "available": True,
        "default": True,
        "models": [{"id": "demo", "context_window": 16384, "max_output_tokens": 4096}],
    }
    # The others are listed with their models, but none has its key or base URL here.
    assert {p["name"] for p in others} == {"openai", "openai_compatible", "anthropic", "gemini"}
    assert not any(p["available"] or p["default"] for p in others)


async def test_tokens_are_counted_for_the_default_model_or_the_one_named(api: Api) -> None:
    user = await api.user()

    default = await api.client.post(
        f"{LLM}/count-tokens", json={"text": "hello world"}, headers=user.headers
    )
    named = await api.client.post(
        f"{LLM}/count-tokens", json={"text": "", "model": "demo"}, headers=user.headers
    )

    assert default.json() == {
        "tokens": 2,
        "exact": True,
        "encoding": "cl100k_base",
        "model": "demo",
    }
    assert named.json()["tokens"] == 0


async def test_a_model_no_provider_offers_is_a_422_naming_the_field(api: Api) -> None:
    user = await api.user()

    response = await api.client.post(
        f"{LLM}/count-tokens", json={"text": "hi", "model": "gpt-5"}, headers=user.headers
    )

    body = assert_problem(response, 422, "unknown_model")
    assert body["errors"][0]["loc"] == ["body", "model"]


async def test_a_preferred_provider_that_cannot_serve_is_refused_naming_the_available(
    api: Api,
) -> None:
    user = await api.user()
    changed = await api.client.patch(
        "/api/v1/users/me", json={"preferred_provider": "anthropic"}, headers=user.headers
    )
    assert changed.status_code == 200, changed.text

    response = await api.client.post(
        f"{LLM}/count-tokens", json={"text": "hi"}, headers=user.headers
    )

    body = assert_problem(response, 422, "provider_not_available")
    assert body["errors"][0]["loc"] == ["user", "preferred_provider"]
    assert "available: demo" in body["detail"]


async def test_the_endpoints_need_a_user(api: Api) -> None:
    listed = await api.client.get(f"{LLM}/providers")
    counted = await api.client.post(f"{LLM}/count-tokens", json={"text": "hi"})

    assert_problem(listed, 401, "not_authenticated")
    assert_problem(counted, 401, "not_authenticated")


class TestTheAiChatFlag:
    @pytest.fixture
    def settings_overrides(self) -> dict[str, Any]:
        return {"feature_flags": {"ai_chat": {"enabled": False}}}

    async def test_switched_off_it_closes_the_endpoints(self, api: Api) -> None:
        user = await api.user()

        listed = await api.client.get(f"{LLM}/providers", headers=user.headers)
        counted = await api.client.post(
            f"{LLM}/count-tokens", json={"text": "hi"}, headers=user.headers
        )

        assert_problem(listed, 403, "feature_disabled")
        assert_problem(counted, 403, "feature_disabled")
