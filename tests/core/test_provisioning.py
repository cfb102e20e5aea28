"""Whole databases made and dropped for a fresh start: names are checked before any SQL."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from promptstack.core.provisioning import (
    ProvisioningError,
    create_database,
    database_url,
    drop_database,
    ensure_database,
)
from tests.conftest import POSTGRES_ADMIN_DSN, _worker_database_name


@pytest.mark.parametrize(
    "name",
    ['x"; DROP DATABASE test; --', "Upper", "with space", "", "9starts_with_digit", "a" * 64],
)
async def test_a_name_that_is_not_plain_is_refused_before_connecting(name: str) -> None:
    with pytest.raises(ProvisioningError, match="not a plain database name"):
        await create_database("postgresql://nobody@127.0.0.1:1/none", name)


def test_only_postgresql_urls_are_accepted() -> None:
    with pytest.raises(ProvisioningError, match="not a PostgreSQL URL"):
        database_url("sqlite+aiosqlite:///x.db", "other")


def test_the_url_keeps_the_server_and_credentials_and_names_the_database() -> None:
    url = database_url("postgresql://app:s3cret@db.internal:6432/postgres?ssl=require", "shop")

    assert url == "postgresql+asyncpg://app:s3cret@db.internal:6432/shop?ssl=require"


async def public_tables(url: str) -> int:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as connection:
            query = "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"
            return int(await connection.scalar(text(query)) or 0)
    finally:
        await engine.dispose()


@pytest.mark.postgres
async def test_a_database_is_created_replaced_and_dropped(postgres_url: str) -> None:
    name = f"{_worker_database_name()}_made"
    url = await create_database(POSTGRES_ADMIN_DSN, name, replace=True)
    engine = create_async_engine(url)
    async with engine.begin() as connection:
        await connection.execute(text("CREATE TABLE left_behind (id int)"))
    await engine.dispose()

    replaced = await create_database(POSTGRES_ADMIN_DSN, name, replace=True)
    tables = await public_tables(replaced)
    await drop_database(POSTGRES_ADMIN_DSN, name)
    await drop_database(POSTGRES_ADMIN_DSN, name)  # gone already: not an error

    assert (replaced, tables) == (url, 0)
    with pytest.raises(Exception, match="does not exist"):
        await public_tables(url)


@pytest.mark.postgres
async def test_ensuring_a_database_from_many_callers_at_once_creates_it_once(
    postgres_url: str,
) -> None:
    name = f"{_worker_database_name()}_ensured"
    await drop_database(POSTGRES_ADMIN_DSN, name)
    try:
        created = await asyncio.gather(
            *(ensure_database(POSTGRES_ADMIN_DSN, name) for _ in range(6))
        )
        again = await ensure_database(POSTGRES_ADMIN_DSN, name)
        tables = await public_tables(database_url(POSTGRES_ADMIN_DSN, name))
    finally:
        await drop_database(POSTGRES_ADMIN_DSN, name)

    assert sorted(created) == [False] * 5 + [True]
    assert (again, tables) == (False, 0)
