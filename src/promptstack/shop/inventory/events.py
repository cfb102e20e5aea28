"""What the inventory step tells the rest of the saga."""

from __future__ import annotations

import uuid

from pydantic import Field

from promptstack.core.envelope import Event


class InventoryReserved(Event):
    type = "inventory.reserved"

    order_id: uuid.UUID
    # The payment the reservation followed, for an order that hears this first.
    payment_id: str = Field(max_length=128)


class InventoryFailed(Event):
    type = "inventory.failed"

    order_id: uuid.UUID
    # The first product (by id) there was not enough of.
    product_id: uuid.UUID
