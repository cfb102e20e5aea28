"""Bad input at the order routes: a 4xx problem document, never a 500, and nothing
written (no order event, no idempotency key taken, no payment begun)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from sqlalchemy import select

from promptstack.jobs.inprocess import InProcessExecutor
from promptstack.shop.payments.models import Payment
from tests.fixtures.bad_input import (
    EXTRAS,
    NIL_UUID,
    V1,
    Authorization,
    Endpoint,
    JsonBodies,
    Listing,
    Listings,
    PathIds,
    Scene,
    assert_invalid,
    encode,
    label,
    stored_state,
)
from tests.fixtures.shop import PRODUCTS, order_body, place, product
from tests.fixtures.support import Api, assert_problem

A_UUID = str(uuid.UUID(int=1))
# Every app this file builds has the same OpenAPI document; building it again for each
# test would cost a fifth of the test.
DOCUMENT: dict[str, Any] = {}
TOO_MANY_ITEMS = [{"product_id": str(uuid.UUID(int=n + 1)), "quantity": 1} for n in range(101)]


PLACE = Endpoint(
    "place",
    "POST",
    "/orders",
    "user",
    lambda s: {
        "items": [{"product_id": s.names["product_id"], "quantity": 1}],
        "payment_token": "tok_visa",
    },
    required=("items", "payment_token"),
    text=("payment_token",),
    choices=("items", "discount_percent"),
    bad_values=[
        ("payment_token", ""),
        ("payment_token", "x" * 129),
        ("payment_token", "has space"),
        ("payment_token", "tok/visa"),
        ("payment_token", "tök_visa"),
        ("payment_token", "tok_visa\n"),
        ("discount_percent", -1),
        ("discount_percent", 101),
        ("discount_percent", 10**30),
        ("discount_percent", 12.5),
        ("discount_percent", 10.0),
        ("discount_percent", "10"),
        ("discount_percent", True),
        ("discount_percent", None),
        ("items", []),
        ("items", TOO_MANY_ITEMS),
        ("items", {"product_id": A_UUID, "quantity": 1}),
        ("items", "everything"),
        ("items", 12345),
        ("items", None),
        # Each product once, however its id is spelled: a line's quantity is all that is
        # asked of that product.
        ("items", [{"product_id": A_UUID, "quantity": 1}, {"product_id": A_UUID, "quantity": 2}]),
        (
            "items",
            [
                {"product_id": A_UUID, "quantity": 1},
                {"product_id": A_UUID.replace("-", "").upper(), "quantity": 1},
            ],
        ),
    ],
)
READ = Endpoint("read", "GET", "/orders/{order_id}", "user")
HISTORY = Endpoint("history", "GET", "/orders/{order_id}/history", "user")
CANCEL = Endpoint("cancel", "POST", "/orders/{order_id}/cancel", "user")
SHIP = Endpoint("ship", "POST", "/orders/{order_id}/ship", "admin")
DELIVER = Endpoint("deliver", "POST", "/orders/{order_id}/deliver", "admin")


class TestOrdersBadInput(JsonBodies, PathIds, Listings, Authorization):
    endpoints = (PLACE, READ, HISTORY, CANCEL, SHIP, DELIVER)
    listings = (
        Listing("/users/me/credit-ledger", "user"),
        Listing(
            "/orders",
            "admin",
            (
                {"status": "lost"},
                {"status": "CONFIRMED"},
                {"status": ""},
                {"user_id": "someone"},
                {"user_id": "1"},
                {"user_id": A_UUID + "0"},
            ),
        ),
    )
    extras = (
        *EXTRAS,
        {"user_id": NIL_UUID},
        {"status": "confirmed"},
        {"currency": "EUR"},
        {"subtotal_cents": 0},
        {"discount_cents": 0},
        {"total_cents": 0},
        {"idempotency_key": "in-the-body"},
    )

    async def prepare(self, scene: Scene) -> None:
        """A product, and a pending order of the caller's own when the caller is a
        customer (so a refusal is owed to the input alone), else of the target's."""
        api = scene.api
        await without_the_sagas_jobs(api)
        if not DOCUMENT:
            DOCUMENT.update((await api.client.get("/openapi.json")).json())
        scene.document = DOCUMENT
        mug = await product(api)
        scene.names["product_id"] = mug["id"]
        me = await api.client.get(f"{V1}/users/me", headers=scene.caller.headers)
        owner = scene.caller if me.json()["role"] == "user" else scene.target
        scene.names["order_id"] = (await place(api, owner, order_body((mug, 1))))["id"]


