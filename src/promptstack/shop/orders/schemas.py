"""Orders as the API accepts and shows them."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from pydantic import (
    ConfigDict,
    Field,
    StrictInt,
    StringConstraints,
    field_validator,
)

from promptstack.http.schemas import Input, Output
from promptstack.shop.catalog.demo import DEMO_MUG_ID
from promptstack.shop.orders.domain import MAX_LINES, MAX_QUANTITY, Order, OrderStatus
from promptstack.shop.orders.events import CancelReason
from promptstack.shop.orders.service import History, Item, NewOrder

# What a payment processor's client library hands over: an opaque, printable token.
PAYMENT_TOKEN_PATTERN = r"^[A-Za-z0-9_\-]{1,128}$"  # noqa: S105 (a shape, no secret)
# The header's value: printable ASCII, as RFC 9110 field values are.
IDEMPOTENCY_KEY_PATTERN = r"^[\x21-\x7e]{1,255}$"


class ItemIn(Input):
    product_id: uuid.UUID
    quantity: Annotated[StrictInt, Field(ge=1, le=MAX_QUANTITY)]


class OrderIn(Input):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "items": [
                        # The demo's mug: `promptstack seed-demo` stocks it.
                        {"product_id": str(DEMO_MUG_ID), "quantity": 2}
                    ],
                    "payment_token": "tok_visa",
                    "discount_percent": 10,
                }
            ]
        }
    )

    items: Annotated[list[ItemIn], Field(min_length=1, max_length=MAX_LINES)]
    payment_token: Annotated[
        str,
        StringConstraints(min_length=1, max_length=128, pattern=PAYMENT_TOKEN_PATTERN),
        Field(
            description="The payment method as the processor tokenised it; in the sandbox "
            "`tok_visa` pays, `tok_chargeDeclined` is declined and `tok_gatewayError` "
            "fails like an outage."
        ),
    ]
    discount_percent: Annotated[StrictInt, Field(ge=0, le=100)] = 0

    @field_validator("items")
    @classmethod
    def _each_product_once(cls, items: list[ItemIn]) -> list[ItemIn]:
        seen: set[uuid.UUID] = set()
        for item in items:
            if item.product_id in seen:
                raise ValueError(f"product {item.product_id} is named twice; order it once")
            seen.add(item.product_id)
        return items

    def command(self) -> NewOrder:
        return NewOrder(
            items=tuple(Item(item.product_id, item.quantity) for item in self.items),
            payment_token=self.payment_token,
            discount_percent=self.discount_percent,
        )


class OrderItemOut(Output):
    product_id: uuid.UUID
    sku: str
    name: str
    kind: str
    credits: int | None
    unit_price_cents: int
    quantity: int
    total_cents: int


class OrderOut(Output):
    id: uuid.UUID
    user_id: uuid.UUID
    status: OrderStatus
    items: list[OrderItemOut]
    currency: str
    discount_percent: int
    subtotal_cents: int
    discount_cents: int
    total_cents: int
    cancel_reason: CancelReason | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, order: Order) -> OrderOut:
        return cls(
            id=order.id,
            user_id=order.user_id,
            status=order.status,
            items=[
                OrderItemOut(**line.model_dump(), total_cents=line.total_cents)
                for line in order.lines
            ],
            currency=order.currency,
            discount_percent=order.discount_percent,
            subtotal_cents=order.subtotal_cents,
            discount_cents=order.discount_cents,
            total_cents=order.total_cents,
            cancel_reason=order.cancel_reason,
            created_at=order.created_at,
            updated_at=order.updated_at,
        )


# Shown to nobody: a payment token is the customer's, and the gateway's business.
_HIDDEN = frozenset({"payment_token"})


class EventOut(Output):
    type: str
    version: int
    occurred_at: datetime
    data: dict[str, Any]


class HistoryOut(Output):
    events: list[EventOut]
    state: OrderOut | None = Field(
        description="The order these events made; null before it was placed."
    )

    @classmethod
    def of(cls, history: History) -> HistoryOut:
        return cls(
            events=[
                EventOut(
                    type=recorded.event.type,
                    version=recorded.version,
                    occurred_at=recorded.envelope.occurred_at,
                    data={
                        name: value
                        for name, value in recorded.event.model_dump(mode="json").items()
                        if name not in _HIDDEN
                    },
                )
                for recorded in history.events
            ],
            state=None if history.state is None else OrderOut.of(history.state),
        )
