"""What the payment step tells the rest of the saga."""

from __future__ import annotations

import uuid
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from promptstack.core.envelope import Event


class Reserve(BaseModel):
    """A quantity of a product the order needs from stock."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    product_id: uuid.UUID
    quantity: int = Field(ge=1)


class PaymentCompleted(Event):
    """The order is paid. It carries the order's lines, copied from `order.created`, so
    the inventory step reserves without reading the order."""

    type = "payment.completed"

    order_id: uuid.UUID
    payment_id: str = Field(max_length=128)
    amount_cents: int = Field(ge=0)
    lines: tuple[Reserve, ...]


class FailureReason(StrEnum):
    DECLINED = "declined"
    UNAVAILABLE = "unavailable"


class PaymentFailed(Event):
    type = "payment.failed"

    order_id: uuid.UUID
    reason: FailureReason
    detail: str | None = Field(default=None, max_length=500)


class PaymentRefunded(Event):
    type = "payment.refunded"

    order_id: uuid.UUID
    payment_id: str = Field(max_length=128)
    amount_cents: int = Field(ge=0)