SUITE = TestOrdersBadInput()


async def without_the_sagas_jobs(api: Api) -> None:
    """The charge would run in the background and change the state while a refusal is
    being judged against it; unrun, an order stays pending, as it is when placed."""
    executor = api.container.jobs.executor
    assert isinstance(executor, InProcessExecutor)
    await executor.stop(grace=0)


async def another_product(scene: Scene, **fields: Any) -> str:
    """Added to a scene already taken, so its state is taken again: the product is not
    what a refusal may change."""
    added = await product(scene.api, **fields)
    scene.before = await stored_state(scene.api)
    return str(added["id"])


def item_cases() -> list[Any]:
    quantities = [0, -1, 10_001, 10**30, 2.5, 1.0, "3", True, None]
    product_ids = ["not-a-uuid", "", 12345, None, ["x"], NIL_UUID[:-1], NIL_UUID + "0"]
    cases: list[Any] = [
        pytest.param({"quantity": 1}, ["product_id"], id="no-product_id"),
        pytest.param({"product_id": NIL_UUID}, ["quantity"], id="no-quantity"),
        pytest.param(
            {"product_id": NIL_UUID, "quantity": 1, "unit_price_cents": 0},
            ["unit_price_cents"],
            id="extra-unit_price_cents",
        ),
        pytest.param(
            {"product_id": NIL_UUID, "quantity": 1, "sku": "MUG"}, ["sku"], id="extra-sku"
        ),
    ]
    cases += [
        pytest.param(
            {"product_id": NIL_UUID, "quantity": value}, ["quantity"], id=f"quantity-{label(value)}"
        )
        for value in quantities
    ]
    cases += [
        pytest.param(
            {"product_id": value, "quantity": 1}, ["product_id"], id=f"product_id-{label(value)}"
        )
        for value in product_ids
    ]
    cases += [
        pytest.param(value, [], id=f"item-{label(value)}")
        for value in ["mug", 5, None, [], ["mug", 1]]
    ]
    return cases


@pytest.mark.input_only
@pytest.mark.parametrize(("item", "where"), item_cases())
async def test_a_bad_item_is_refused_where_it_is(api: Api, item: Any, where: list[str]) -> None:
    """The second item is the bad one, so the error must point at it, not at the list."""
    scene = await SUITE.scene(api, "user")
    body = PLACE.valid_body(scene)
    body["items"].append(item)

    response = await PLACE.send(scene, encode(body))

    assert_invalid(response, ["body", "items", 1, *where])  # type: ignore[list-item]
    await scene.assert_untouched()


async def test_an_unknown_product_is_refused_at_its_line(api: Api) -> None:
    scene = await SUITE.scene(api, "user")
    body = PLACE.valid_body(scene)
    body["items"].append({"product_id": str(uuid.uuid4()), "quantity": 1})

    response = await PLACE.send(scene, encode(body))

    assert_invalid(response, ["body", "items", 1, "product_id"])
    await scene.assert_untouched()


async def test_a_withdrawn_product_is_refused_at_its_line(api: Api) -> None:
    scene = await SUITE.scene(api, "user")
    withdrawn = await another_product(scene, active=False)
    body = PLACE.valid_body(scene)
    body["items"].append({"product_id": withdrawn, "quantity": 1})

    response = await PLACE.send(scene, encode(body))

    assert_invalid(response, ["body", "items", 1, "product_id"])
    await scene.assert_untouched()


async def test_products_in_two_currencies_are_refused(api: Api) -> None:
    """An order is paid once, in one currency: there is no rate to convert at."""
    scene = await SUITE.scene(api, "user")
    dollars = await another_product(scene, currency="USD")
    body = PLACE.valid_body(scene)
    body["items"].append({"product_id": dollars, "quantity": 1})

    response = await PLACE.send(scene, encode(body))

    assert_invalid(response, ["body", "items"])
    await scene.assert_untouched()


