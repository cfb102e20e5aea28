"""Two API processes sharing PostgreSQL and Redis behave as one service.

A change made through one process is read through the other (its first-level cache
dropped by the invalidation message), and a rate limit of N is N for both together.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import empty_postgres
from tests.fixtures.processes import service_env, two_services
from tests.fixtures.support import PASSWORD

LIMIT = 8


@pytest.fixture
async def services(
    postgres_url: str, shared_redis_url: str, cache_namespace: str, tmp_path: Path
) -> AsyncIterator[tuple[httpx.AsyncClient, httpx.AsyncClient]]:
    await empty_postgres(postgres_url)
    env = service_env(
        postgres_url,
        tmp_path,
        REDIS_URL=shared_redis_url,
        CACHE_NAMESPACE=cache_namespace,
        CACHE_LOCAL_TTL_SECONDS="300",
        RATE_LIMIT_BURST=str(LIMIT),
        RATE_LIMIT_PER_MINUTE="1",
        AUTH_RATE_LIMIT_PER_MINUTE="100",
    )
    async with two_services(env, tmp_path) as clients:
        yield clients


async def _login(client: httpx.AsyncClient) -> dict[str, str]:
    body = {"email": "twin@example.com", "username": "twin", "password": PASSWORD}
    assert (await client.post("/api/v1/auth/register", json=body)).status_code == 201
    tokens = await client.post(
        "/api/v1/auth/login", data={"username": "twin", "password": PASSWORD}
    )
    return {"Authorization": f"Bearer {tokens.json()['access_token']}"}


async def test_a_change_through_one_process_is_read_through_the_other(
    services: tuple[httpx.AsyncClient, httpx.AsyncClient],
) -> None:
    a, b = services
    headers = await _login(a)
    assert (await b.get("/api/v1/users/me", headers=headers)).json()["full_name"] is None
    # b now holds the user in its first level, for up to CACHE_LOCAL_TTL_SECONDS (300).

    changed = await a.patch("/api/v1/users/me", json={"full_name": "Changed"}, headers=headers)
    assert changed.status_code == 200

    for _ in range(100):
        seen = (await b.get("/api/v1/users/me", headers=headers)).json()["full_name"]
        if seen == "Changed":
            break
        await asyncio.sleep(0.01)  # the invalidation message is in flight
    assert seen == "Changed"


async def test_a_limit_of_n_is_n_across_both_processes(
    services: tuple[httpx.AsyncClient, httpx.AsyncClient],
) -> None:
    a, b = services
    headers = await _login(a)
    answers = [
        await (a if n % 2 else b).get("/api/v1/features", headers=headers) for n in range(2 * LIMIT)
    ]
    assert sum(r.status_code == 200 for r in answers) == LIMIT
    assert {r.status_code for r in answers[LIMIT:]} == {429}
    assert answers[0].headers["ratelimit-limit"] == str(LIMIT)
