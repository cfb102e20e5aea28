"""Every query that lists orders, or reads the event store, is served by an index at
10^5 orders on PostgreSQL: its plan has no sequential scan of a big table."""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Select, func, select, text
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from promptstack.core.pagination import Cursor, PageRequest
from promptstack.events.models import StoredEvent
from promptstack.shop.orders.models import OrderView
from promptstack.shop.orders.repository import _ALL, _LISTS, _UNSETTLED
from tests.conftest import empty_postgres

pytestmark = pytest.mark.postgres

BIG_TABLES = {"order_views", "event_store"}
NOW = datetime(2026, 6, 1, tzinfo=UTC)

# 10^5 orders of 10^3 users over a year and a half, most settled long ago, a few still open; one
# stored event per order, as many streams as orders.
_FILL = """
INSERT INTO order_views (id, user_id, status, cancel_reason, items, currency,
    discount_percent, subtotal_cents, discount_cents, total_cents, payment_id, version,
    created_at, updated_at)
SELECT md5('order' || n)::uuid, md5('user' || (n % 1000))::uuid,
    (ARRAY['confirmed', 'delivered', 'cancelled', 'shipped', 'pending', 'paid'])[
        CASE WHEN n % 500 = 0 THEN 5 + n % 2 ELSE 1 + n % 4 END],
    NULL, '[]', 'EUR', 0, 1000, 0, 1000, NULL, 3,
    TIMESTAMPTZ '2025-06-01' + n * INTERVAL '5 minutes',
    TIMESTAMPTZ '2025-06-01' + n * INTERVAL '5 minutes'
FROM generate_series(1, 100000) AS n;
INSERT INTO event_store (event_id, category, stream, version, type, schema_version,
    occurred_at, correlation_id, causation_id, data)
SELECT md5('event' || n)::uuid, 'order', md5('order' || n)::uuid::text, 1,
    'order.created', 1, TIMESTAMPTZ '2025-06-01' + n * INTERVAL '5 minutes', 'c', NULL, '{}'
FROM generate_series(1, 100000) AS n;
ANALYZE order_views;
ANALYZE event_store;
"""


async def fill(url: str) -> None:
    await empty_postgres(url)
    engine = create_async_engine(url)
    async with engine.begin() as connection:
        for statement in filter(str.strip, _FILL.split(";")):
            await connection.execute(text(statement))
    await engine.dispose()


@pytest.fixture(scope="module")
def filled(postgres_url: str) -> Iterator[str]:
    """Filled once for the module, emptied after it (other tests expect empty tables)."""
    asyncio.run(fill(postgres_url))
    yield postgres_url
    asyncio.run(empty_postgres(postgres_url))


@pytest.fixture
async def loaded(filled: str) -> AsyncIterator[AsyncEngine]:
    engine = create_async_engine(filled)
    yield engine
    await engine.dispose()


def md5_uuid(value: str) -> uuid.UUID:
    """The id the fill gave the row named `value` (PostgreSQL's md5(...)::uuid)."""
    return uuid.UUID(hashlib.md5(value.encode()).hexdigest())  # noqa: S324


def list_statements() -> Iterator[tuple[str, Select[Any]]]:
    after = Cursor(at=NOW - timedelta(days=30), id=uuid.UUID(int=0))
    for (by_user, by_status), listing in _LISTS.items():
        params: dict[str, Any] = {}
        if by_user:
            params["user_id"] = md5_uuid("user7")
        if by_status:
            params["status"] = "confirmed"
        for request in (PageRequest(limit=20), PageRequest(limit=20, after=after)):
            statement, values = listing.statement(request, params)
            name = f"list user={by_user} status={by_status} cursor={request.after is not None}"
            yield name, statement.params(values)


def other_statements() -> Iterator[tuple[str, Select[Any]]]:
    cutoff = NOW - timedelta(minutes=15)
    yield (
        "stuck",
        _ALL.where(_UNSETTLED, OrderView.updated_at < cutoff)
        .order_by(OrderView.updated_at)
        .limit(100),
    )
    yield "stuck count", select(func.count()).where(_UNSETTLED, OrderView.updated_at < cutoff)
    stream = str(md5_uuid("order42"))
    yield (
        "stream",
        select(StoredEvent)
        .where(StoredEvent.stream == stream, StoredEvent.version > 0)
        .order_by(StoredEvent.version),
    )
    yield (
        "streams to rebuild",
        (
            select(StoredEvent.stream)
            .where(StoredEvent.category == "order", StoredEvent.stream > stream)
            .group_by(StoredEvent.stream)
            .order_by(StoredEvent.stream)
            .limit(500)
        ),
    )
    yield (
        "events as of",
        select(StoredEvent).where(StoredEvent.occurred_at > NOW - timedelta(days=1)),
    )


def scans(plan: dict[str, Any]) -> Iterator[tuple[str, str]]:
    yield plan["Node Type"], plan.get("Relation Name", "")
    for child in plan.get("Plans", []):
        yield from scans(child)


@pytest.mark.parametrize(
    ("name", "statement"),
    [*list_statements(), *other_statements()],
    ids=lambda value: value if isinstance(value, str) else "",
)
async def test_no_sequential_scan_of_a_big_table(
    loaded: AsyncEngine, name: str, statement: Select[Any]
) -> None:
    sql = statement.compile(dialect=postgresql.dialect(), compile_kwargs={"literal_binds": True})
    async with loaded.connect() as connection:
        [[plan]] = (await connection.execute(text(f"EXPLAIN (FORMAT JSON) {sql}"))).all()
    nodes = list(scans(plan[0]["Plan"]))
    assert not [n for n in nodes if n[0] == "Seq Scan" and n[1] in BIG_TABLES], (name, nodes)


def rows_filtered(plan: dict[str, Any]) -> int:
    """Rows a plan's nodes read and threw away, all of them together."""
    removed = int(plan.get("Rows Removed by Filter", 0)) + int(
        plan.get("Rows Removed by Index Recheck", 0)
    )
    return removed + sum(rows_filtered(child) for child in plan.get("Plans", []))


@pytest.mark.parametrize(
    ("name", "statement"),
    [(name, statement) for name, statement in list_statements() if "cursor=True" in name],
    ids=lambda value: value if isinstance(value, str) else "",
)
async def test_a_page_after_a_cursor_starts_at_the_cursor(
    loaded: AsyncEngine, name: str, statement: Select[Any]
) -> None:
    """A deep page costs what the first one does: the index is entered at the cursor,
    not read from the newest row and filtered up to it."""
    sql = statement.compile(dialect=postgresql.dialect(), compile_kwargs={"literal_binds": True})
    async with loaded.connect() as connection:
        [[plan]] = (await connection.execute(text(f"EXPLAIN (ANALYZE, FORMAT JSON) {sql}"))).all()

    entered = [c for c in index_conditions(plan[0]["Plan"]) if "created_at" in c]
    assert entered, (name, plan)
    # A filtered list throws away the rows of other statuses it meets on the way; a
    # page's worth of them, not every row above the cursor.
    assert rows_filtered(plan[0]["Plan"]) <= 5 * 21, (name, plan)


def index_conditions(plan: dict[str, Any]) -> Iterator[str]:
    if "Index Cond" in plan:
        yield plan["Index Cond"]
    for child in plan.get("Plans", []):
        yield from index_conditions(child)
