"""The orders' read model: lists, the fallback to the stream, the projection's handling
of duplicates and gaps, rebuilding, and the orders the saga has not settled."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import delete, event, select, update
from typer.testing import CliRunner

from promptstack.cli import app
from promptstack.core.clock import FrozenClock
from promptstack.core.settings import Settings
from promptstack.shop.orders.domain import OrderStatus
from promptstack.shop.orders.models import OrderView
from promptstack.shop.orders.projection import view_row
from promptstack.shop.orders.repository import OrderViewRepository
from tests.fixtures.shop import ORDERS, order_body, place, product
from tests.fixtures.support import Account, Api, assert_problem


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    # A week's window: an order waiting on the processor stays unsettled while the
    # clock is moved on.
    return {"payment_retry_base_seconds": 0.01, "payment_retry_window_seconds": 604_800}


async def views(api: Api) -> list[tuple[Any, ...]]:
    async with api.container.uow(read_only=True) as uow:
        rows = await uow.session.execute(select(OrderView).order_by(OrderView.id))
        return [
            tuple(getattr(view, c.key) for c in OrderView.__table__.c) for view in rows.scalars()
        ]


async def drained(api: Api) -> None:
    """Run the relay and the jobs until nothing is left to do."""
    for _ in range(20):
        await api.container.events.relay.drain()
        await api.container.jobs.executor.drain()
    await api.container.events.relay.drain()


async def listed(api: Api, who: Account, **params: Any) -> list[str]:
    response = await api.client.get(ORDERS, params=params, headers=who.headers)
    assert response.status_code == 200, response.text
    return [order["id"] for order in response.json()["items"]]


async def test_users_list_their_own_orders_newest_first(api: Api, clock: FrozenClock) -> None:
    mug = await product(api, stock=100)
    buyer, other, admin = await api.user(), await api.user(), await api.admin()
    mine = []
    for token in ("tok_visa", "tok_chargeDeclined", "tok_visa"):
        mine.append((await place(api, buyer, order_body((mug, 1), payment_token=token)))["id"])
        clock.advance(timedelta(seconds=1))
    theirs = (await place(api, other, order_body((mug, 1))))["id"]
    await drained(api)

    assert await listed(api, buyer) == mine[::-1]
    assert await listed(api, buyer, status="cancelled") == [mine[1]]
    assert await listed(api, buyer, status="confirmed") == [mine[2], mine[0]]
    assert await listed(api, other) == [theirs]
    assert await listed(api, admin) == [theirs, *mine[::-1]]
    assert await listed(api, admin, user_id=buyer.id, status="confirmed") == [mine[2], mine[0]]
    assert await listed(api, buyer, user_id=buyer.id) == mine[::-1]
    refused = await api.client.get(ORDERS, params={"user_id": other.id}, headers=buyer.headers)
    assert_problem(refused, 403, "forbidden")
    page = (await api.client.get(ORDERS, params={"limit": 2}, headers=buyer.headers)).json()
    rest = await api.client.get(
        ORDERS, params={"limit": 2, "cursor": page["next_cursor"]}, headers=buyer.headers
    )
    assert [o["id"] for o in page["items"] + rest.json()["items"]] == mine[::-1]
    assert rest.json()["next_cursor"] is None


async def test_a_just_placed_order_is_read_from_its_stream_until_the_view_has_it(
    api: Api,
) -> None:
    mug = await product(api)
    buyer = await api.user()
    placed = await place(api, buyer, order_body((mug, 1)))
    assert await views(api) == []

    shown = await api.client.get(f"{ORDERS}/{placed['id']}", headers=buyer.headers)

    assert shown.status_code == 200
    assert shown.json() == placed
    await drained(api)
    assert [row[0] for row in await views(api)] == [uuid.UUID(placed["id"])]
    shown = await api.client.get(f"{ORDERS}/{placed['id']}", headers=buyer.headers)
    assert shown.json()["status"] == "confirmed"


async def test_the_view_is_the_stream_whatever_arrives_twice_or_early(api: Api) -> None:
    """Catching up twice changes nothing; a view that missed events (a gap) is filled
    from the store by the next one heard; an older write never replaces a newer one."""
    mug = await product(api)
    buyer = await api.user()
    placed = await place(api, buyer, order_body((mug, 1)))
    await drained(api)
    order_id = uuid.UUID(placed["id"])
    projection = api.container.shop.projection
    complete = await views(api)

    async with api.container.uow() as uow:
        await projection.catch_up(uow, order_id)
        await projection.catch_up(uow, order_id)
    assert await views(api) == complete

    async with api.container.uow() as uow:
        await uow.session.execute(
            update(OrderView).where(OrderView.id == order_id).values(version=1, status="pending")
        )
    async with api.container.uow() as uow:
        await projection.catch_up(uow, order_id)
    assert await views(api) == complete

    async with api.container.uow() as uow:
        current = await api.container.shop.orders.streams.load(uow, str(order_id))
    older = view_row(replace(current.state, status=OrderStatus.PENDING), 1)
    async with api.container.uow() as uow:
        await OrderViewRepository.of(uow).write([older])
    assert await views(api) == complete


async def test_a_rebuilt_read_model_equals_the_one_kept_as_events_came(api: Api) -> None:
    mug = await product(api, stock=3)
    buyers = [await api.user() for _ in range(3)]
    for n, buyer in enumerate(buyers):
        await place(api, buyer, order_body((mug, 1 + n), payment_token="tok_visa"))
        await place(api, buyer, order_body((mug, 1), payment_token="tok_chargeDeclined"))
    await drained(api)
    kept = await views(api)
    assert len(kept) == 6
    assert {row[2] for row in kept} == {"confirmed", "cancelled"}

    async with api.container.uow() as uow:
        first, second = kept[0][0], kept[1][0]
        await uow.session.execute(delete(OrderView).where(OrderView.id == first))
        await uow.session.execute(
            update(OrderView).where(OrderView.id == second).values(total_cents=1)
        )
    seen: list[tuple[int, int]] = []

    written = await api.container.shop.projection.rebuild(lambda d, t: seen.append((d, t)))

    assert written == 6
    assert seen[-1] == (6, 6)
    assert await views(api) == kept


@contextmanager
def counting_statements(api: Api) -> Iterator[list[str]]:
    engine = api.container.database.read_engine.sync_engine
    statements: list[str] = []

    def note(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        statements.append(statement)

    event.listen(engine, "before_cursor_execute", note)
    try:
        yield statements
    finally:
        event.remove(engine, "before_cursor_execute", note)


async def test_a_list_runs_the_same_queries_whatever_the_page_size(api: Api) -> None:
    mug = await product(api, stock=100)
    buyer = await api.user()
    for _ in range(12):
        await place(api, buyer, order_body((mug, 1)))
    await drained(api)
    await listed(api, buyer, limit=1)  # the caller's account is cached from here on

    counts = []
    for limit in (1, 5, 12):
        with counting_statements(api) as statements:
            assert len(await listed(api, buyer, limit=limit)) == limit
        counts.append(len(statements))
    assert counts[0] == counts[1] == counts[2]
    assert counts[0] <= 2


async def test_orders_the_saga_has_not_settled_are_listed_and_counted(
    api: Api, clock: FrozenClock
) -> None:
    mug = await product(api)
    buyer, admin = await api.user(), await api.admin()
    settled = await place(api, buyer, order_body((mug, 1)))
    await drained(api)
    stuck = await place(api, buyer, order_body((mug, 1), payment_token="tok_gatewayError"))
    await api.container.events.relay.drain()  # its view exists; its charge waits
    clock.advance(timedelta(minutes=api.settings.order_settle_minutes + 1))
    admin = await api.login(admin)

    response = await api.client.get("/api/v1/admin/orders/stuck", headers=admin.headers)

    assert response.status_code == 200, response.text
    assert [o["id"] for o in response.json()] == [stuck["id"]]
    assert settled["id"] not in {o["id"] for o in response.json()}
    metrics = (await api.client.get("/metrics")).text
    assert "promptstack_orders_stuck 1.0" in metrics
    buyer = await api.login(buyer)
    refused = await api.client.get("/api/v1/admin/orders/stuck", headers=buyer.headers)
    assert_problem(refused, 403)


async def test_the_rebuild_command_rewrites_the_views_while_the_service_runs(
    api: Api, settings: Settings
) -> None:
    mug = await product(api, stock=5)
    buyer = await api.user()
    await place(api, buyer, order_body((mug, 1)))
    await drained(api)
    kept = await views(api)
    async with api.container.uow() as uow:
        await uow.session.execute(delete(OrderView))

    env = {"DATABASE_URL": settings.database_url, "ENVIRONMENT": "test", "LOG_JSON": "false"}
    rebuilt = await asyncio.to_thread(
        CliRunner().invoke, app, ["rebuild-projections", "--projection", "orders"], env=env
    )
    unknown = await asyncio.to_thread(
        CliRunner().invoke, app, ["rebuild-projections", "--projection", "users"], env=env
    )

    assert rebuilt.exit_code == 0, rebuilt.output
    assert "Rebuilt 1 order view(s)" in rebuilt.output
    assert await views(api) == kept
    assert unknown.exit_code == 2
    assert "No projection" in unknown.output
