"""The saga under faults, with random orders (hypothesis): cards that pay, are declined
or find the processor down; stock that runs out; customers who cancel at once; every
consumer's delivery crashing after its work and before its commit, or delivered twice
at the same time; the charge job dying after the processor charged. Whatever happens,
every order ends confirmed or cancelled, and money, stock and credits add up."""

from __future__ import annotations

import asyncio
import contextlib
import random
import uuid
from collections import Counter
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from promptstack.core.clock import SystemClock
from promptstack.core.envelope import Envelope, Event
from promptstack.core.unit_of_work import UnitOfWork
from promptstack.events.consumers import Consumer, Handler
from promptstack.events.outbox import OutboxRepository
from promptstack.shop.orders.models import OrderView
from promptstack.shop.payments.gateway import Charge, PaymentGateway, Refund
from promptstack.shop.payments.models import Payment, PaymentStatus, SandboxOperation
from tests.fixtures.shop import ORDERS, order_body, place, product
from tests.fixtures.support import Api, eventually

TOKENS = ("tok_visa", "tok_visa", "tok_chargeDeclined", "tok_gatewayError")
# A payment that ended: nothing more will move money for it.
FINAL = {
    PaymentStatus.CHARGED,
    PaymentStatus.DECLINED,
    PaymentStatus.ABANDONED,
    PaymentStatus.VOIDED,
    PaymentStatus.REFUNDED,
}


class Crash(Exception):
    """A process dying at this point: what it did in its transaction is rolled back."""


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {
        "outbox_poll_seconds": 0.05,
        "event_retry_base_seconds": 0.01,
        "event_retry_max_seconds": 0.05,
        "event_max_attempts": 50,
        "job_retry_base_seconds": 0.01,
        "job_max_retries": 10,
        "payment_retry_window_seconds": 0,
        "payment_retry_base_seconds": 0.01,
    }


@pytest.fixture
def clock() -> SystemClock:
    """The real clock: retries of failed deliveries wait on it, and a frozen one would
    hold them back until it had been read often enough."""
    return SystemClock()


class Faults:
    """Decides, from the example's seed, which deliveries crash or come twice: each
    (consumer, event) at most once, so every step gets through in the end."""

    def __init__(self, seed: int, crash: float, duplicate: float) -> None:
        self.random = random.Random(seed)
        self.crash, self.duplicate = crash, duplicate
        self.seen: set[tuple[str, uuid.UUID]] = set()
        self.crashed = 0
        self.duplicated = 0

    def first_time(self, what: str, key: uuid.UUID) -> bool:
        if (what, key) in self.seen:
            return False
        self.seen.add((what, key))
        return True


@dataclass
class Rig:
    """The saga running as the server runs it, with the current example's faults."""

    api: Api
    faults: Faults


def _wrapped(consumer: Consumer, handler: Handler[Any], rig: Rig) -> Handler[Any]:
    delivery = rig.api.container.events.delivery

    async def again(envelope: Envelope) -> None:
        with contextlib.suppress(Exception):  # a failed duplicate is only a duplicate
            await delivery.deliver(consumer, envelope)

    async def handle(event: Event, envelope: Envelope, uow: UnitOfWork) -> None:
        await handler(event, envelope, uow)
        faults = rig.faults
        if (
            faults.first_time(f"dup:{consumer.name}", envelope.id)
            and faults.random.random() < faults.duplicate
        ):
            faults.duplicated += 1
            # Delivered again while the first delivery is still open: the inbox lets
            # one of them through.
            asyncio.get_running_loop().create_task(again(envelope))
        if (
            faults.first_time(f"crash:{consumer.name}", envelope.id)
            and faults.random.random() < faults.crash
        ):
            faults.crashed += 1
            raise Crash(f"{consumer.name} died handling {envelope.type}")

    return handle


class DyingAfterCharge:
    """The processor charges, then the charging job's process dies before it hears."""

    def __init__(self, inner: PaymentGateway, rig: Rig) -> None:
        self.inner = inner
        self.rig = rig

    async def charge(
        self, key: str, *, amount_cents: int, currency: str, token: str, reference: str
    ) -> Charge:
        charge = await self.inner.charge(
            key, amount_cents=amount_cents, currency=currency, token=token, reference=reference
        )
        faults = self.rig.faults
        first = faults.first_time("charge", uuid.UUID(reference))
        if first and faults.random.random() < faults.crash:
            faults.crashed += 1
            raise Crash("the charging job died after the processor charged")
        return charge

    async def refund(self, key: str, *, charge_id: str, amount_cents: int) -> Refund:
        return await self.inner.refund(key, charge_id=charge_id, amount_cents=amount_cents)

    async def find_charge(self, reference: str) -> Charge | None:
        return await self.inner.find_charge(reference)


@pytest.fixture
async def rig(api: Api) -> Rig:
    """Once per test: the relay and the executor started, every shop consumer and the
    processor wrapped with whatever faults the running example set."""
    made = Rig(api, Faults(0, 0.0, 0.0))
    for consumer in api.container.events.consumers:
        if consumer.name.startswith("shop."):
            consumer.handlers = {
                kind: _wrapped(consumer, handler, made)
                for kind, handler in consumer.handlers.items()
            }
    payments = api.container.shop.payments
    payments.gateway = DyingAfterCharge(payments.gateway, made)
    api.container.events.relay.start()
    await api.container.jobs.executor.start()
    return made


