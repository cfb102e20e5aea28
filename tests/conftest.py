"""Fixtures shared by the whole suite.

Database tests run once on SQLite and once on PostgreSQL. Each test gets a database of
its own state: a fresh copy of a migrated SQLite file, or the per-worker PostgreSQL
database emptied before it starts. Without a reachable PostgreSQL those runs skip,
except under CI=true, where they fail.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import create_async_engine

import promptstack.tables  # noqa: F401
from promptstack.bootstrap import Container, bootstrap
from promptstack.core.clock import FrozenClock
from promptstack.core.database import Base
from promptstack.core.provisioning import create_database, drop_database
from promptstack.core.settings import Settings
from promptstack.main import create_app
from promptstack.migrations.runner import upgrade
from tests.fixtures.amqp import AMQP_TEST_URL, broker_error
from tests.fixtures.documents import WordHashEmbedder
from tests.fixtures.pgvector_server import pgvector_url  # noqa: F401  (a shared fixture)
from tests.fixtures.redis_server import RedisServer
from tests.fixtures.support import Api

IN_CI = os.environ.get("CI", "").lower() == "true"
# The backends on a database server (PostgreSQL, and PostgreSQL with pgvector).
SERVERS = ("postgres", "pgvector")
POSTGRES_ADMIN_DSN = os.environ.get(
    "TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test"
)
REDIS_TEST_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


# One name per run and worker: two runs on one machine (two checkouts, say) must never
# drop each other's databases. xdist hands every worker of a run the same run id.
_RUN_ID = os.environ.get("PYTEST_XDIST_TESTRUNUID") or uuid.uuid4().hex


def _worker_database_name() -> str:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    run = re.sub(r"[^a-z0-9]", "", _RUN_ID.lower())[:12]
    return f"promptstack_test_{run}_{re.sub(r'[^a-z0-9_]', '_', worker.lower())}"


def unavailable(reason: str) -> None:
    """Skip a test that needs a server this machine lacks; under CI that is a failure."""
    if IN_CI:
        pytest.fail(f"{reason} (required when CI=true)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    name = _worker_database_name()
    try:
        url = asyncio.run(create_database(POSTGRES_ADMIN_DSN, name))
    except (OSError, TimeoutError, SQLAlchemyError) as exc:
        unavailable(f"PostgreSQL is not reachable at {POSTGRES_ADMIN_DSN}: {exc}")
    try:
        upgrade(Settings(database_url=url, _env_file=None))  # type: ignore[call-arg]
        yield url
    finally:
        asyncio.run(drop_database(POSTGRES_ADMIN_DSN, name))


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sqlite") / "template.db"
    upgrade(Settings(database_url=f"sqlite+aiosqlite:///{path}", _env_file=None))  # type: ignore[call-arg]
    return path


async def empty_postgres(url: str) -> None:
    engine = create_async_engine(url)
    tables = ", ".join(f'"{table.name}"' for table in Base.metadata.sorted_tables)
    async with engine.begin() as connection:
        await connection.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    await engine.dispose()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Run `input_only` and `adapter_only` tests on one backend: the other would repeat
    what the first proves."""
    keep, drop = [], []
    for item in items:
        callspec = getattr(item, "callspec", None)
        on_postgres = callspec is not None and callspec.params.get("backend") in SERVERS
        one = item.get_closest_marker("input_only") or item.get_closest_marker("adapter_only")
        (drop if on_postgres and one else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def database_url(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if backend == "postgres":
        url: str = request.getfixturevalue("postgres_url")
        asyncio.run(empty_postgres(url))
        return url
    template: Path = request.getfixturevalue("sqlite_template")
    path = tmp_path / "promptstack.db"
    shutil.copyfile(template, path)
    return f"sqlite+aiosqlite:///{path}"


def make_settings(database_url: str, tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": database_url,
        "environment": "test",
        "password_hash_time_cost": 1,
        "password_hash_memory_cost": 64,
        "password_hash_parallelism": 1,
        "email_backend": "maildir",
        "maildir_path": tmp_path / "mail",
        "log_json": False,
        "log_level": "WARNING",
        "database_pool_size": 5,
        "database_max_overflow": 20,
        "rate_limit_enabled": False,
        # Balances start at nothing unless a test says otherwise (tests/accounts).
        "signup_credits": 0,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    """Override in a test module to change settings for its tests."""
    return {}


@pytest.fixture
def settings(database_url: str, tmp_path: Path, settings_overrides: dict[str, Any]) -> Settings:
    return make_settings(database_url, tmp_path, **settings_overrides)


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(datetime.now(UTC).replace(microsecond=0), tick=timedelta(microseconds=10))


@pytest.fixture
async def container(settings: Settings, clock: FrozenClock) -> AsyncIterator[Container]:
    # Documents are embedded by the small test embedder; the shipped model has its own tests.
    built = bootstrap(settings, clock=clock, embedder=WordHashEmbedder())
    yield built
    await built.aclose()


@pytest.fixture
async def client(container: Container) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(container=container)
    transport = httpx.ASGITransport(app=app, client=("203.0.113.7", 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield http


@pytest.fixture
def api(client: httpx.AsyncClient, container: Container, settings: Settings) -> Api:
    return Api(client, container, settings)


@pytest.fixture(autouse=True)
def _no_leaked_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No variable named like a setting, in any case: tests build their settings
    explicitly, and the developer's environment must not leak in."""
    fields = set(Settings.model_fields)
    for name in list(os.environ):
        if name.lower() in fields:
            monkeypatch.delenv(name)


@pytest.fixture
def no_dotenv(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """An empty working directory, so settings read from no `.env` file either."""
    monkeypatch.chdir(tmp_path)


@pytest.fixture(scope="session")
def shared_redis_url() -> str:
    """The machine's Redis server; tests keep apart by a namespace of their own."""
    client = redis.Redis.from_url(REDIS_TEST_URL, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.RedisError as exc:
        unavailable(f"Redis is not reachable at {REDIS_TEST_URL}: {exc}")
    finally:
        client.close()
    return REDIS_TEST_URL


@pytest.fixture
def cache_namespace() -> str:
    return f"test-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A Redis server of this test's own, which it may stop and start again."""
    try:
        server = RedisServer(tmp_path)
    except FileNotFoundError as exc:
        unavailable(str(exc))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def amqp_url() -> str:
    """The machine's RabbitMQ; tests keep apart by a namespace of their own."""
    error = asyncio.run(broker_error(AMQP_TEST_URL))
    if error is not None:
        unavailable(f"RabbitMQ is not reachable at {AMQP_TEST_URL}: {error}")
    return AMQP_TEST_URL


@pytest.fixture
def amqp_namespace() -> str:
    return f"test-{uuid.uuid4().hex[:12]}"
