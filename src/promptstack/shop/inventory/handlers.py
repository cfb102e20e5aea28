"""The inventory step hears payments completing and orders being cancelled."""

from __future__ import annotations

from promptstack.core.envelope import Envelope
from promptstack.core.unit_of_work import UnitOfWork
from promptstack.events.consumers import Consumers
from promptstack.shop.inventory.service import InventoryService
from promptstack.shop.orders.events import OrderCancelled
from promptstack.shop.payments.events import PaymentCompleted


def register(consumers: Consumers, inventory: InventoryService) -> None:
    async def paid(event: PaymentCompleted, _: Envelope, uow: UnitOfWork) -> None:
        lines = [(line.product_id, line.quantity) for line in event.lines]
        await inventory.reserve(uow, event.order_id, event.payment_id, lines)

    async def cancelled(event: OrderCancelled, _: Envelope, uow: UnitOfWork) -> None:
        await inventory.release(uow, event.order_id)

    consumers.on("shop.inventory", PaymentCompleted, paid)
    consumers.on("shop.inventory", OrderCancelled, cancelled)
