"""Redis goes away while requests flow, and comes back: nothing fails, caching resumes."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import event

from tests.fixtures.redis_server import RedisServer
from tests.fixtures.support import Api, eventually

ME = "/api/v1/users/me"


@pytest.fixture
def settings_overrides(redis_server: RedisServer, cache_namespace: str) -> dict[str, Any]:
    return {
        "redis_url": redis_server.url,
        "cache_namespace": cache_namespace,
        "redis_recovery_seconds": 0.2,
        "rate_limit_enabled": True,
        "rate_limit_burst": 1000,
        "rate_limit_per_minute": 1000,
        # Every request asks Redis, so the limiter fails open at the first one after the
        # outage begins; spending a lease through an outage is in test_rate_limit_leases.
        "rate_limit_lease": 1,
    }


async def readiness(api: Api) -> dict[str, Any]:
    response = await api.client.get("/health/ready")
    assert response.status_code == 200
    body: dict[str, Any] = response.json()
    return body


async def test_requests_survive_a_redis_outage(api: Api, redis_server: RedisServer) -> None:
    account = await api.user()
    assert (await api.client.get(ME, headers=account.headers)).status_code == 200
    assert (await readiness(api))["status"] == "healthy"

    redis_server.stop()
    answers = [await api.client.get(ME, headers=account.headers) for _ in range(20)]
    assert {a.status_code for a in answers} == {200}
    assert all("ratelimit-limit" not in a.headers for a in answers[1:])  # failed open
    changed = await api.client.patch(ME, json={"full_name": "Offline"}, headers=account.headers)
    assert changed.status_code == 200
    state = await readiness(api)
    assert state["status"] == "degraded"
    assert state["checks"]["cache"]["status"] == "down"
    assert state["checks"]["database"]["status"] == "up"

    redis_server.start()

    async def healthy() -> bool:
        return bool((await readiness(api))["status"] == "healthy")

    await eventually(healthy, what="readiness healthy once the breaker admits a probe")
    me = await api.client.get(ME, headers=account.headers)
    assert me.json()["full_name"] == "Offline"
    assert me.headers["ratelimit-limit"] == "1000"

    queries: list[str] = []
    engine = api.container.database.engine.sync_engine
    event.listen(engine, "before_cursor_execute", lambda *args: queries.append(args[2]))
    await api.client.get(ME, headers=account.headers)
    assert queries == []  # caching resumed
