"""Credits and limits hold for calls spread over two API processes at once.

Each process holds credits in its own transactions and counts limits in its own
memory unless Redis is shared: only the database's conditional update makes a balance
hold, and only the shared script makes a per-minute limit one limit for every replica.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import create_async_engine

from promptstack.accounts.credit_models import CreditEntry
from promptstack.accounts.models import User
from tests.conftest import empty_postgres
from tests.fixtures.processes import service_env, two_services
from tests.fixtures.support import PASSWORD

GENERATE = "/api/v1/llm/generate"
# A credit a token; "Hi" is one token and the demo's answer is cut to four, so every call
# holds and costs exactly five credits.
PRICES = json.dumps({"demo/demo": {"prompt": 1_000_000, "completion": 1_000_000}})
ASK = {"prompt": "Hi", "max_tokens": 4}
COST = 5
CALLS = 20
AFFORDABLE = 7
BALANCE = AFFORDABLE * COST + COST - 1
RPM = 4

Clients = tuple[httpx.AsyncClient, httpx.AsyncClient]


async def signed_in(client: httpx.AsyncClient) -> dict[str, str]:
    body = {"email": "caller@example.com", "username": "caller", "password": PASSWORD}
    assert (await client.post("/api/v1/auth/register", json=body)).status_code == 201
    tokens = await client.post(
        "/api/v1/auth/login", data={"username": "caller", "password": PASSWORD}
    )
    return {"Authorization": f"Bearer {tokens.json()['access_token']}"}


async def race(clients: Clients, headers: dict[str, str]) -> Counter[int]:
    async def call(n: int) -> int:
        response = await clients[n % 2].post(GENERATE, json=ASK, headers=headers)
        return response.status_code

    return Counter(await asyncio.gather(*(call(n) for n in range(CALLS))))


async def stored_balance(database_url: str) -> tuple[int, int, int]:
    """The balance, the micro-credits carried, and what the ledger adds up to, as the
    database holds them (a process's /users/me may show its cached copy: without Redis,
    processes do not tell each other of changes)."""
    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as connection:
            credits, micros = (
                await connection.execute(select(User.credits, User.credit_micros))
            ).one()
            total = await connection.scalar(select(func.sum(CreditEntry.delta)))
    finally:
        await engine.dispose()
    return int(credits), int(micros), int(total or 0)


@pytest.fixture
async def services(database_url: str, tmp_path: Path) -> AsyncIterator[Clients]:
    env = service_env(
        database_url,
        tmp_path,
        RATE_LIMIT_ENABLED="false",
        SIGNUP_CREDITS=str(BALANCE),
        LLM_PRICES=PRICES,
    )
    async with two_services(env, tmp_path) as clients:
        yield clients


async def test_calls_across_processes_spend_exactly_the_balance(
    services: Clients, database_url: str
) -> None:
    a, b = services
    headers = await signed_in(a)

    statuses = await race(services, headers)

    assert statuses == Counter({200: AFFORDABLE, 402: CALLS - AFFORDABLE})
    left = BALANCE - AFFORDABLE * COST
    assert await stored_balance(database_url) == (left, 0, left)
    usage = (await b.get("/api/v1/llm/usage", headers=headers)).json()
    assert usage["totals"]["calls"] == AFFORDABLE
    assert usage["totals"]["cost_micros"] == AFFORDABLE * COST * 1_000_000


@pytest.fixture
async def shared_limits(
    postgres_url: str, shared_redis_url: str, cache_namespace: str, tmp_path: Path
) -> AsyncIterator[Clients]:
    await empty_postgres(postgres_url)
    env = service_env(
        postgres_url,
        tmp_path,
        RATE_LIMIT_ENABLED="false",
        REDIS_URL=shared_redis_url,
        CACHE_NAMESPACE=cache_namespace,
        LLM_REQUESTS_PER_MINUTE=str(RPM),
    )
    async with two_services(env, tmp_path) as clients:
        yield clients


async def test_a_per_minute_limit_is_one_limit_for_both_processes(
    shared_limits: Clients,
) -> None:
    headers = await signed_in(shared_limits[0])

    statuses = await race(shared_limits, headers)

    # A bucket of RPM refills one call every 60/RPM seconds: far longer than the race.
    assert statuses == Counter({200: RPM, 429: CALLS - RPM})
