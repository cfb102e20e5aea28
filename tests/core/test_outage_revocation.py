"""A session ended during a Redis outage is refused by every process once Redis is back.

Process A ends a session while Redis hangs, so it cannot delete the cached user that
process B reads. When Redis answers again, A must replay that deletion whichever of its
components notices first: here only A's rate limiter talks to Redis after the outage
(A serves no authenticated request), and it is the call that closes the shared breaker.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from tests.fixtures.processes import service_env, two_services
from tests.fixtures.redis_server import RedisServer
from tests.fixtures.support import PASSWORD, eventually

ME = "/api/v1/users/me"


@pytest.fixture
async def services(
    database_url: str, redis_server: RedisServer, cache_namespace: str, tmp_path: Path
) -> AsyncIterator[tuple[httpx.AsyncClient, httpx.AsyncClient]]:
    env = service_env(
        database_url,
        tmp_path,
        REDIS_URL=redis_server.url,
        REDIS_TIMEOUT_SECONDS="0.2",
        REDIS_RECOVERY_SECONDS="1",
        CACHE_NAMESPACE=cache_namespace,
        # Long enough that expiry cannot be what ends the stale copies.
        CACHE_LOCAL_TTL_SECONDS="600",
        CACHE_USER_TTL_SECONDS="600",
        RATE_LIMIT_BURST="10000",
        RATE_LIMIT_PER_MINUTE="10000",
        AUTH_RATE_LIMIT_PER_MINUTE="10000",
    )
    async with two_services(env, tmp_path) as clients:
        yield clients


async def test_a_session_ended_during_an_outage_is_refused_everywhere_after_it(
    services: tuple[httpx.AsyncClient, httpx.AsyncClient], redis_server: RedisServer
) -> None:
    a, b = services
    body = {"email": "ended@example.com", "username": "ended", "password": PASSWORD}
    assert (await a.post("/api/v1/auth/register", json=body)).status_code == 201
    tokens = (
        await a.post("/api/v1/auth/login", data={"username": "ended", "password": PASSWORD})
    ).json()
    headers = {"Authorization": f"Bearer {tokens['access_token']}"}
    assert (await b.get(ME, headers=headers)).status_code == 200  # cached by B, in Redis too

    async def b_refuses_the_session() -> bool:
        return (await b.get(ME, headers=headers)).status_code == 401

    redis_server.pause()
    try:
        logout = await a.post(
            "/api/v1/auth/logout", json={"refresh_token": tokens["refresh_token"]}, headers=headers
        )
        assert logout.status_code == 204
        # B's own calls time out too and soon open its breaker; from then on it reads
        # the database and refuses the session.
        await eventually(b_refuses_the_session, what="B refusing the session during the outage")
    finally:
        redis_server.resume()

    async def uses_redis_again(service: httpx.AsyncClient) -> bool:
        """The rate limiter answered from Redis: that call closed the process's breaker."""
        answer = await service.get("/api/v1/features")
        return answer.status_code == 200 and "ratelimit-limit" in answer.headers

    await eventually(lambda: uses_redis_again(a), what="A's rate limiter using Redis again")
    await eventually(lambda: uses_redis_again(b), what="B's rate limiter using Redis again")

    await eventually(b_refuses_the_session, within=20, what="B refusing the ended session")
    # And it stays refused: nothing stale is left to come back.
    for _ in range(5):
        assert (await b.get(ME, headers=headers)).status_code == 401
