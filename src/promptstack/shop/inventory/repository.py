"""Named queries over reservations."""

from __future__ import annotations

import uuid

from promptstack.core.repository import Repository
from promptstack.shop.inventory.models import Reservation


class ReservationRepository(Repository[Reservation]):
    model = Reservation

    async def for_update(self, order_id: uuid.UUID) -> Reservation | None:
        return await self.session.get(
            Reservation, order_id, with_for_update=True, populate_existing=True
        )
