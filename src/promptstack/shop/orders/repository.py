"""Named queries over the idempotency keys of placing and the orders' read model."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Insert, Table, bindparam, delete, func, select
from sqlalchemy.dialects import postgresql, sqlite

from promptstack.core.pagination import Page, PageRequest
from promptstack.core.repository import PagedQuery, SessionRepository
from promptstack.shop.orders.models import OrderRequest, OrderView, ShownOrder


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


_VIEWS = cast(Table, OrderView.__table__)
_ALL = select(*_VIEWS.c)
_ONE = _ALL.where(_VIEWS.c.id == bindparam("id"))
_BY_USER = _VIEWS.c.user_id == bindparam("user_id")
_BY_STATUS = _VIEWS.c.status == bindparam("status")


def _listing(*conditions: Any) -> PagedQuery:
    return PagedQuery(
        _ALL.where(*conditions),
        at=OrderView.created_at,
        id_=OrderView.id,
        newest_first=True,
    )


# Built once per filter combination (see PagedQuery); each is served by an index.
_LISTS = {
    (False, False): _listing(),
    (True, False): _listing(_BY_USER),
    (False, True): _listing(_BY_STATUS),
    (True, True): _listing(_BY_USER, _BY_STATUS),
}
_UNSETTLED = OrderView.status.in_(("pending", "paid"))


def _upsert_statement(
    insert: type[postgresql.Insert] | type[sqlite.Insert], *, rebuilding: bool
) -> Insert:
    """Write a view, unless the stored one saw more of the stream: of two projections of
    one order racing, the one that saw more wins, in either order. A rebuild also
    replaces a view at the same version (one that was wrong)."""
    statement = insert(_VIEWS)
    stored, written = _VIEWS.c.version, statement.excluded.version
    return statement.on_conflict_do_update(
        index_elements=[_VIEWS.c.id],
        set_={c.name: statement.excluded[c.name] for c in _VIEWS.c if c.name != "id"},
        where=stored <= written if rebuilding else stored < written,
    )


_UPSERT = {
    (dialect, rebuilding): _upsert_statement(insert, rebuilding=rebuilding)
    for dialect, insert in (("postgresql", postgresql.Insert), ("sqlite", sqlite.Insert))
    for rebuilding in (False, True)
}


class OrderViewRepository(SessionRepository):
    async def shown(self, order_id: uuid.UUID) -> ShownOrder | None:
        connection = await self.connection()
        row: ShownOrder | None = (await connection.execute(_ONE, {"id": order_id})).first()
        return row

    async def write(self, rows: Sequence[dict[str, Any]], *, rebuilding: bool = False) -> None:
        if rows:
            statement = _UPSERT[(self.session.get_bind().dialect.name, rebuilding)]
            await self.session.execute(statement, list(rows))

    async def page(
        self, request: PageRequest, *, user_id: uuid.UUID | None, status: str | None
    ) -> Page[ShownOrder]:
        listing = _LISTS[(user_id is not None, status is not None)]
        params: dict[str, Any] = {}
        if user_id is not None:
            params["user_id"] = user_id
        if status is not None:
            params["status"] = status
        statement, values = listing.statement(request, params)
        connection = await self.connection()
        items: list[ShownOrder] = list((await connection.execute(statement, values)).all())
        return listing.cut(items, request)

    async def unsettled_since(self, before: datetime, limit: int) -> list[ShownOrder]:
        """Orders the saga has not settled, unchanged since `before`, oldest first."""
        connection = await self.connection()
        rows = await connection.execute(
            _ALL.where(_UNSETTLED, OrderView.updated_at < before)
            .order_by(OrderView.updated_at)
            .limit(limit)
        )
        return list(rows.all())

    async def count_unsettled_since(self, before: datetime) -> int:
        found = await self.session.scalar(
            select(func.count()).where(_UNSETTLED, OrderView.updated_at < before)
        )
        return int(found or 0)