@pytest.mark.input_only
@pytest.mark.parametrize(
    "key",
    [
        pytest.param("", id="empty"),
        pytest.param("k" * 256, id="256-chars"),
        pytest.param("has space", id="space"),
        pytest.param("tab\there", id="tab"),
        pytest.param("bell\x07", id="bell"),
        pytest.param("delete\x7f", id="delete"),
        pytest.param("café".encode(), id="utf-8"),
        pytest.param(b"\xff\xfe", id="not-utf-8"),
    ],
)
async def test_a_bad_idempotency_key_is_refused_and_places_nothing(
    api: Api, key: str | bytes
) -> None:
    """A retry is matched to its order by the key, byte for byte: a key a proxy may
    rewrite (spaces, control characters, non-ASCII) or one no column holds would turn the
    retry into a second order."""
    scene = await SUITE.scene(api, "user")
    headers = {**scene.caller.headers, "Idempotency-Key": key}

    response = await PLACE.send(scene, PLACE.valid_content(scene), headers)  # type: ignore[arg-type]

    assert_invalid(response, ["header", "Idempotency-Key"])
    await scene.assert_untouched()


async def test_a_key_reused_for_another_order_is_refused_and_keeps_its_order(api: Api) -> None:
    """Answering the first order would hide that the second was never placed; placing it
    would charge twice for what the client may think is one retry."""
    scene = await SUITE.scene(api, "user")
    first = PLACE.valid_body(scene)
    placed = await place(api, scene.caller, first, key="order-1")
    scene.before = await stored_state(api)
    headers = {**scene.caller.headers, "Idempotency-Key": "order-1"}

    reused = await PLACE.send(scene, encode({**first, "discount_percent": 50}), headers)
    retried = await PLACE.send(scene, encode(first), headers)

    assert_problem(reused, 422, "idempotency_key_reused")
    assert retried.status_code == 202, retried.text
    assert retried.headers["idempotent-replayed"] == "true"
    assert retried.json()["id"] == placed["id"]
    await scene.assert_untouched()


async def test_a_refused_order_leaves_its_key_free(api: Api) -> None:
    """The client fixes its request and retries under the same key; a key bound to an
    order that was never placed would refuse every retry."""
    scene = await SUITE.scene(api, "user")
    headers = {**scene.caller.headers, "Idempotency-Key": "order-1"}
    body = PLACE.valid_body(scene)
    unknown = {**body, "items": [{"product_id": str(uuid.uuid4()), "quantity": 1}]}

    refused = await PLACE.send(scene, encode(unknown), headers)
    assert_invalid(refused, ["body", "items", 0, "product_id"])
    await scene.assert_untouched()
    placed = await PLACE.send(scene, encode(body), headers)

    assert placed.status_code == 202, placed.text
    assert "idempotent-replayed" not in placed.headers


@pytest.mark.parametrize("endpoint", [READ, HISTORY, CANCEL], ids=str)
async def test_another_customers_order_does_not_exist_for_a_stranger(
    api: Api, endpoint: Endpoint
) -> None:
    """A 403 would confirm that the id names an order, and order ids are shared in links
    and emails."""
    scene = await SUITE.scene(api, "user")
    order_id = (await place(api, scene.target, PLACE.valid_body(scene)))["id"]
    scene.before = await stored_state(api)

    response = await endpoint.send(scene, None, order_id=order_id)

    assert_problem(response, 404, "not_found")
    await scene.assert_untouched()
    owner = await api.client.get(f"{V1}/orders/{order_id}", headers=scene.target.headers)
    assert owner.status_code == 200, owner.text
    assert owner.json()["status"] == "pending"


@pytest.mark.input_only
@pytest.mark.parametrize("endpoint", [SHIP, DELIVER], ids=str)
async def test_a_customer_may_not_ship_or_deliver_even_their_own_order(
    api: Api, endpoint: Endpoint
) -> None:
    scene = await SUITE.scene(api, "user")

    response = await endpoint.send(scene, None)

    assert_problem(response, 403, "forbidden")
    await scene.assert_untouched()


@pytest.mark.parametrize("endpoint", [SHIP, DELIVER], ids=str)
async def test_a_pending_order_cannot_be_shipped_or_delivered(api: Api, endpoint: Endpoint) -> None:
    """Shipping before the payment is taken would send goods nobody paid for."""
    scene = await SUITE.scene(api, "admin")

    response = await endpoint.send(scene, None)

    problem = assert_problem(response, 409, "invalid_transition")
    assert problem["order_status"] == "pending"
    await scene.assert_untouched()


async def test_an_order_is_cancelled_once(api: Api) -> None:
    """A second cancel would start a second refund."""
    scene = await SUITE.scene(api, "user")
    first = await CANCEL.send(scene, None)
    assert first.status_code == 202, first.text
    scene.before = await stored_state(api)

    again = await CANCEL.send(scene, None)

    assert_problem(again, 409, "invalid_transition")
    await scene.assert_untouched()


