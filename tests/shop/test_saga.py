"""The saga end to end on the embedded parts: the relay and the in-process executor run
as the server runs them, and the sandbox processor pays. Every order ends confirmed or
cancelled, and money, stock and credits add up."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from promptstack.core.clock import FrozenClock
from promptstack.shop.payments.gateway import Charge, PaymentGateway, Refund
from promptstack.shop.payments.models import Payment, PaymentStatus, SandboxOperation
from tests.fixtures.shop import ORDERS, order_body, place, product
from tests.fixtures.support import Account, Api, assert_problem, eventually

SETTLED = {"confirmed", "cancelled"}


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"payment_retry_base_seconds": 0.01, "job_retry_base_seconds": 0.01}


@pytest.fixture
async def running(api: Api) -> Api:
    """The background parts the server starts: the relay and the job executor."""
    api.container.events.relay.start()
    await api.container.jobs.executor.start()
    return api


async def order_of(api: Api, buyer: Account, order_id: str) -> dict[str, Any]:
    response = await api.client.get(f"{ORDERS}/{order_id}", headers=buyer.headers)
    assert response.status_code == 200, response.text
    order: dict[str, Any] = response.json()
    return order


async def settled(api: Api, buyer: Account, order_id: str) -> dict[str, Any]:
    async def check() -> dict[str, Any] | None:
        order = await order_of(api, buyer, order_id)
        return order if order["status"] in SETTLED else None

    order: dict[str, Any] = await eventually(check, what=f"order {order_id} to settle")
    return order


async def payment(api: Api, order_id: str) -> Payment:
    async def check() -> Payment | None:
        async with api.container.uow(read_only=True) as uow:
            return await uow.session.get(Payment, uuid.UUID(order_id))

    found: Payment = await eventually(check, what="the payment row")
    return found


async def books(api: Api) -> tuple[int, int]:
    """What the sandbox processor charged and refunded, in all."""
    async with api.container.uow(read_only=True) as uow:
        rows = await uow.session.execute(
            select(SandboxOperation.kind, func.sum(SandboxOperation.amount_cents))
            .where(SandboxOperation.outcome == "succeeded")
            .group_by(SandboxOperation.kind)
        )
        totals = dict(rows.all())
    return int(totals.get("charge", 0)), int(totals.get("refund", 0))


async def mail_about(api: Api, buyer: Account, subject: str) -> str:
    async def check() -> str | None:
        found = [body for body in await api.mails_to(buyer.email) if subject in body]
        return found[0] if found else None

    mail: str = await eventually(check, what=f"an email: {subject}")
    return mail


async def stock_of(api: Api, item: dict[str, Any]) -> int:
    response = await api.client.get(f"/api/v1/products/{item['id']}")
    stock: int = response.json()["stock"]
    return stock


async def test_a_paid_order_is_confirmed_its_stock_taken_and_its_buyer_told(
    running: Api,
) -> None:
    api = running
    mug = await product(api, stock=5, price_cents=1250)
    buyer = await api.user()
    placed = await place(api, buyer, order_body((mug, 2)))

    order = await settled(api, buyer, placed["id"])

    assert (order["status"], order["cancel_reason"]) == ("confirmed", None)
    assert await stock_of(api, mug) == 3
    assert await books(api) == (2500, 0)
    assert (await payment(api, placed["id"])).status is PaymentStatus.CHARGED
    history = (
        await api.client.get(f"{ORDERS}/{placed['id']}/history", headers=buyer.headers)
    ).json()
    assert [e["type"] for e in history["events"]] == [
        "order.created",
        "order.paid",
        "order.confirmed",
    ]
    mail = await mail_about(api, buyer, "is paid and its items are reserved")
    assert placed["id"] in mail
    inbox = (await api.client.get("/api/v1/notifications", headers=buyer.headers)).json()
    assert [n["subject"] for n in inbox["items"]] == ["Your order is confirmed"]


async def test_a_credits_pack_grants_its_credits_once(running: Api) -> None:
    api = running
    pack = await product(api, kind="credits", credits=1000, price_cents=999, stock=100)
    buyer = await api.user()
    placed = await place(api, buyer, order_body((pack, 3)))

    assert (await settled(api, buyer, placed["id"]))["status"] == "confirmed"

    async def granted() -> int:
        me = await api.client.get("/api/v1/users/me", headers=buyer.headers)
        credits: int = me.json()["credits"]
        return credits

    assert await eventually(granted, what="the credits") == 3000
    ledger = (await api.client.get("/api/v1/users/me/credit-ledger", headers=buyer.headers)).json()
    assert [(e["delta"], e["reference"]) for e in ledger["items"]] == [
        (3000, f"order:{placed['id']}")
    ]


async def test_a_declined_card_cancels_the_order_and_takes_nothing(running: Api) -> None:
    api = running
    mug = await product(api, stock=5)
    buyer = await api.user()
    placed = await place(api, buyer, order_body((mug, 1), payment_token="tok_chargeDeclined"))

    order = await settled(api, buyer, placed["id"])

    assert (order["status"], order["cancel_reason"]) == ("cancelled", "payment_declined")
    assert await stock_of(api, mug) == 5
    assert await books(api) == (0, 0)
    mail = await mail_about(api, buyer, "is cancelled")
    assert "the payment was declined" in mail


async def test_an_order_beyond_the_stock_is_refunded_and_cancelled(running: Api) -> None:
    api = running
    stickers = await product(api, stock=3, price_cents=300)
    buyer = await api.user()
    placed = await place(api, buyer, order_body((stickers, 4)))

    order = await settled(api, buyer, placed["id"])

    assert (order["status"], order["cancel_reason"]) == ("cancelled", "out_of_stock")
    assert await stock_of(api, stickers) == 3

    async def refunded() -> bool:
        # The processor's books move first; the payment's row once it has heard back.
        return (await payment(api, placed["id"])).status is PaymentStatus.REFUNDED

    await eventually(refunded, what="the refund")
    assert await books(api) == (1200, 1200)


async def test_a_free_order_needs_no_charge(running: Api) -> None:
    api = running
    mug = await product(api, stock=2)
    buyer = await api.user()
    placed = await place(api, buyer, order_body((mug, 1), discount_percent=100))
    order = await settled(api, buyer, placed["id"])
    assert (order["status"], order["total_cents"]) == ("confirmed", 0)
    assert await books(api) == (0, 0)


async def test_a_confirmed_order_cancelled_by_its_buyer_is_refunded_and_restocked(
    running: Api,
) -> None:
    api = running
    mug = await product(api, stock=4, price_cents=1000)
    buyer = await api.user()
    placed = await place(api, buyer, order_body((mug, 3)))
    assert (await settled(api, buyer, placed["id"]))["status"] == "confirmed"
    assert await stock_of(api, mug) == 1

    cancelled = await api.client.post(f"{ORDERS}/{placed['id']}/cancel", headers=buyer.headers)
    assert cancelled.status_code == 202

    async def restocked() -> bool:
        listed = (await order_of(api, buyer, placed["id"]))["status"] == "cancelled"
        return listed and await stock_of(api, mug) == 4 and await books(api) == (3000, 3000)

    await eventually(restocked, what="the refund and the stock back")
    order = await order_of(api, buyer, placed["id"])
    assert (order["status"], order["cancel_reason"]) == ("cancelled", "customer_request")


@pytest.mark.parametrize(
    "settings_overrides",
    [{"payment_retry_window_seconds": 0.3, "payment_retry_base_seconds": 0.01}],
)
async def test_an_unreachable_processor_cancels_the_order_after_the_window(
    running: Api, clock: FrozenClock
) -> None:
    api = running
    mug = await product(api, stock=5)
    buyer = await api.user()
    placed = await place(api, buyer, order_body((mug, 1), payment_token="tok_gatewayError"))

    async def waited_out() -> bool:
        clock.advance(timedelta(seconds=0.1))  # the window runs on the service's clock
        return (await order_of(api, buyer, placed["id"]))["status"] == "cancelled"

    await eventually(waited_out, what="the order to be given up on")
    order = await order_of(api, buyer, placed["id"])

    assert (order["status"], order["cancel_reason"]) == ("cancelled", "payment_unavailable")
    paid = await payment(api, placed["id"])
    assert paid.status is PaymentStatus.ABANDONED
    assert paid.attempts > 1
    assert await stock_of(api, mug) == 5
    assert await books(api) == (0, 0)


class HeldCharges:
    """The sandbox, with each charge held until the test lets it through."""

    def __init__(self, inner: PaymentGateway) -> None:
        self.inner = inner
        self.entered = asyncio.Event()
        self.release = asyncio.Event()

    async def charge(
        self, key: str, *, amount_cents: int, currency: str, token: str, reference: str
    ) -> Charge:
        self.entered.set()
        await self.release.wait()
        return await self.inner.charge(
            key, amount_cents=amount_cents, currency=currency, token=token, reference=reference
        )

    async def refund(self, key: str, *, charge_id: str, amount_cents: int) -> Refund:
        return await self.inner.refund(key, charge_id=charge_id, amount_cents=amount_cents)

    async def find_charge(self, reference: str) -> Charge | None:
        return await self.inner.find_charge(reference)


async def test_a_cancel_that_races_the_charge_ends_refunded(running: Api) -> None:
    api = running
    payments = api.container.shop.payments
    held = HeldCharges(payments.gateway)
    payments.gateway = held
    mug = await product(api, stock=5, price_cents=700)
    buyer = await api.user()
    placed = await place(api, buyer, order_body((mug, 1)))
    await asyncio.wait_for(held.entered.wait(), timeout=30)

    cancelled = await api.client.post(f"{ORDERS}/{placed['id']}/cancel", headers=buyer.headers)
    assert cancelled.status_code == 202

    async def heard() -> bool:
        return (await payment(api, placed["id"])).cancel_requested

    await eventually(heard, what="the payment step to hear the cancel")
    held.release.set()

    async def refunded() -> bool:
        return (await payment(api, placed["id"])).status is PaymentStatus.REFUNDED

    await eventually(refunded, what="the refund of the raced charge")
    assert await books(api) == (700, 700)
    assert await stock_of(api, mug) == 5
    order = await order_of(api, buyer, placed["id"])
    assert (order["status"], order["cancel_reason"]) == ("cancelled", "customer_request")
    again = await api.client.post(f"{ORDERS}/{placed['id']}/cancel", headers=buyer.headers)
    assert_problem(again, 409, "invalid_transition")
