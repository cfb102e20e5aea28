"""The payment step hears orders being placed and cancelled."""

from __future__ import annotations

from promptstack.core.envelope import Envelope
from promptstack.core.unit_of_work import UnitOfWork
from promptstack.events.consumers import Consumers
from promptstack.shop.orders.events import OrderCancelled, OrderCreated
from promptstack.shop.payments.events import Reserve
from promptstack.shop.payments.service import PaymentService, ToCharge


def register(consumers: Consumers, payments: PaymentService) -> None:
    async def placed(event: OrderCreated, _: Envelope, uow: UnitOfWork) -> None:
        lines = tuple(
            Reserve(product_id=line.product_id, quantity=line.quantity) for line in event.lines
        )
        await payments.start(
            uow,
            ToCharge(
                order_id=event.order_id,
                user_id=event.user_id,
                amount_cents=event.total_cents,
                currency=event.currency,
                token=event.payment_token,
                lines=lines,
            ),
        )

    async def cancelled(event: OrderCancelled, _: Envelope, uow: UnitOfWork) -> None:
        await payments.cancel(uow, event.order_id, event.user_id)

    consumers.on("shop.payments", OrderCreated, placed)
    consumers.on("shop.payments", OrderCancelled, cancelled)
