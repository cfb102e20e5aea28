"""The events of an order's stream, which are also what the saga's other steps hear.

`order.created` carries everything the order is (its lines with the prices it was placed
at), so the payment and inventory steps and the projections need no read of the order.
"""

from __future__ import annotations

import uuid
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from promptstack.core.envelope import Event


class CancelReason(StrEnum):
    PAYMENT_DECLINED = "payment_declined"
    PAYMENT_UNAVAILABLE = "payment_unavailable"
    OUT_OF_STOCK = "out_of_stock"
    CUSTOMER_REQUEST = "customer_request"


class OrderLine(BaseModel):
    """A product as it was sold: its price and name at the moment of placing."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    product_id: uuid.UUID
    sku: str = Field(max_length=64)
    name: str = Field(max_length=200)
    kind: str = Field(max_length=16)
    # Credits granted per unit, for a credits product.
    credits: int | None = Field(default=None, gt=0)
    unit_price_cents: int = Field(ge=0)
    quantity: int = Field(ge=1)

    @property
    def total_cents(self) -> int:
        return self.unit_price_cents * self.quantity


class OrderCreated(Event):
    type = "order.created"

    order_id: uuid.UUID
    user_id: uuid.UUID
    lines: tuple[OrderLine, ...]
    currency: str = Field(min_length=3, max_length=3)
    discount_percent: int = Field(ge=0, le=100)
    subtotal_cents: int = Field(ge=0)
    discount_cents: int = Field(ge=0)
    total_cents: int = Field(ge=0)
    # The payment method as the processor's client library tokenised it.
    payment_token: str = Field(max_length=128)


class OrderPaid(Event):
    type = "order.paid"

    order_id: uuid.UUID
    payment_id: str = Field(max_length=128)
    amount_cents: int = Field(ge=0)


class OrderConfirmed(Event):
    type = "order.confirmed"

    order_id: uuid.UUID
    user_id: uuid.UUID
    # The LLM credits the order's credits products grant the buyer, all lines together.
    credits: int = Field(default=0, ge=0)


class OrderCancelled(Event):
    type = "order.cancelled"

    order_id: uuid.UUID
    user_id: uuid.UUID
    reason: CancelReason
    # What was known when cancelling; the payment step refunds whatever it charged.
    detail: str | None = Field(default=None, max_length=500)


class OrderShipped(Event):
    type = "order.shipped"

    order_id: uuid.UUID


class OrderDelivered(Event):
    type = "order.delivered"

    order_id: uuid.UUID


# Every event of an order's stream: what its projections hear.
ORDER_EVENTS: tuple[type[Event], ...] = (
    OrderCreated,
    OrderPaid,
    OrderConfirmed,
    OrderCancelled,
    OrderShipped,
    OrderDelivered,
)
