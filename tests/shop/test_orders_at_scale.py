"""Two hundred orders at once for a stock of ten, through two API processes and a relay
process sharing PostgreSQL: exactly ten are confirmed, every other one is cancelled
out of stock and refunded, and the stock ends at zero, never below."""

from __future__ import annotations

import asyncio
import signal
from collections import Counter
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from promptstack.accounts.models import Role
from promptstack.accounts.service import NewAccount
from promptstack.bootstrap import bootstrap
from promptstack.shop.catalog.models import Product
from promptstack.shop.orders.models import OrderView
from promptstack.shop.payments.models import Payment, PaymentStatus, SandboxOperation
from tests.conftest import empty_postgres, make_settings
from tests.fixtures.processes import service_env, start_relay, two_services
from tests.fixtures.support import PASSWORD, eventually

pytestmark = pytest.mark.postgres

ORDERS = 200
STOCK = 10
BUYERS = 10
PRICE = 500


async def login(client: httpx.AsyncClient, n: int) -> dict[str, str]:
    body = {"email": f"buyer{n}@example.com", "username": f"buyer{n}", "password": PASSWORD}
    assert (await client.post("/api/v1/auth/register", json=body)).status_code == 201
    tokens = await client.post(
        "/api/v1/auth/login", data={"username": body["username"], "password": PASSWORD}
    )
    return {"Authorization": f"Bearer {tokens.json()['access_token']}"}


async def test_two_hundred_orders_for_ten_in_stock(postgres_url: str, tmp_path: Path) -> None:
    await empty_postgres(postgres_url)
    env = service_env(
        postgres_url,
        tmp_path,
        EMBEDDED_RELAY="false",
        JOB_CONCURRENCY="8",
        OUTBOX_POLL_SECONDS="0.2",
        DATABASE_POOL_SIZE="10",
        AUTH_RATE_LIMIT_PER_MINUTE="1000",
        RATE_LIMIT_ENABLED="false",
    )
    settings = make_settings(postgres_url, tmp_path)
    local = bootstrap(settings)
    relay = start_relay(env, tmp_path / "relay.log")
    try:
        await local.accounts.service.register(
            NewAccount(email="boss@example.com", username="boss", password=PASSWORD),
            role=Role.ADMIN,
        )
        async with two_services(env, tmp_path) as (a, b):
            token = await a.post(
                "/api/v1/auth/login", data={"username": "boss", "password": PASSWORD}
            )
            admin = {"Authorization": f"Bearer {token.json()['access_token']}"}
            created = await a.post(
                "/api/v1/products",
                json={
                    "sku": "RARE-1",
                    "name": "Rare",
                    "price_cents": PRICE,
                    "currency": "EUR",
                    "stock": STOCK,
                },
                headers=admin,
            )
            assert created.status_code == 201, created.text
            product_id = created.json()["id"]
            buyers = [await login(a if n % 2 else b, n) for n in range(BUYERS)]
            body = {
                "items": [{"product_id": product_id, "quantity": 1}],
                "payment_token": "tok_visa",
            }

            placed = await asyncio.gather(
                *(
                    (a if n % 2 else b).post(
                        "/api/v1/orders", json=body, headers=buyers[n % BUYERS]
                    )
                    for n in range(ORDERS)
                )
            )

            assert [response.status_code for response in placed] == [202] * ORDERS
            assert len({response.json()["id"] for response in placed}) == ORDERS

        async def outcome() -> Counter[str] | None:
            async with local.uow(read_only=True) as uow:
                statuses = Counter(
                    dict(
                        (
                            await uow.session.execute(
                                select(OrderView.status, func.count()).group_by(OrderView.status)
                            )
                        ).all()
                    )
                )
                payments = Counter(
                    dict(
                        (
                            await uow.session.execute(
                                select(Payment.status, func.count()).group_by(Payment.status)
                            )
                        ).all()
                    )
                )
            settled = statuses["confirmed"] + statuses["cancelled"] == ORDERS
            refunded = payments[PaymentStatus.REFUNDED] == statuses["cancelled"]
            return statuses if settled and refunded else None

        statuses = await eventually(
            outcome, within=240, what="every order to settle and every refund to be made"
        )
        assert statuses == Counter({"confirmed": STOCK, "cancelled": ORDERS - STOCK})
        async with local.uow(read_only=True) as uow:
            reasons = (
                await uow.session.execute(
                    select(OrderView.cancel_reason).where(OrderView.status == "cancelled")
                )
            ).scalars()
            assert set(reasons) == {"out_of_stock"}
            stock = await uow.session.scalar(select(Product.stock))
            books = dict(
                (
                    await uow.session.execute(
                        select(SandboxOperation.kind, func.sum(SandboxOperation.amount_cents))
                        .where(SandboxOperation.outcome == "succeeded")
                        .group_by(SandboxOperation.kind)
                    )
                ).all()
            )
        assert stock == 0
        assert books == {"charge": ORDERS * PRICE, "refund": (ORDERS - STOCK) * PRICE}
    finally:
        relay.send_signal(signal.SIGTERM)
        relay.wait(timeout=60)
        await local.aclose()
