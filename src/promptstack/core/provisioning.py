"""Creating and dropping whole PostgreSQL databases.

A fresh database per test run or benchmark, and `promptstack migrate --create-database`
for a first start, all go through here, so the name is checked and quoted in one place.
`CREATE DATABASE` cannot run inside a transaction: the statements run on an AUTOCOMMIT
connection to the server's maintenance database given by `server_url`.
"""

from __future__ import annotations

import re

from sqlalchemy import text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from promptstack.core.diagnostics import sqlstate

# Plain names only: no quoting tricks, and short enough that PostgreSQL keeps them whole.
DATABASE_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")
# Losing a race to CREATE the same database: duplicate_database when the other has
# committed, or a unique violation on the catalogue while it is still committing.
_ALREADY_MADE = {"42P04", "23505"}


class ProvisioningError(Exception):
    """The database could not be created or dropped; the message says why."""


def async_url(url: str | URL) -> URL:
    """`url` with the asyncpg driver, whichever PostgreSQL driver it named."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "postgresql":
        raise ProvisioningError(f"not a PostgreSQL URL: {parsed.render_as_string()}")
    return parsed.set(drivername="postgresql+asyncpg")


def database_url(server_url: str | URL, name: str) -> str:
    """The URL of database `name` on the server of `server_url`, password included."""
    return async_url(server_url).set(database=name).render_as_string(hide_password=False)


def _checked(name: str) -> str:
    if not DATABASE_NAME.fullmatch(name):
        raise ProvisioningError(f"{name!r} is not a plain database name (a-z, 0-9, _)")
    return f'"{name}"'


def _maintenance_engine(server_url: str | URL) -> AsyncEngine:
    return create_async_engine(
        async_url(server_url), isolation_level="AUTOCOMMIT", connect_args={"timeout": 10}
    )


async def _run(server_url: str | URL, *statements: str) -> None:
    engine = _maintenance_engine(server_url)
    try:
        async with engine.connect() as connection:
            for statement in statements:
                await connection.execute(text(statement))
    finally:
        await engine.dispose()


async def create_database(server_url: str | URL, name: str, *, replace: bool = False) -> str:
    """Create database `name` and return its URL; with `replace`, drop it first."""
    quoted = _checked(name)
    statements = [f"CREATE DATABASE {quoted}"]
    if replace:
        statements.insert(0, f"DROP DATABASE IF EXISTS {quoted} WITH (FORCE)")
    await _run(server_url, *statements)
    return database_url(server_url, name)


async def ensure_database(server_url: str | URL, name: str) -> bool:
    """Create database `name` unless it exists; whether this call created it.

    Two callers at once (two `migrate --create-database` in a rollout) both see it
    missing; the one whose CREATE loses the race finds it made and is content.
    """
    quoted = _checked(name)
    engine = _maintenance_engine(server_url)
    try:
        async with engine.connect() as connection:
            exists = await connection.scalar(
                text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": name}
            )
            if exists:
                return False
            try:
                await connection.execute(text(f"CREATE DATABASE {quoted}"))
            except DBAPIError as exc:
                if sqlstate(exc) not in _ALREADY_MADE:
                    raise
                return False
            return True
    finally:
        await engine.dispose()


async def drop_database(server_url: str | URL, name: str) -> None:
    """Drop database `name` if it exists; FORCE ends the sessions still connected to it."""
    await _run(server_url, f"DROP DATABASE IF EXISTS {_checked(name)} WITH (FORCE)")
