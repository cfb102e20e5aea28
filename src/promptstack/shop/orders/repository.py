"""Named queries over the idempotency keys of placing."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import cast

from sqlalchemy import Insert, Table, bindparam, delete, select
from sqlalchemy.dialects import postgresql, sqlite

from promptstack.core.repository import SessionRepository
from promptstack.shop.orders.models import OrderRequest


@dataclass(frozen=True, slots=True)
class KeyHolder:
    """The order a key was used for, and the body it was used with."""

    order_id: uuid.UUID
    body_hash: str


def _claim_statement(insert: type[postgresql.Insert] | type[sqlite.Insert]) -> Insert:
    """Take the key, or take it over once it has expired; answer the order it names."""
    table = cast(Table, OrderRequest.__table__)
    columns = ("user_id", "key", "body_hash", "order_id", "created_at")
    statement = insert(table).values(
        {name: bindparam(name, type_=table.c[name].type) for name in columns}
    )
    return statement.on_conflict_do_update(
        index_elements=[table.c.user_id, table.c.key],
        set_={name: statement.excluded[name] for name in columns[2:]},
        where=table.c.created_at < bindparam("expired_before", type_=table.c.created_at.type),
    ).returning(table.c.order_id)


_CLAIM = {
    "postgresql": _claim_statement(postgresql.Insert),
    "sqlite": _claim_statement(sqlite.Insert),
}


class OrderRequestRepository(SessionRepository):
    async def claim(
        self,
        user_id: uuid.UUID,
        key: str,
        body_hash: str,
        order_id: uuid.UUID,
        now: datetime,
        expired_before: datetime,
    ) -> KeyHolder:
        """Bind `key` to `order_id`, unless it is bound to a live order: then that one.

        On PostgreSQL a second request with the same key waits here until the first
        one's transaction ends, and then finds its order (or, if it rolled back, takes
        the key); SQLite serialises writers, with the same outcome.
        """
        result = await self.session.execute(
            _CLAIM[self.session.get_bind().dialect.name],
            {
                "user_id": user_id,
                "key": key,
                "body_hash": body_hash,
                "order_id": order_id,
                "created_at": now,
                "expired_before": expired_before,
            },
        )
        if result.scalar_one_or_none() is not None:
            return KeyHolder(order_id, body_hash)
        row = (
            await self.session.execute(
                select(OrderRequest.order_id, OrderRequest.body_hash).where(
                    OrderRequest.user_id == user_id, OrderRequest.key == key
                )
            )
        ).one()
        return KeyHolder(row.order_id, row.body_hash)

    async def purge(self, before: datetime) -> int:
        result = await self.session.execute(
            delete(OrderRequest).where(OrderRequest.created_at < before)
        )
        return int(result.rowcount)  # type: ignore[attr-defined]
