"""The migrations build exactly the schema the models describe, on SQLite and PostgreSQL.

`database_url` is migrated to head by the suite's set-up; on PostgreSQL it is the
per-worker database the other tests use, so a test that moves it away from head puts it
back before it ends.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, inspect, select, text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

import promptstack.tables  # noqa: F401  (registers every table on the metadata)
from promptstack.accounts.service import NewAccount
from promptstack.bootstrap import bootstrap
from promptstack.core.database import NAMING_CONVENTION, Base
from promptstack.migrations.runner import alembic_config, compared
from tests.conftest import make_settings
from tests.fixtures.support import PASSWORD

APP_TABLES = {table.name for table in Base.metadata.sorted_tables}


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    built = create_async_engine(database_url)
    yield built
    await built.dispose()


def _head() -> str:
    head = ScriptDirectory.from_config(alembic_config("unused")).get_current_head()
    assert head is not None
    return head


async def _alembic(database_url: str, name: str, revision: str) -> None:
    """Run an Alembic command; in a thread, since the environment runs its own event loop."""
    run = getattr(command, name)
    await asyncio.to_thread(run, alembic_config(database_url), revision)


def _differences(connection: Connection) -> list[Any]:
    context = MigrationContext.configure(
        connection=connection,
        opts={
            "compare_type": True,
            "target_metadata": Base.metadata,
            "include_name": compared,
        },
    )
    return list(compare_metadata(context, Base.metadata))


def _state(connection: Connection) -> tuple[set[str], str | None]:
    tables = {name for name in inspect(connection).get_table_names() if compared(name, "table", {})}
    return tables, MigrationContext.configure(connection).get_current_revision()


async def test_the_migrated_schema_matches_the_models(engine: AsyncEngine) -> None:
    async with engine.connect() as connection:
        differences = await connection.run_sync(_differences)
        tables, revision = await connection.run_sync(_state)
    assert differences == [], "models and migrations differ; add a migration"
    assert tables == APP_TABLES | {"alembic_version"}
    assert revision == _head()


async def test_downgrade_to_base_then_upgrade_again(database_url: str, engine: AsyncEngine) -> None:
    try:
        await _alembic(database_url, "downgrade", "base")
        async with engine.connect() as connection:
            tables, revision = await connection.run_sync(_state)
        assert tables & APP_TABLES == set()
        assert revision is None
    finally:
        await _alembic(database_url, "upgrade", "head")

    async with engine.connect() as connection:
        tables, revision = await connection.run_sync(_state)
        differences = await connection.run_sync(_differences)
    assert tables == APP_TABLES | {"alembic_version"}
    assert revision == _head()
    assert differences == []


async def test_upgrade_is_idempotent_at_head(database_url: str, engine: AsyncEngine) -> None:
    await _alembic(database_url, "upgrade", "head")
    async with engine.connect() as connection:
        tables, revision = await connection.run_sync(_state)
        versions = (await connection.execute(text("SELECT version_num FROM alembic_version"))).all()
    assert revision == _head()
    assert versions == [(_head(),)]
    assert tables == APP_TABLES | {"alembic_version"}


async def test_accounts_from_before_beta_testing_are_not_beta_testers(
    database_url: str, engine: AsyncEngine, tmp_path: Path
) -> None:
    container = bootstrap(make_settings(database_url, tmp_path))
    try:
        await container.accounts.service.register(
            NewAccount(email="early@example.com", username="early-bird", password=PASSWORD)
        )
    finally:
        await container.aclose()
    try:
        await _alembic(database_url, "downgrade", "0001")
    finally:
        await _alembic(database_url, "upgrade", "head")

    async with engine.connect() as connection:
        rows = (await connection.execute(text("SELECT username, is_beta_tester FROM users"))).all()
    assert [(name, bool(beta)) for name, beta in rows] == [("early-bird", False)]


async def test_a_fresh_sqlite_file_is_created_and_migrated(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "fresh.db"
    path.parent.mkdir()
    url = f"sqlite+aiosqlite:///{path}"
    await _alembic(url, "upgrade", "head")
    assert path.exists()
    engine = create_async_engine(url)
    try:
        async with engine.connect() as connection:
            assert await connection.run_sync(_differences) == []
    finally:
        await engine.dispose()


def _constraint_names(connection: Connection) -> dict[str, list[tuple[str, str, str | None]]]:
    """Per table: (kind, its columns, its name) of every constraint and index in the database."""
    inspector = inspect(connection)
    found: dict[str, list[tuple[str, str, str | None]]] = {}
    for table in sorted(APP_TABLES):
        items: list[tuple[str, str, str | None]] = []
        pk = inspector.get_pk_constraint(table)
        # SQLite's AUTOINCREMENT exists only on a column's own, unnamed, primary key.
        autoincrement = connection.dialect.name == "sqlite" and Base.metadata.tables[
            table
        ].kwargs.get("sqlite_autoincrement")
        pk_name = f"pk_{table}" if autoincrement and pk["name"] is None else pk["name"]
        items.append(("pk", ",".join(pk["constrained_columns"]), pk_name))
        items += [
            ("uq", ",".join(uq["column_names"]), uq["name"])
            for uq in inspector.get_unique_constraints(table)
        ]
        items += [
            ("fk", ",".join(fk["constrained_columns"]), fk["name"])
            for fk in inspector.get_foreign_keys(table)
        ]
        items += [
            ("ck", ck["sqltext"], ck["name"]) for ck in inspector.get_check_constraints(table)
        ]
        for index in inspector.get_indexes(table):
            # PostgreSQL lists the index behind each unique constraint too, under its name.
            kind = "uq" if index.get("duplicates_constraint") else "ix"
            columns = ",".join(str(c) for c in index["column_names"])
            items.append((kind, columns, index["name"]))
        found[table] = items
    return found


async def test_constraint_and_index_names_follow_the_naming_convention(
    engine: AsyncEngine,
) -> None:
    async with engine.connect() as connection:
        found = await connection.run_sync(_constraint_names)

    assert set(NAMING_CONVENTION) == {"pk", "uq", "ix", "fk", "ck"}
    misnamed = [
        (table, kind, columns, name)
        for table, items in found.items()
        for kind, columns, name in items
        if name is None or (not name.startswith(f"{kind}_{table}_") and name != f"pk_{table}")
    ]
    assert misnamed == []
    for table, items in found.items():
        assert any(kind == "pk" and name == f"pk_{table}" for kind, _, name in items), table
    kinds = {kind for items in found.values() for kind, _, _ in items}
    assert kinds == {"pk", "uq", "fk", "ck", "ix"}  # the check above covered every kind
    assert ("fk", "user_id", "fk_refresh_tokens_user_id_users") in found["refresh_tokens"]
    assert ("uq", "email_key", "uq_users_email_key") in found["users"]
    assert {name for kind, _, name in found["users"] if kind == "ck"} == {
        "ck_users_credits_not_negative",
        "ck_users_credit_micros_under_a_credit",
        "ck_users_role",
        "ck_users_tier",
    }


async def test_email_keys_are_recomputed_oldest_account_first(
    database_url: str, engine: AsyncEngine
) -> None:
    """Keys from before 0005 (the domain in Unicode, compatibility letters kept) move to
    the new form; one the new rules refuse, or whose new key is taken, stays as it was."""
    users = Base.metadata.tables["users"]
    start = datetime(2026, 1, 1, tzinfo=UTC)
    twin = "\uff53am@example.com"  # a fullwidth s
    old_keys = {
        "plain": ("sam@example.com", "sam@example.com"),
        "idn": ("user@bücher.de", "user@bücher.de"),
        "fullwidth twin": (twin, twin),
        "refused": ("jürgen@example.com", "jürgen@example.com"),
    }
    try:
        await _alembic(database_url, "downgrade", "0004")
        async with engine.begin() as connection:
            for n, (name, (email, key)) in enumerate(old_keys.items()):
                await connection.execute(
                    users.insert().values(
                        id=uuid.uuid4(),
                        email=email,
                        email_key=key,
                        username=f"u{n}",
                        username_key=f"u{n}",
                        search_key=name,
                        password_hash="x",
                        role="user",
                        tier="free",
                        is_active=True,
                        is_verified=False,
                        credits=0,
                        session_version=0,
                        created_at=start + timedelta(minutes=n),
                        updated_at=start,
                    )
                )
    finally:
        await _alembic(database_url, "upgrade", "head")

    async with engine.connect() as connection:
        keys = dict((await connection.execute(select(users.c.search_key, users.c.email_key))).all())
    assert keys == {
        "plain": "sam@example.com",
        "idn": "user@xn--bcher-kva.de",
        "fullwidth twin": twin,  # its new key is the older account's
        "refused": "jürgen@example.com",
    }
