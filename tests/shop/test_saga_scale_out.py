"""The saga on the scale-out parts: PostgreSQL, RabbitMQ (a queue per consumer, so the
steps hear events in whatever order their queues deliver), Redis, a `promptstack relay`
process running the consumers and a Celery worker running the payment jobs."""

from __future__ import annotations

import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.amqp import delete_namespace
from tests.fixtures.celery_worker import WorkerProcess
from tests.fixtures.processes import start_relay
from tests.fixtures.shop import ORDERS, order_body, place, product
from tests.fixtures.support import Account, Api, eventually

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.parametrize("backend", ["postgres"], indirect=True),
]


@pytest.fixture
def settings_overrides(
    amqp_url: str, amqp_namespace: str, shared_redis_url: str, cache_namespace: str
) -> dict[str, Any]:
    return {
        "amqp_url": amqp_url,
        "amqp_namespace": amqp_namespace,
        "celery_broker_url": amqp_url,
        "celery_queue": f"{amqp_namespace}.jobs",
        "redis_url": shared_redis_url,
        "cache_namespace": cache_namespace,
        "embedded_relay": False,
    }


def environment(api: Api) -> dict[str, str]:
    settings = api.settings
    return {
        "DATABASE_URL": settings.database_url,
        "AMQP_URL": str(settings.amqp_url),
        "AMQP_NAMESPACE": settings.amqp_namespace,
        "CELERY_BROKER_URL": str(settings.celery_broker_url),
        "CELERY_QUEUE": settings.celery_queue,
        "REDIS_URL": str(settings.redis_url),
        "CACHE_NAMESPACE": settings.cache_namespace,
        "EMAIL_BACKEND": "maildir",
        "MAILDIR_PATH": str(settings.maildir_path),
        "OUTBOX_POLL_SECONDS": "0.2",
        "PAYMENT_RETRY_BASE_SECONDS": "0.05",
        "JOB_RETRY_BASE_SECONDS": "0.05",
        "LOG_JSON": "false",
        "LOG_LEVEL": "WARNING",
        "DATABASE_POOL_SIZE": "4",
    }


@pytest.fixture
async def scaled_out(api: Api, tmp_path: Path) -> AsyncIterator[Api]:
    env = environment(api)
    relay = start_relay(env, tmp_path / "relay.log")
    worker = WorkerProcess(env, tmp_path)
    try:
        yield api
    finally:
        relay.send_signal(signal.SIGTERM)
        relay.wait(timeout=60)
        worker.stop()
        await delete_namespace(api.settings, api.container.events.consumers)


async def outcome(api: Api, buyer: Account, order_id: str) -> tuple[str, str | None]:
    async def settled() -> tuple[str, str | None] | None:
        shown = (await api.client.get(f"{ORDERS}/{order_id}", headers=buyer.headers)).json()
        if shown["status"] in {"confirmed", "cancelled"}:
            return shown["status"], shown["cancel_reason"]
        return None

    found: tuple[str, str | None] = await eventually(settled, within=90, what="the order")
    return found


async def stock(api: Api, item: dict[str, Any]) -> int:
    shown: int = (await api.client.get(f"/api/v1/products/{item['id']}")).json()["stock"]
    return shown


async def test_orders_settle_through_the_broker_and_the_worker(scaled_out: Api) -> None:
    api = scaled_out
    mug = await product(api, stock=3, price_cents=800)
    pack = await product(api, stock=10, kind="credits", credits=250)
    buyer = await api.user()

    paid = await place(api, buyer, order_body((mug, 2), (pack, 2)))
    declined = await place(api, buyer, order_body((mug, 1), payment_token="tok_chargeDeclined"))
    assert await outcome(api, buyer, paid["id"]) == ("confirmed", None)
    assert await outcome(api, buyer, declined["id"]) == ("cancelled", "payment_declined")
    too_many = await place(api, buyer, order_body((mug, 2)))
    assert await outcome(api, buyer, too_many["id"]) == ("cancelled", "out_of_stock")

    async def credited() -> bool:
        me = (await api.client.get("/api/v1/users/me", headers=buyer.headers)).json()
        return bool(me["credits"] == 500)

    await eventually(credited, within=60, what="the credits granted by another process")
    assert await stock(api, mug) == 1

    cancelled = await api.client.post(f"{ORDERS}/{paid['id']}/cancel", headers=buyer.headers)
    assert cancelled.status_code == 202

    async def restocked() -> bool:
        # Read through the cache: the inventory step in the relay process dropped it.
        return await stock(api, mug) == 3 and await stock(api, pack) == 10

    await eventually(restocked, within=60, what="the stock given back")

    async def listed_cancelled() -> bool:
        # The read model hears the cancel on a queue of its own, maybe after the stock.
        shown = (await api.client.get(f"{ORDERS}/{paid['id']}", headers=buyer.headers)).json()
        return bool(shown["status"] == "cancelled")

    await eventually(listed_cancelled, within=60, what="the read model to show the cancel")
    assert await outcome(api, buyer, paid["id"]) == ("cancelled", "customer_request")
