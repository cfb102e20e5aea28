"""The Order aggregate: its state, the rules of its transitions, and its fold.

Plain Python over the order's events. A command looks at the state and answers the
events it causes; `apply` is the only place the state changes, so replaying the
stream, or a snapshot plus the rest, gives the order back exactly.

Customers' and administrators' commands are strict: cancelling a shipped order or
shipping a pending one is an `InvalidTransition`. The saga's reactions are tolerant:
their events may arrive twice or out of order, and one that no longer applies (a
payment for an order the customer has cancelled meanwhile) changes nothing.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import TypeAdapter

from promptstack.core.envelope import Event
from promptstack.core.errors import Conflict
from promptstack.events.recorded import Recorded
from promptstack.shop.orders.events import (
    CancelReason,
    OrderCancelled,
    OrderConfirmed,
    OrderCreated,
    OrderDelivered,
    OrderLine,
    OrderPaid,
    OrderShipped,
)

MAX_LINES = 100
MAX_QUANTITY = 10_000


class OrderStatus(StrEnum):
    PENDING = "pending"
    PAID = "paid"
    CONFIRMED = "confirmed"
    SHIPPED = "shipped"
    DELIVERED = "delivered"
    CANCELLED = "cancelled"


# Until it ships, a customer may still cancel an order.
CANCELLABLE = frozenset({OrderStatus.PENDING, OrderStatus.PAID, OrderStatus.CONFIRMED})
# The saga has not settled these yet.
UNSETTLED = frozenset({OrderStatus.PENDING, OrderStatus.PAID})


class InvalidTransition(Conflict):
    code = "invalid_transition"
    title = "The order cannot do that in its current status"

    def __init__(self, action: str, status: OrderStatus) -> None:
        super().__init__(
            f"an order that is {status} cannot be {action}",
            extra={"order_status": str(status), "action": action},
        )


@dataclass(frozen=True, slots=True)
class Order:
    """An order as its events made it; `status` is None until it is placed."""

    id: uuid.UUID
    user_id: uuid.UUID | None = None
    status: OrderStatus | None = None
    lines: tuple[OrderLine, ...] = ()
    currency: str = ""
    discount_percent: int = 0
    subtotal_cents: int = 0
    discount_cents: int = 0
    total_cents: int = 0
    payment_id: str | None = None
    cancel_reason: CancelReason | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None

    @property
    def credits(self) -> int:
        return sum((line.credits or 0) * line.quantity for line in self.lines)


@dataclass(frozen=True, slots=True)
class Amounts:
    subtotal_cents: int
    discount_cents: int
    total_cents: int


def amounts(lines: Sequence[OrderLine], discount_percent: int) -> Amounts:
    """Integer cents throughout: the discount is the subtotal times the percentage,
    rounded half up to a whole cent, once for the whole order."""
    subtotal = sum(line.total_cents for line in lines)
    discount = (subtotal * discount_percent + 50) // 100
    return Amounts(subtotal, discount, subtotal - discount)


def place(
    order: Order,
    *,
    user_id: uuid.UUID,
    lines: Sequence[OrderLine],
    currency: str,
    discount_percent: int,
    payment_token: str,
) -> list[Event]:
    if order.status is not None:
        raise InvalidTransition("placed again", order.status)
    if not 1 <= len(lines) <= MAX_LINES:
        raise ValueError(f"an order has 1 to {MAX_LINES} lines")
    if any(not 1 <= line.quantity <= MAX_QUANTITY for line in lines):
        raise ValueError(f"a line's quantity is 1 to {MAX_QUANTITY}")
    if not 0 <= discount_percent <= 100:
        raise ValueError("a discount is 0 to 100 percent")
    money = amounts(lines, discount_percent)
    return [
        OrderCreated(
            order_id=order.id,
            user_id=user_id,
            lines=tuple(lines),
            currency=currency,
            discount_percent=discount_percent,
            subtotal_cents=money.subtotal_cents,
            discount_cents=money.discount_cents,
            total_cents=money.total_cents,
            payment_token=payment_token,
        )
    ]


def cancel(order: Order) -> list[Event]:
    """The customer's cancel: any time before the order ships."""
    status = _placed(order)
    if status not in CANCELLABLE:
        raise InvalidTransition("cancelled", status)
    return [_cancelled(order, CancelReason.CUSTOMER_REQUEST)]