@pytest.mark.input_only
@pytest.mark.parametrize(
    "as_of",
    [
        pytest.param("2026-01-01T00:00:00", id="naive"),
        pytest.param("2026-01-01", id="date-alone"),
        pytest.param("", id="empty"),
        pytest.param("yesterday", id="word"),
        pytest.param("2026-13-01T00:00:00Z", id="month-13"),
        pytest.param("2026-02-30T00:00:00Z", id="february-30"),
        pytest.param("2026-01-01T25:00:00Z", id="hour-25"),
        pytest.param("2026-01-01T00:00:00+24:00", id="offset-24h"),
        pytest.param("+02026-01-01T00:00:00Z", id="expanded-year"),
        pytest.param("x" * 10_000, id="10k-chars"),
    ],
)
async def test_a_history_moment_without_a_time_zone_or_malformed_is_refused(
    api: Api, as_of: str
) -> None:
    """A moment without a zone names a different instant in every zone, and the history
    would silently depend on where the server runs."""
    scene = await SUITE.scene(api, "user")

    response = await api.client.get(
        HISTORY.url(scene), params={"as_of": as_of}, headers=scene.caller.headers
    )

    assert_invalid(response, ["query", "as_of"])
    await scene.assert_untouched()


@pytest.mark.parametrize(
    ("as_of", "placed"),
    [
        pytest.param("0001-01-01T00:00:00+01:00", False, id="before-year-1-in-utc"),
        pytest.param("9999-12-31T23:59:59-01:00", True, id="after-year-9999-in-utc"),
    ],
)
async def test_a_history_moment_at_the_edge_of_the_calendar_is_answered(
    api: Api, as_of: str, placed: bool
) -> None:
    """Moments that cannot be moved to UTC must still compare with the stored ones."""
    scene = await SUITE.scene(api, "user")

    response = await api.client.get(
        HISTORY.url(scene), params={"as_of": as_of}, headers=scene.caller.headers
    )

    assert response.status_code == 200, response.text
    assert (response.json()["state"] is not None) is placed
    await scene.assert_untouched()


async def test_the_largest_order_is_accepted_to_the_cent(api: Api) -> None:
    """The limits refuse only what lies beyond them: a hundred lines of ten thousand at
    the highest price is a quadrillion cents, which no 32-bit column or sum could hold
    and which must reach the payment step to the cent."""
    await without_the_sagas_jobs(api)
    admin = await api.admin()
    ids = []
    for n in range(100):
        body = {"sku": f"BIG-{n}", "name": "Gold", "price_cents": 1_000_000_000, "currency": "EUR"}
        created = await api.client.post(PRODUCTS, json=body, headers=admin.headers)
        assert created.status_code == 201, created.text
        ids.append(created.json()["id"])
    buyer = await api.user()
    body = {
        "items": [{"product_id": id_, "quantity": 10_000} for id_ in ids],
        "payment_token": "t" * 128,
        "discount_percent": 15,
    }

    order = await place(api, buyer, body, key="~" * 255)

    assert (order["subtotal_cents"], order["discount_cents"], order["total_cents"]) == (
        1_000_000_000_000_000,
        150_000_000_000_000,
        850_000_000_000_000,
    )
    assert {item["total_cents"] for item in order["items"]} == {10_000_000_000_000}
    await stored_state(api)
    async with api.container.uow(read_only=True) as uow:
        charged = await uow.session.scalar(select(Payment.amount_cents))
    assert charged == 850_000_000_000_000


@pytest.mark.input_only
@pytest.mark.parametrize("limit", ["0", "501", "-1", "ten", "2.5", "9" * 30])
async def test_the_stuck_orders_refuse_a_bad_limit(api: Api, limit: str) -> None:
    admin = await api.admin()
    response = await api.client.get(
        f"{V1}/admin/orders/stuck", params={"limit": limit}, headers=admin.headers
    )
    assert_invalid(response, ["query", "limit"])


async def test_a_user_may_not_list_another_users_orders(api: Api) -> None:
    scene = await SUITE.scene(api, "user")
    response = await api.client.get(
        f"{V1}/orders", params={"user_id": scene.target.id}, headers=scene.caller.headers
    )
    assert_problem(response, 403, "forbidden")
    assert await stored_state(api) == scene.before
