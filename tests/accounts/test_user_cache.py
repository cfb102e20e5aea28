"""Authentication reads the caller from the cache: a hit costs no query, a write invalidates.

Each test runs embedded (in-process cache) and with Redis as the shared level.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import event

from promptstack.bootstrap import Container
from tests.fixtures.support import Api, assert_problem

ME = "/api/v1/users/me"


@pytest.fixture(params=["local", "redis"])
def settings_overrides(request: pytest.FixtureRequest, cache_namespace: str) -> dict[str, Any]:
    if request.param == "local":
        return {}
    url: str = request.getfixturevalue("shared_redis_url")
    return {"redis_url": url, "cache_namespace": cache_namespace}


@contextmanager
def counted_queries(container: Container) -> Iterator[list[str]]:
    statements: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement)

    engine = container.database.engine.sync_engine
    event.listen(engine, "before_cursor_execute", record)
    try:
        yield statements
    finally:
        event.remove(engine, "before_cursor_execute", record)


async def test_a_cached_caller_costs_no_query(api: Api) -> None:
    account = await api.user()
    first = await api.client.get(ME, headers=account.headers)
    assert first.status_code == 200
    with counted_queries(api.container) as statements:
        again = await api.client.get(ME, headers=account.headers)
    assert again.json() == first.json()
    assert statements == []


async def test_a_profile_change_is_seen_at_once(api: Api) -> None:
    account = await api.user()
    await api.client.get(ME, headers=account.headers)
    await api.client.patch(ME, json={"full_name": "Renamed"}, headers=account.headers)
    assert (await api.client.get(ME, headers=account.headers)).json()["full_name"] == "Renamed"


async def test_deactivation_takes_effect_despite_the_cache(api: Api) -> None:
    account = await api.user()
    admin = await api.admin()
    assert (await api.client.get(ME, headers=account.headers)).status_code == 200
    await api.client.patch(
        f"/api/v1/users/{account.id}", json={"is_active": False}, headers=admin.headers
    )
    assert_problem(await api.client.get(ME, headers=account.headers), 401)


async def test_cache_lookups_are_counted(api: Api) -> None:
    account = await api.user()
    for _ in range(3):
        await api.client.get(ME, headers=account.headers)
    text = (await api.client.get("/metrics")).text
    assert 'promptstack_cache_requests_total{cache="users",result="hit"}' in text
    assert 'promptstack_cache_requests_total{cache="users",result="miss"}' in text
