"""The login lockout holds for guesses spread over two API processes at once.

Each process verifies passwords in its own threads; only the database can make the
count hold, so this runs on the SQLite file and on PostgreSQL that both processes share.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from tests.fixtures.processes import service_env, two_services
from tests.fixtures.support import PASSWORD

LIMIT = 4
LOGIN = "/api/v1/auth/login"


@pytest.fixture
async def services(
    database_url: str, tmp_path: Path
) -> AsyncIterator[tuple[httpx.AsyncClient, httpx.AsyncClient]]:
    env = service_env(
        database_url,
        tmp_path,
        RATE_LIMIT_ENABLED="false",
        LOGIN_MAX_FAILURES_PER_ACCOUNT=str(LIMIT),
    )
    async with two_services(env, tmp_path) as clients:
        yield clients


async def test_guesses_across_processes_verify_at_most_the_limit(
    services: tuple[httpx.AsyncClient, httpx.AsyncClient],
) -> None:
    a, b = services
    body = {"email": "target@example.com", "username": "target", "password": PASSWORD}
    assert (await a.post("/api/v1/auth/register", json=body)).status_code == 201
    passwords = ["wrong password!"] * 19
    passwords.insert(7, PASSWORD)

    async def guess(n: int, password: str) -> int:
        client = (a, b)[n % 2]
        response = await client.post(LOGIN, data={"username": "target", "password": password})
        return response.status_code

    statuses = Counter(await asyncio.gather(*(guess(n, p) for n, p in enumerate(passwords))))

    # A 401 is a wrong password verified, a 429 a guess refused before any verification.
    # The right password gives its place back when it succeeds, which may let one more
    # guess be verified; wrong ones never exceed the limit.
    assert statuses[401] <= LIMIT
    assert statuses[200] <= 1
    assert statuses[429] == 20 - statuses[401] - statuses[200]
    assert set(statuses) <= {200, 401, 429}
