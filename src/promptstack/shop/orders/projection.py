"""The orders' read model, kept from their streams (CQRS).

The projection hears every order event, but what it applies comes from the store: the
events after the version its view has reached, in stream order. So a duplicate finds
nothing new, an event heard before an earlier one brings the earlier one with it, and
nothing is ever applied twice; a write is kept only if it saw more of the stream than
the stored view, so two deliveries racing end at the later state in either order.

`rebuild` writes every view again from the store, a batch of streams at a time, while
the API goes on serving (the old rows stay until replaced, and the live projection's
newer writes win over the rebuild's).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from promptstack.core.unit_of_work import UnitOfWork, UnitOfWorkFactory
from promptstack.events.sourcing import Loaded, Streams
from promptstack.events.store import EventStore
from promptstack.shop.orders.domain import ORDERS, Order
from promptstack.shop.orders.models import ShownOrder
from promptstack.shop.orders.repository import OrderViewRepository

NAME = "orders"
REBUILD_BATCH = 500


def view_row(order: Order, version: int) -> dict[str, Any]:
    return {
        "id": order.id,
        "user_id": order.user_id,
        "status": str(order.status),
        "cancel_reason": None if order.cancel_reason is None else str(order.cancel_reason),
        "items": [line.model_dump(mode="json") for line in order.lines],
        "currency": order.currency,
        "discount_percent": order.discount_percent,
        "subtotal_cents": order.subtotal_cents,
        "discount_cents": order.discount_cents,
        "total_cents": order.total_cents,
        "payment_id": order.payment_id,
        "version": version,
        "created_at": order.created_at,
        "updated_at": order.updated_at,
    }


def order_of(row: ShownOrder) -> Order:
    return ORDERS.restore(
        {
            "id": row.id,
            "user_id": row.user_id,
            "status": row.status,
            "lines": row.items,
            "currency": row.currency,
            "discount_percent": row.discount_percent,
            "subtotal_cents": row.subtotal_cents,
            "discount_cents": row.discount_cents,
            "total_cents": row.total_cents,
            "payment_id": row.payment_id,
            "cancel_reason": row.cancel_reason,
            "created_at": row.created_at,
            "updated_at": row.updated_at,
        }
    )


class OrderProjection:
    name = NAME

    def __init__(self, uow: UnitOfWorkFactory, streams: Streams[Order]) -> None:
        self.uow = uow
        self.streams = streams

    async def catch_up(self, uow: UnitOfWork, order_id: uuid.UUID) -> None:
        """Bring the order's view up to its stream, in the consumer's transaction."""
        views = OrderViewRepository.of(uow)
        row = await views.shown(order_id)
        start = (
            Loaded(order_of(row), row.version)
            if row is not None
            else Loaded(ORDERS.initial(str(order_id)), 0)
        )
        new = await EventStore.of(uow).read(str(order_id), after=start.version)
        if new:
            after = self.streams.advance(start, new)
            await views.write([view_row(after.state, after.version)])

    async def rebuild(self, progress: Callable[[int, int], None] | None = None) -> int:
        """Write every order's view from its stream again; how many were written.
        `progress(done, total)` is told after each batch."""
        async with self.uow(read_only=True, primary=True) as uow:
            total = await EventStore.of(uow).count_streams(ORDERS.category)
        done, after = 0, ""
        while True:
            async with self.uow() as uow:
                store = EventStore.of(uow)
                streams = await store.streams(ORDERS.category, after=after, limit=REBUILD_BATCH)
                if not streams:
                    break
                events = await store.read_many(streams)
                rows = []
                for stream in streams:
                    replayed = self.streams.replay(stream, events[stream])
                    rows.append(view_row(replayed.state, replayed.version))
                await OrderViewRepository.of(uow).write(rows, rebuilding=True)
            done, after = done + len(streams), streams[-1]
            if progress is not None:
                progress(done, max(total, done))
        return done