def ship(order: Order) -> list[Event]:
    status = _placed(order)
    if status is not OrderStatus.CONFIRMED:
        raise InvalidTransition("shipped", status)
    return [OrderShipped(order_id=order.id)]


def deliver(order: Order) -> list[Event]:
    status = _placed(order)
    if status is not OrderStatus.SHIPPED:
        raise InvalidTransition("delivered", status)
    return [OrderDelivered(order_id=order.id)]


def record_payment(order: Order, payment_id: str, amount_cents: int) -> list[Event]:
    if order.status is not OrderStatus.PENDING:
        return []
    return [OrderPaid(order_id=order.id, payment_id=payment_id, amount_cents=amount_cents)]


def confirm(order: Order, payment_id: str) -> list[Event]:
    """Stock is reserved for a paid order. The reservation may be heard before the
    payment is (they travel on different queues), so a pending order is paid too."""
    if order.status not in UNSETTLED:
        return []
    events: list[Event] = []
    if order.status is OrderStatus.PENDING:
        events.append(
            OrderPaid(order_id=order.id, payment_id=payment_id, amount_cents=order.total_cents)
        )
    assert order.user_id is not None
    events.append(OrderConfirmed(order_id=order.id, user_id=order.user_id, credits=order.credits))
    return events


def fail(order: Order, reason: CancelReason, detail: str | None = None) -> list[Event]:
    """The saga gave up on the order (declined, unavailable, out of stock)."""
    if order.status not in UNSETTLED:
        return []
    return [_cancelled(order, reason, detail)]


def _cancelled(order: Order, reason: CancelReason, detail: str | None = None) -> OrderCancelled:
    assert order.user_id is not None
    return OrderCancelled(order_id=order.id, user_id=order.user_id, reason=reason, detail=detail)


def _placed(order: Order) -> OrderStatus:
    if order.status is None:
        raise InvalidTransition("changed before it is placed", OrderStatus.PENDING)
    return order.status


def apply(order: Order, event: Event, at: datetime) -> Order:
    """The order after `event`, which happened at `at`."""
    match event:
        case OrderCreated():
            return replace(
                order,
                user_id=event.user_id,
                status=OrderStatus.PENDING,
                lines=event.lines,
                currency=event.currency,
                discount_percent=event.discount_percent,
                subtotal_cents=event.subtotal_cents,
                discount_cents=event.discount_cents,
                total_cents=event.total_cents,
                created_at=at,
                updated_at=at,
            )
        case OrderPaid():
            return replace(
                order, status=OrderStatus.PAID, payment_id=event.payment_id, updated_at=at
            )
        case OrderConfirmed():
            return replace(order, status=OrderStatus.CONFIRMED, updated_at=at)
        case OrderCancelled():
            return replace(
                order, status=OrderStatus.CANCELLED, cancel_reason=event.reason, updated_at=at
            )
        case OrderShipped():
            return replace(order, status=OrderStatus.SHIPPED, updated_at=at)
        case OrderDelivered():
            return replace(order, status=OrderStatus.DELIVERED, updated_at=at)
    raise TypeError(f"an order has no event {event.type}")


_STATE = TypeAdapter(Order)


class OrderFold:
    """The order's stream for the event store (`events.sourcing.Fold`)."""

    category = "order"
    schema = 1

    def initial(self, stream: str) -> Order:
        return Order(id=uuid.UUID(stream))

    def apply(self, state: Order, recorded: Recorded) -> Order:
        return apply(state, recorded.event, recorded.envelope.occurred_at)

    def dump(self, state: Order) -> dict[str, Any]:
        dumped: dict[str, Any] = _STATE.dump_python(state, mode="json")
        return dumped

    def restore(self, data: dict[str, Any]) -> Order:
        return _STATE.validate_python(data)


ORDERS = OrderFold()
