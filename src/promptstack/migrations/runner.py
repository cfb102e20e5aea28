"""Running migrations from code: the CLI, `serve` on first start, and the tests."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from functools import cache

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.ext.asyncio import AsyncEngine

from promptstack.core.database import Base
from promptstack.core.settings import Settings


def alembic_config(database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", "promptstack:migrations")
    config.attributes["database_url"] = database_url
    return config


def upgrade(settings: Settings, revision: str = "head") -> None:
    """Migrate to `revision`; callable from inside a running event loop too."""
    config = alembic_config(settings.database_url)
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        command.upgrade(config, revision)
        return
    # The migration environment runs its own event loop, which cannot nest in this one.
    with ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(command.upgrade, config, revision).result()


def compared(name: str | None, type_: str, parent_names: object) -> bool:
    """Whether autogenerate and the schema test compare this table, column or index:
    not the ones a migration makes by hand for one database (an FTS5 table and its
    shadow tables, a generated column), which models name in `unmapped_prefixes`, and
    not SQLite's own (`sqlite_sequence`)."""
    prefixes: set[str] = Base.metadata.info.get("unmapped_prefixes", set())
    return name is None or not name.startswith(("sqlite_", *prefixes))


@cache
def head_revision() -> str | None:
    """The latest migration this version of the code ships."""
    return ScriptDirectory.from_config(alembic_config("")).get_current_head()


async def schema_problem(engine: AsyncEngine) -> str | None:
    """Why the schema behind `engine` is not the one this code needs, or None.

    A schema behind the code fails on the first query that touches what is missing; one
    ahead of it (the code rolled back, the database not) may fail anywhere. Both are said
    before serving, and by readiness while serving.
    """
    async with engine.connect() as connection:
        current = await connection.run_sync(
            lambda sync: MigrationContext.configure(sync).get_current_revision()
        )
    head = head_revision()
    if current == head:
        return None
    if current is None:
        return "the database has no schema yet: run `promptstack migrate`"
    return (
        f"the database schema is at revision {current}, this version needs {head}: "
        "run `promptstack migrate` (or deploy the version that matches it)"
    )
