"""The inventory step of the saga: reserve a paid order's stock, release a cancelled one's.

A reservation takes every line or none, in one conditional statement under row locks,
so stock never goes negative however many orders race for it; the order's row here
makes each step happen once whatever the delivery order: a cancel heard before the
payment leaves a released row, and the late payment then reserves nothing.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterable

from promptstack.core.clock import Clock
from promptstack.core.unit_of_work import UnitOfWork
from promptstack.shop.catalog.service import CatalogService
from promptstack.shop.inventory.events import InventoryFailed, InventoryReserved
from promptstack.shop.inventory.models import Reservation, ReservationStatus
from promptstack.shop.inventory.repository import ReservationRepository


class InventoryService:
    def __init__(self, catalog: CatalogService, clock: Clock) -> None:
        self.catalog = catalog
        self.clock = clock

    async def reserve(
        self,
        uow: UnitOfWork,
        order_id: uuid.UUID,
        payment_id: str,
        lines: Iterable[tuple[uuid.UUID, int]],
    ) -> None:
        """Reserve a paid order's `lines` (product, quantity), once."""
        reservations = ReservationRepository.of(uow)
        if await reservations.for_update(order_id) is not None:
            return
        wanted: Counter[uuid.UUID] = Counter()
        for product_id, quantity in lines:
            wanted[product_id] += quantity
        short = await self.catalog.take_stock(uow, wanted)
        now = self.clock.now()
        status = ReservationStatus.RESERVED if short is None else ReservationStatus.REFUSED
        reservations.add(
            Reservation(
                order_id=order_id,
                lines=[{"product_id": str(p), "quantity": n} for p, n in wanted.items()],
                status=status,
                created_at=now,
                updated_at=now,
            )
        )
        if short is None:
            event: InventoryReserved | InventoryFailed = InventoryReserved(
                order_id=order_id, payment_id=payment_id
            )
        else:
            event = InventoryFailed(order_id=order_id, product_id=short)
        uow.record(event, aggregate_id=order_id)

    async def release(self, uow: UnitOfWork, order_id: uuid.UUID) -> None:
        reservations = ReservationRepository.of(uow)
        reservation = await reservations.for_update(order_id)
        now = self.clock.now()
        if reservation is None:
            reservations.add(
                Reservation(
                    order_id=order_id,
                    lines=[],
                    status=ReservationStatus.RELEASED,
                    created_at=now,
                    updated_at=now,
                )
            )
            return
        if reservation.status is not ReservationStatus.RESERVED:
            return
        await self.catalog.return_stock(
            uow,
            {uuid.UUID(line["product_id"]): int(line["quantity"]) for line in reservation.lines},
        )
        reservation.status, reservation.updated_at = ReservationStatus.RELEASED, now
