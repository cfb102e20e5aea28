"""The login lockout holds for guesses spread over two API processes at once.

Each process verifies passwords in its own threads; only the database can make the
count hold, so this runs on the SQLite file and on PostgreSQL that both processes share.
"""

from __future__ import annotations

import asyncio
import secrets
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from tests.processes import ServiceProcess
from tests.support import PASSWORD

LIMIT = 4
LOGIN = "/api/v1/auth/login"


@pytest.fixture
async def two_services(
    database_url: str, tmp_path: Path
) -> AsyncIterator[tuple[httpx.AsyncClient, httpx.AsyncClient]]:
    env = {
        "DATABASE_URL": database_url,
        "SECRET_KEY": secrets.token_urlsafe(48),
        "PASSWORD_HASH_TIME_COST": "1",
        "PASSWORD_HASH_MEMORY_COST": "64",
        "PASSWORD_HASH_PARALLELISM": "1",
        "RATE_LIMIT_ENABLED": "false",
        "LOGIN_MAX_FAILURES_PER_ACCOUNT": str(LIMIT),
        "EMAIL_BACKEND": "maildir",
        "MAILDIR_PATH": str(tmp_path / "mail"),
        "LOG_LEVEL": "WARNING",
    }
    processes = [ServiceProcess(env, tmp_path) for _ in range(2)]
    try:
        for process in processes:
            process.wait_ready()
        async with (
            httpx.AsyncClient(base_url=processes[0].base_url, timeout=30) as a,
            httpx.AsyncClient(base_url=processes[1].base_url, timeout=30) as b,
        ):
            yield a, b
    finally:
        for process in processes:
            process.stop()


async def test_guesses_across_processes_verify_at_most_the_limit(
    two_services: tuple[httpx.AsyncClient, httpx.AsyncClient],
) -> None:
    a, b = two_services
    body = {"email": "target@example.com", "username": "target", "password": PASSWORD}
    assert (await a.post("/api/v1/auth/register", json=body)).status_code == 201
    passwords = ["wrong password!"] * 19
    passwords.insert(7, PASSWORD)

    async def guess(n: int, password: str) -> int:
        client = (a, b)[n % 2]
        response = await client.post(LOGIN, data={"username": "target", "password": password})
        return response.status_code

    statuses = Counter(await asyncio.gather(*(guess(n, p) for n, p in enumerate(passwords))))

    # Every 401 and 200 is a verified guess; a 429 was refused before any verification.
    assert statuses[401] + statuses[200] <= LIMIT
    assert statuses[429] >= 20 - LIMIT
    assert set(statuses) <= {200, 401, 429}
