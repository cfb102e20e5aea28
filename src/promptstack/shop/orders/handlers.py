"""Orders hear the saga's other steps, and tell the buyer how it ended.

Each reaction runs the aggregate's tolerant command in the consumer's transaction, with
its inbox entry: a duplicate is dropped by the inbox, a late or out-of-order one changes
nothing, and a lost race for the stream rolls back and is delivered again.
"""

from __future__ import annotations

import uuid

from promptstack.accounts.credit_models import CreditReason
from promptstack.accounts.credits import CreditLedger
from promptstack.core.envelope import Envelope, Event
from promptstack.core.unit_of_work import UnitOfWork
from promptstack.events.consumers import Consumers
from promptstack.notifications.service import NotificationService
from promptstack.shop.inventory.events import InventoryFailed, InventoryReserved
from promptstack.shop.orders import domain
from promptstack.shop.orders.events import (
    ORDER_EVENTS,
    CancelReason,
    OrderCancelled,
    OrderConfirmed,
)
from promptstack.shop.orders.projection import OrderProjection
from promptstack.shop.orders.service import OrderService
from promptstack.shop.payments.events import FailureReason, PaymentCompleted, PaymentFailed

_CANCEL_REASONS = {
    FailureReason.DECLINED: CancelReason.PAYMENT_DECLINED,
    FailureReason.UNAVAILABLE: CancelReason.PAYMENT_UNAVAILABLE,
}
_WHY = {
    CancelReason.PAYMENT_DECLINED: "the payment was declined",
    CancelReason.PAYMENT_UNAVAILABLE: "the payment could not be taken: the payment service "
    "stayed unreachable",
    CancelReason.OUT_OF_STOCK: "an item is out of stock; the payment has been refunded",
    CancelReason.CUSTOMER_REQUEST: "you cancelled it; anything paid is refunded",
}


def register(
    consumers: Consumers,
    orders: OrderService,
    projection: OrderProjection,
    credits: CreditLedger,
    notifications: NotificationService,
) -> None:
    async def project(event: Event, envelope: Envelope, uow: UnitOfWork) -> None:
        await projection.catch_up(uow, uuid.UUID(envelope.aggregate_id))

    async def paid(event: PaymentCompleted, _: Envelope, uow: UnitOfWork) -> None:
        await orders.react(
            uow,
            event.order_id,
            lambda order: domain.record_payment(order, event.payment_id, event.amount_cents),
        )

    async def payment_failed(event: PaymentFailed, _: Envelope, uow: UnitOfWork) -> None:
        reason = _CANCEL_REASONS[event.reason]
        await orders.react(
            uow, event.order_id, lambda order: domain.fail(order, reason, event.detail)
        )

    async def reserved(event: InventoryReserved, _: Envelope, uow: UnitOfWork) -> None:
        await orders.react(
            uow, event.order_id, lambda order: domain.confirm(order, event.payment_id)
        )

    async def out_of_stock(event: InventoryFailed, _: Envelope, uow: UnitOfWork) -> None:
        detail = f"not enough of product {event.product_id}"
        await orders.react(
            uow,
            event.order_id,
            lambda order: domain.fail(order, CancelReason.OUT_OF_STOCK, detail),
        )

    async def grant(event: OrderConfirmed, _: Envelope, uow: UnitOfWork) -> None:
        if event.credits:
            await credits.grant(
                uow, event.user_id, event.credits, CreditReason.PURCHASE, f"order:{event.order_id}"
            )

    async def tell_confirmed(event: OrderConfirmed, _: Envelope, uow: UnitOfWork) -> None:
        notifications.notify(
            uow,
            event.user_id,
            "Your order is confirmed",
            f"Order {event.order_id} is paid and its items are reserved for you."
            + (f" {event.credits} credits were added to your balance." if event.credits else ""),
        )

    async def tell_cancelled(event: OrderCancelled, _: Envelope, uow: UnitOfWork) -> None:
        notifications.notify(
            uow,
            event.user_id,
            "Your order is cancelled",
            f"Order {event.order_id} is cancelled: {_WHY[event.reason]}.",
        )

    for kind in ORDER_EVENTS:
        consumers.on(f"shop.projection.{projection.name}", kind, project)
    consumers.on("shop.orders", PaymentCompleted, paid)
    consumers.on("shop.orders", PaymentFailed, payment_failed)
    consumers.on("shop.orders", InventoryReserved, reserved)
    consumers.on("shop.orders", InventoryFailed, out_of_stock)
    consumers.on("shop.credits", OrderConfirmed, grant)
    consumers.on("shop.notify", OrderConfirmed, tell_confirmed)
    consumers.on("shop.notify", OrderCancelled, tell_cancelled)