async def quiet(api: Api) -> bool:
    """Nothing left to deliver and no job left to run: every effect has happened."""
    async with api.container.uow(read_only=True) as uow:
        backlog = await OutboxRepository.of(uow).backlog()
    assert backlog.parked == 0, "a consumer gave up on an event"
    return backlog.pending == 0 and not await api.container.jobs.service.unfinished()


@dataclass(frozen=True)
class Wanted:
    lines: tuple[tuple[int, int], ...]  # (product index, quantity)
    token: str
    discount: int
    cancel: bool


orders_strategy = st.lists(
    st.builds(
        Wanted,
        lines=st.lists(
            st.tuples(st.integers(0, 2), st.integers(1, 3)),
            min_size=1,
            max_size=3,
            unique_by=lambda line: line[0],
        ).map(tuple),
        token=st.sampled_from(TOKENS),
        discount=st.sampled_from([0, 15, 100]),
        cancel=st.booleans(),
    ),
    min_size=1,
    max_size=5,
)


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    stocks=st.lists(st.integers(0, 4), min_size=3, max_size=3),
    credits_pack=st.booleans(),
    wanted=orders_strategy,
    seed=st.integers(0, 2**32),
    crash=st.sampled_from([0.0, 0.3, 0.7]),
    duplicate=st.sampled_from([0.0, 0.5]),
)
async def test_every_order_settles_and_everything_adds_up(
    rig: Rig,
    stocks: list[int],
    credits_pack: bool,
    wanted: list[Wanted],
    seed: int,
    crash: float,
    duplicate: float,
) -> None:
    rig.faults = Faults(seed, crash, duplicate)
    api = rig.api

    items = [
        await product(
            api,
            stock=stock,
            price_cents=300 + 100 * n,
            **({"kind": "credits", "credits": 50} if credits_pack and n == 0 else {}),
        )
        for n, stock in enumerate(stocks)
    ]
    buyer = await api.user()
    placed = []
    for order in wanted:
        body = order_body(
            *((items[i], quantity) for i, quantity in order.lines),
            payment_token=order.token,
            discount_percent=order.discount,
        )
        made = await place(api, buyer, body)
        placed.append(made)
        if order.cancel:
            cancel = await api.client.post(f"{ORDERS}/{made['id']}/cancel", headers=buyer.headers)
            assert cancel.status_code in {202, 409}, cancel.text
    ids = [uuid.UUID(order["id"]) for order in placed]

    async def settled() -> dict[uuid.UUID, Any] | None:
        async with api.container.uow(read_only=True) as uow:
            views = {
                view.id: view
                for view in (
                    await uow.session.scalars(select(OrderView).where(OrderView.id.in_(ids)))
                ).all()
            }
            money = {
                payment.order_id: payment.status
                for payment in (
                    await uow.session.scalars(select(Payment).where(Payment.order_id.in_(ids)))
                ).all()
            }
        done = len(views) == len(ids) and all(
            v.status in {"confirmed", "cancelled"} for v in views.values()
        )
        for order_id, view in views.items():
            status = money.get(order_id)
            if view.status == "cancelled" and status not in FINAL - {PaymentStatus.CHARGED}:
                done = False
            if view.status == "confirmed" and status is not PaymentStatus.CHARGED:
                done = False
        return views if done else None

    views = await eventually(settled, within=120, what="every order to settle")
    await eventually(lambda: quiet(api), within=120, what="the backbone to have nothing left")

    confirmed = [v for v in views.values() if v.status == "confirmed"]
    references = [str(order_id) for order_id in ids]
    async with api.container.uow(read_only=True) as uow:
        books = Counter(
            dict(
                (
                    await uow.session.execute(
                        select(SandboxOperation.kind, func.sum(SandboxOperation.amount_cents))
                        .where(
                            SandboxOperation.outcome == "succeeded",
                            SandboxOperation.reference.in_(references),
                        )
                        .group_by(SandboxOperation.kind)
                    )
                ).all()
            )
        )
    assert books["charge"] - books["refund"] == sum(v.total_cents for v in confirmed)
    taken: Counter[str] = Counter()
    for view in confirmed:
        for line in view.items:
            taken[line["product_id"]] += line["quantity"]
    for item, stock in zip(items, stocks, strict=True):
        shown = (await api.client.get(f"/api/v1/products/{item['id']}")).json()
        assert shown["stock"] == stock - taken[item["id"]] >= 0
    granted = sum((line["credits"] or 0) * line["quantity"] for v in confirmed for line in v.items)
    me = (await api.client.get("/api/v1/users/me", headers=buyer.headers)).json()
    assert me["credits"] == granted
    ledger = (await api.client.get("/api/v1/users/me/credit-ledger", headers=buyer.headers)).json()[
        "items"
    ]
    assert len(ledger) == sum(1 for v in confirmed if any(line["credits"] for line in v.items))
