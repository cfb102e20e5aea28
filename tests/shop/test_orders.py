"""Orders through the API: placing (priced from the catalog, idempotent by key), reading
one's own, the history as of any moment, and the commands people give."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

from sqlalchemy import func, select

from promptstack.core.clock import FrozenClock
from promptstack.events.models import OutboxMessage, StoredEvent
from promptstack.shop.orders import domain
from promptstack.shop.orders.models import OrderRequest
from tests.fixtures.shop import ORDERS, order_body, place, product
from tests.fixtures.support import Api, assert_problem


async def streams(api: Api) -> int:
    async with api.container.uow(read_only=True) as uow:
        found = await uow.session.scalar(
            select(func.count(func.distinct(StoredEvent.stream))).where(
                StoredEvent.category == "order"
            )
        )
    return int(found or 0)


async def test_an_order_is_accepted_at_once_and_priced_from_the_catalog(api: Api) -> None:
    mug = await product(api, price_cents=1250)
    pack = await product(api, price_cents=999, kind="credits", credits=1000)
    buyer = await api.user()

    response = await api.client.post(
        ORDERS,
        json=order_body((mug, 3), (pack, 2), discount_percent=15),
        headers=buyer.headers,
    )

    assert response.status_code == 202, response.text
    order = response.json()
    assert response.headers["location"] == f"{ORDERS}/{order['id']}"
    assert "idempotent-replayed" not in response.headers
    # 3 x 12.50 + 2 x 9.99 = 57.48; 15% is 8.622, rounded half up to 8.62.
    assert (order["subtotal_cents"], order["discount_cents"], order["total_cents"]) == (
        5748,
        862,
        4886,
    )
    assert order["status"] == "pending"
    assert order["cancel_reason"] is None
    assert order["user_id"] == buyer.id
    assert [(i["sku"], i["quantity"], i["total_cents"]) for i in order["items"]] == [
        (mug["sku"], 3, 3750),
        (pack["sku"], 2, 1998),
    ]
    assert order["items"][1]["credits"] == 1000
    shown = await api.client.get(f"{ORDERS}/{order['id']}", headers=buyer.headers)
    assert shown.status_code == 200
    assert shown.json() == order


async def test_the_price_is_the_one_at_placing(api: Api) -> None:
    mug = await product(api, price_cents=1000)
    buyer = await api.user()
    order = await place(api, buyer, order_body((mug, 1)))
    admin = await api.admin()
    changed = await api.client.patch(
        f"/api/v1/products/{mug['id']}", json={"price_cents": 5000}, headers=admin.headers
    )
    assert changed.status_code == 200
    shown = await api.client.get(f"{ORDERS}/{order['id']}", headers=buyer.headers)
    assert shown.json()["total_cents"] == 1000


async def test_placing_records_the_order_event_in_the_outbox(api: Api) -> None:
    mug = await product(api)
    order = await place(api, await api.user(), order_body((mug, 2)))
    async with api.container.uow(read_only=True) as uow:
        stored = (await uow.session.scalars(select(StoredEvent))).all()
        outbox = (await uow.session.scalars(select(OutboxMessage))).all()
    [event] = stored
    assert (event.stream, event.version, event.type) == (order["id"], 1, "order.created")
    assert [(m.id, m.aggregate_id) for m in outbox if m.type == "order.created"] == [
        (event.event_id, order["id"])
    ]


async def test_unknown_and_withdrawn_products_are_named_by_line(api: Api) -> None:
    mug = await product(api)
    gone = await product(api, active=False)
    buyer = await api.user()
    unknown = {"id": str(uuid.uuid4())}

    for lines, line, words in (
        (((mug, 1), (unknown, 1)), 1, "no such product"),
        (((gone, 1), (mug, 1)), 0, "no longer sold"),
    ):
        response = await api.client.post(ORDERS, json=order_body(*lines), headers=buyer.headers)
        body = assert_problem(response, 422, "validation_error")
        [error] = body["errors"]
        assert error["loc"] == ["body", "items", line, "product_id"]
        assert words in error["msg"]
    assert await streams(api) == 0


async def test_an_order_is_paid_in_one_currency(api: Api) -> None:
    euro, dollar = await product(api, currency="EUR"), await product(api, currency="USD")
    response = await api.client.post(
        ORDERS, json=order_body((euro, 1), (dollar, 1)), headers=(await api.user()).headers
    )
    body = assert_problem(response, 422, "validation_error")
    assert body["errors"][0]["loc"] == ["body", "items"]
    assert "EUR, USD" in body["errors"][0]["msg"]
    assert await streams(api) == 0


async def test_a_retry_with_the_same_key_gets_the_same_order(api: Api) -> None:
    mug = await product(api)
    buyer = await api.user()
    body = order_body((mug, 2))
    first = await place(api, buyer, body, key="order-7f3a")

    again = await api.client.post(
        ORDERS, json=body, headers={**buyer.headers, "Idempotency-Key": "order-7f3a"}
    )

    assert again.status_code == 202
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json() == first
    assert await streams(api) == 1


async def test_a_key_reused_for_another_body_is_refused(api: Api) -> None:
    mug = await product(api)
    buyer = await api.user()
    first = await place(api, buyer, order_body((mug, 2)), key="k-1")

    for other in (order_body((mug, 3)), order_body((mug, 2), payment_token="tok_other")):
        response = await api.client.post(
            ORDERS, json=other, headers={**buyer.headers, "Idempotency-Key": "k-1"}
        )
        assert_problem(response, 422, "idempotency_key_reused")
    assert await streams(api) == 1
    shown = await api.client.get(f"{ORDERS}/{first['id']}", headers=buyer.headers)
    assert shown.json()["items"][0]["quantity"] == 2


async def test_keys_are_each_users_own(api: Api) -> None:
    mug = await product(api)
    one, other = await api.user(), await api.user()
    a = await place(api, one, order_body((mug, 1)), key="same")
    b = await place(api, other, order_body((mug, 1)), key="same")
    assert a["id"] != b["id"]
    assert (a["user_id"], b["user_id"]) == (one.id, other.id)


async def test_a_failed_request_leaves_its_key_free(api: Api) -> None:
    mug = await product(api)
    buyer = await api.user()
    headers = {**buyer.headers, "Idempotency-Key": "k-2"}
    missing = order_body(({"id": str(uuid.uuid4())}, 1))
    assert_problem(await api.client.post(ORDERS, json=missing, headers=headers), 422)
    placed = await api.client.post(ORDERS, json=order_body((mug, 1)), headers=headers)
    assert placed.status_code == 202
    assert "idempotent-replayed" not in placed.headers


async def test_an_expired_key_places_a_new_order(api: Api, clock: FrozenClock) -> None:
    mug = await product(api)
    buyer = await api.user()
    body = order_body((mug, 1))
    first = await place(api, buyer, body, key="k-3")
    clock.advance(timedelta(hours=api.settings.idempotency_key_hours, seconds=1))
    buyer = await api.login(buyer)
    second = await place(api, buyer, body, key="k-3")
    assert second["id"] != first["id"]
    third = await place(api, buyer, body, key="k-3")
    assert third["id"] == second["id"]


async def test_concurrent_requests_with_one_key_place_one_order(api: Api) -> None:
    mug = await product(api)
    buyer = await api.user()
    headers = {**buyer.headers, "Idempotency-Key": "k-concurrent"}
    body = order_body((mug, 1))

    responses = await asyncio.gather(
        *(api.client.post(ORDERS, json=body, headers=headers) for _ in range(10))
    )

    assert [r.status_code for r in responses] == [202] * 10
    assert len({r.json()["id"] for r in responses}) == 1
    assert sum(r.headers.get("idempotent-replayed") == "true" for r in responses) == 9
    assert await streams(api) == 1


async def test_others_orders_do_not_exist_for_a_user(api: Api) -> None:
    mug = await product(api)
    owner, stranger, admin = await api.user(), await api.user(), await api.admin()
    order = await place(api, owner, order_body((mug, 1)))
    url = f"{ORDERS}/{order['id']}"

    for response in (
        await api.client.get(url, headers=stranger.headers),
        await api.client.get(f"{url}/history", headers=stranger.headers),
        await api.client.post(f"{url}/cancel", headers=stranger.headers),
        await api.client.get(f"{ORDERS}/{uuid.uuid4()}", headers=owner.headers),
    ):
        assert_problem(response, 404, "not_found")
    assert (await api.client.get(url, headers=admin.headers)).json() == order
    shown = await api.client.get(url, headers=owner.headers)
    assert shown.json()["status"] == "pending"


async def test_a_customer_cancels_until_the_order_ships(api: Api) -> None:
    mug = await product(api)
    buyer = await api.user()
    order = await place(api, buyer, order_body((mug, 1)))
    url = f"{ORDERS}/{order['id']}"

    cancelled = await api.client.post(f"{url}/cancel", headers=buyer.headers)
    assert cancelled.status_code == 202
    assert (cancelled.json()["status"], cancelled.json()["cancel_reason"]) == (
        "cancelled",
        "customer_request",
    )
    again = await api.client.post(f"{url}/cancel", headers=buyer.headers)
    body = assert_problem(again, 409, "invalid_transition")
    assert (body["order_status"], body["action"]) == ("cancelled", "cancelled")


async def test_administrators_ship_and_deliver_confirmed_orders(api: Api) -> None:
    mug = await product(api)
    buyer, admin = await api.user(), await api.admin()
    order = await place(api, buyer, order_body((mug, 1)))
    url = f"{ORDERS}/{order['id']}"

    assert_problem(await api.client.post(f"{url}/ship", headers=admin.headers), 409)
    assert_problem(await api.client.post(f"{url}/ship", headers=buyer.headers), 403)
    async with api.container.uow() as uow:
        await api.container.shop.orders.react(
            uow, uuid.UUID(order["id"]), lambda o: domain.confirm(o, "ch_test")
        )
    assert_problem(await api.client.post(f"{url}/deliver", headers=admin.headers), 409)
    shipped = await api.client.post(f"{url}/ship", headers=admin.headers)
    assert shipped.status_code == 200
    assert shipped.json()["status"] == "shipped"
    cancel = await api.client.post(f"{url}/cancel", headers=buyer.headers)
    assert_problem(cancel, 409, "invalid_transition")
    delivered = await api.client.post(f"{url}/deliver", headers=admin.headers)
    assert delivered.json()["status"] == "delivered"


async def test_the_history_shows_the_order_as_it_was_at_any_moment(
    api: Api, clock: FrozenClock
) -> None:
    mug = await product(api)
    buyer = await api.user()
    before = clock.now()
    clock.advance(timedelta(minutes=1))
    order = await place(api, buyer, order_body((mug, 1)))
    clock.advance(timedelta(minutes=1))
    between = clock.now()
    clock.advance(timedelta(minutes=1))
    await api.client.post(f"{ORDERS}/{order['id']}/cancel", headers=buyer.headers)
    url = f"{ORDERS}/{order['id']}/history"

    full = (await api.client.get(url, headers=buyer.headers)).json()
    assert [(e["type"], e["version"]) for e in full["events"]] == [
        ("order.created", 1),
        ("order.cancelled", 2),
    ]
    assert full["state"]["status"] == "cancelled"
    assert "payment_token" not in full["events"][0]["data"]
    assert full["events"][0]["data"]["total_cents"] == order["total_cents"]

    then = await api.client.get(url, params={"as_of": between.isoformat()}, headers=buyer.headers)
    assert [e["type"] for e in then.json()["events"]] == ["order.created"]
    assert then.json()["state"] == order

    earlier = await api.client.get(url, params={"as_of": before.isoformat()}, headers=buyer.headers)
    assert earlier.json() == {"events": [], "state": None}


async def test_a_malformed_moment_is_refused(api: Api) -> None:
    mug = await product(api)
    buyer = await api.user()
    order = await place(api, buyer, order_body((mug, 1)))
    url = f"{ORDERS}/{order['id']}/history"
    for moment in (
        "yesterday",
        "2026-13-01T00:00:00Z",
        "2026-06-01T12:00:00",
        "1700000000",
        "-1",
        "1700000000.5",
    ):
        response = await api.client.get(url, params={"as_of": moment}, headers=buyer.headers)
        body = assert_problem(response, 422, "validation_error")
        assert body["errors"][0]["loc"] == ["query", "as_of"]


async def test_two_idempotency_keys_in_one_request_are_refused(api: Api) -> None:
    mug = await product(api)
    buyer = await api.user()
    headers = [*buyer.headers.items(), ("Idempotency-Key", "a"), ("Idempotency-Key", "b")]
    response = await api.client.post(ORDERS, json=order_body((mug, 1)), headers=headers)
    body = assert_problem(response, 422, "validation_error")
    assert body["errors"][0]["loc"] == ["header", "Idempotency-Key"]
    assert await streams(api) == 0


async def test_expired_keys_are_purged_with_the_outbox(api: Api, clock: FrozenClock) -> None:
    mug = await product(api)
    buyer = await api.user()
    await place(api, buyer, order_body((mug, 1)), key="old")
    clock.advance(timedelta(hours=api.settings.idempotency_key_hours, seconds=1))
    buyer = await api.login(buyer)
    await place(api, buyer, order_body((mug, 1)), key="new")

    await api.container.events.relay.purge()

    async with api.container.uow(read_only=True) as uow:
        keys = (await uow.session.scalars(select(OrderRequest.key))).all()
    assert keys == ["new"]
