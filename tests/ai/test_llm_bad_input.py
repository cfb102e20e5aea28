"""Bad input at the LLM routes: a 4xx problem document, never a 500, nothing written."""

from __future__ import annotations

import pytest

from tests.fixtures.bad_input import (
    MEGABYTE,
    Authorization,
    Endpoint,
    JsonBodies,
    Listing,
    Listings,
    assert_invalid,
    encode,
    stored_state,
)
from tests.fixtures.support import Api, assert_problem

COUNT = Endpoint(
    "count-tokens",
    "POST",
    "/llm/count-tokens",
    "user",
    lambda s: {"text": "How many tokens?"},
    required=("text",),
    text=("text",),
    long=("text",),
    nullable=("model",),
    bad_values=[
        ("text", "x" * 1_000_001),
        ("model", ""),
        ("model", "m" * 129),
        ("model", 4),
        ("model", "MEGA" + MEGABYTE[:100_000]),
    ],
)
GENERATE = Endpoint(
    "generate",
    "POST",
    "/llm/generate",
    "user",
    lambda s: {"prompt": "What is a saga?", "max_tokens": 10},
    required=("prompt",),
    text=("prompt", "provider", "model"),
    long=("prompt",),
    nullable=("provider", "model", "max_tokens", "temperature"),
    bad_values=[
        ("prompt", ""),
        ("prompt", "x" * 1_000_001),
        ("provider", ""),
        ("provider", "p" * 33),
        ("model", ""),
        ("max_tokens", 0),
        ("max_tokens", -1),
        ("max_tokens", 1_000_001),
        ("max_tokens", 10**30),
        ("max_tokens", 1.5),
        ("max_tokens", "10"),
        ("max_tokens", True),
        ("temperature", -0.1),
        ("temperature", 2.5),
        ("temperature", "hot"),
        ("temperature", float("inf")),
    ],
)
PROVIDERS = Endpoint("providers", "GET", "/llm/providers", "user")


WINDOWS = (
    {"since": "yesterday"},
    {"until": "1767225600"},
    {"since": "2026-01-01T00:00:00"},
    {"since": "2026-02-01T00:00:00Z", "until": "2026-01-01T00:00:00Z"},
    {"since": "2020-01-01T00:00:00Z", "until": "2026-01-01T00:00:00Z"},
    {"since": MEGABYTE[:5000]},
)


class TestLlmBadInput(JsonBodies, Listings, Authorization):
    endpoints = (COUNT, GENERATE, PROVIDERS)
    listings = (Listing("/llm/usage", "user", WINDOWS),)


SUITE = TestLlmBadInput()


async def test_the_longest_text_is_counted(api: Api) -> None:
    scene = await SUITE.scene(api, "user")

    response = await COUNT.send(scene, encode({"text": "a " * 500_000}))

    assert response.status_code == 200, response.text
    assert response.json()["tokens"] > 0
    assert await stored_state(api) == scene.before


async def test_an_unknown_provider_in_a_preference_is_refused_where_it_is_set(api: Api) -> None:
    scene = await SUITE.scene(api, "user")

    response = await api.client.patch(
        "/api/v1/users/me", json={"preferred_provider": "skynet"}, headers=scene.caller.headers
    )

    assert_invalid(response, ["body", "preferred_provider"])


@pytest.mark.parametrize("window", WINDOWS, ids=str)
async def test_the_administrators_report_refuses_a_bad_window(
    api: Api, window: dict[str, str]
) -> None:
    admin = await api.admin()

    response = await api.client.get("/api/v1/admin/llm/usage", params=window, headers=admin.headers)

    assert_problem(response, 422)
