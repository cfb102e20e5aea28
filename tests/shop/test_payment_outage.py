"""The payment processor going away, through the HTTP adapter and the fake processor's
process: orders wait while its breaker is open, and settle once it is back, or are
cancelled when the window passes; in no case is anything charged twice."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

from promptstack.core.clock import FrozenClock
from promptstack.core.resilience import CircuitState
from promptstack.shop.payments.http_gateway import HttpPaymentGateway
from promptstack.shop.payments.models import Payment
from tests.fixtures.payment_gateway import FakePaymentGateway
from tests.fixtures.shop import ORDERS, order_body, place, product
from tests.fixtures.support import Account, Api, eventually

WINDOW = 600.0


@pytest.fixture(scope="module")
def processor() -> Iterator[FakePaymentGateway]:
    with FakePaymentGateway() as gateway:
        yield gateway


@pytest.fixture
def settings_overrides(processor: FakePaymentGateway) -> dict[str, Any]:
    processor.reset()
    return {
        "payment_gateway_url": processor.url,
        "payment_gateway_timeout_seconds": 1.0,
        "payment_retry_window_seconds": WINDOW,
        "payment_retry_base_seconds": 0.02,
        # The clock is moved past the window; the buyer stays signed in meanwhile.
        "access_token_expire_minutes": 1440,
    }


@pytest.fixture
async def running(api: Api) -> Api:
    api.container.events.relay.start()
    await api.container.jobs.executor.start()
    return api


def breaker_of(api: Api) -> CircuitState:
    gateway = api.container.shop.gateway
    assert isinstance(gateway, HttpPaymentGateway)
    return gateway.breaker.state


async def statuses(api: Api, buyer: Account, orders: list[dict[str, Any]]) -> list[str]:
    shown = [
        (await api.client.get(f"{ORDERS}/{order['id']}", headers=buyer.headers)).json()
        for order in orders
    ]
    return [
        f"{o['status']}:{o['cancel_reason']}" if o["cancel_reason"] else o["status"] for o in shown
    ]


async def attempts(api: Api, orders: list[dict[str, Any]]) -> list[int]:
    async with api.container.uow(read_only=True) as uow:
        found = [await uow.session.get(Payment, uuid.UUID(o["id"])) for o in orders]
    return [p.attempts if p else 0 for p in found]


async def test_orders_wait_out_an_outage_and_are_charged_once_after_it(
    running: Api, processor: FakePaymentGateway, clock: FrozenClock
) -> None:
    api = running
    mug = await product(api, stock=10, price_cents=900)
    buyer = await api.user()
    processor.faults("down")
    orders = [await place(api, buyer, order_body((mug, 1))) for _ in range(3)]

    await eventually(lambda: breaker_of(api) is CircuitState.OPEN, what="the breaker to open")
    assert await statuses(api, buyer, orders) == ["pending"] * 3
    processor.faults("ok")
    clock.advance(timedelta(seconds=31))  # past the breaker's recovery, well within the window

    async def confirmed() -> bool:
        return await statuses(api, buyer, orders) == ["confirmed"] * 3

    await eventually(confirmed, what="the orders to be paid once the processor is back")
    charges = [c for c in processor.ledger()["charges"] if c["status"] == "succeeded"]
    assert sorted(c["reference"] for c in charges) == sorted(o["id"] for o in orders)
    assert breaker_of(api) is CircuitState.CLOSED


async def test_orders_are_cancelled_when_the_outage_outlasts_the_window(
    running: Api, processor: FakePaymentGateway, clock: FrozenClock
) -> None:
    api = running
    mug = await product(api, stock=10)
    buyer = await api.user()
    processor.faults("down")
    orders = [await place(api, buyer, order_body((mug, 1))) for _ in range(2)]

    async def tried() -> bool:
        return all(await attempts(api, orders))

    await eventually(tried, what="a first attempt at each charge")

    async def given_up() -> bool:
        clock.advance(timedelta(seconds=WINDOW / 10))
        return await statuses(api, buyer, orders) == ["cancelled:payment_unavailable"] * 2

    await eventually(given_up, what="the orders to be cancelled after the window")
    processor.faults("ok")
    assert processor.ledger()["charges"] == []
    assert await stock_left(api, mug) == 10


async def test_a_charge_whose_answer_was_lost_is_not_made_again(
    running: Api, processor: FakePaymentGateway
) -> None:
    api = running
    mug = await product(api, stock=10, price_cents=700)
    buyer = await api.user()
    processor.faults("drop_after_commit", count=2)
    order = await place(api, buyer, order_body((mug, 1)))

    async def confirmed() -> bool:
        return await statuses(api, buyer, [order]) == ["confirmed"]

    await eventually(confirmed, what="the order, paid by the first charge")
    [charge] = processor.ledger()["charges"]
    assert (charge["reference"], charge["amount_cents"]) == (order["id"], 700)


async def stock_left(api: Api, item: dict[str, Any]) -> int:
    stock: int = (await api.client.get(f"/api/v1/products/{item['id']}")).json()["stock"]
    return stock
