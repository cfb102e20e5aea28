"""Pooled PostgreSQL connections are checked before use only after sitting idle.

A connection the server dropped while it sat in the pool is replaced before a
transaction sees it; one handed back moments ago is used without a round trip.
"""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import text

from promptstack.core.database import Database
from promptstack.core.settings import Settings

pytestmark = pytest.mark.postgres


def _database(url: str, idle_seconds: float) -> Database:
    return Database(
        Settings(  # type: ignore[call-arg]
            database_url=url,
            database_pool_size=1,
            database_max_overflow=0,
            database_pool_ping_idle_seconds=idle_seconds,
            _env_file=None,
        )
    )


def _count_pings(database: Database, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    pings: list[int] = []
    dialect = database.engine.sync_engine.dialect
    real = dialect.do_ping

    def counted(connection: Any) -> bool:
        pings.append(1)
        return real(connection)

    monkeypatch.setattr(dialect, "do_ping", counted)
    return pings


async def _backend(database: Database) -> int:
    async with database.engine.connect() as connection:
        return int((await connection.execute(text("SELECT pg_backend_pid()"))).scalar_one())


async def test_a_connection_dropped_while_idle_is_replaced(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    database = _database(postgres_url, idle_seconds=0)
    admin = _database(postgres_url, idle_seconds=0)
    pings = _count_pings(database, monkeypatch)
    try:
        first = await _backend(database)  # now idle in the pool
        async with admin.engine.connect() as connection:
            killed = await connection.execute(
                text("SELECT pg_terminate_backend(:pid)"), {"pid": first}
            )
            assert killed.scalar_one() is True
        second = await _backend(database)
    finally:
        await database.engine.dispose()
        await admin.engine.dispose()
    assert second != first
    assert pings


async def test_a_connection_just_handed_back_is_not_pinged(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    database = _database(postgres_url, idle_seconds=3600)
    pings = _count_pings(database, monkeypatch)
    try:
        backends = {await _backend(database) for _ in range(5)}
    finally:
        await database.engine.dispose()
    assert len(backends) == 1
    assert pings == []
