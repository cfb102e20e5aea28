"""Products, as the catalog and the inventory read and change them."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Row, Table, bindparam, case, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError

from promptstack.core.errors import Conflict
from promptstack.core.pagination import Page, PageRequest
from promptstack.core.repository import PagedQuery, Repository
from promptstack.shop.catalog.models import Product, ProductView

_SHOWN = (
    Product.id,
    Product.sku,
    Product.name,
    Product.description,
    Product.price_cents,
    Product.currency,
    Product.stock,
    Product.kind,
    Product.credits,
    Product.active,
    Product.created_at,
    Product.updated_at,
)
_ALL = select(*_SHOWN)
_MATCHING = Product.search_key.like(bindparam("pattern"), escape="\\")


def _listing(query: Any) -> PagedQuery:
    return PagedQuery(query, at=Product.created_at, id_=Product.id)


# Built once for each combination a list may ask for (see PagedQuery).
_LISTS = {
    (False, False): _listing(_ALL.where(Product.active)),
    (False, True): _listing(_ALL.where(Product.active, _MATCHING)),
    (True, False): _listing(_ALL),
    (True, True): _listing(_ALL.where(_MATCHING)),
}
_ONE = _ALL.where(Product.id == bindparam("id"))
_MANY = _ALL.where(Product.id.in_(bindparam("ids", expanding=True)))


class SkuTaken(Conflict):
    code = "sku_taken"
    title = "Another product has this SKU"


class ProductRepository(Repository[Product]):
    model = Product

    async def save(self) -> None:
        """Write pending changes now; a SKU another product took meanwhile is `SkuTaken`."""
        try:
            await self.session.flush()
        except IntegrityError as exc:
            raise SkuTaken("Another product has this SKU (SKUs ignore letter case).") from exc

    async def for_update(self, product_id: uuid.UUID) -> Product | None:
        return await self.session.get(Product, product_id, with_for_update=True)

    async def shown(self, product_id: uuid.UUID) -> ProductView | None:
        connection = await self.connection()
        row = (await connection.execute(_ONE, {"id": product_id})).first()
        return None if row is None else ProductView.model_validate(row)

    async def shown_many(self, product_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, ProductView]:
        connection = await self.connection()
        rows = await connection.execute(_MANY, {"ids": list(product_ids)})
        return {row.id: ProductView.model_validate(row) for row in rows}

    async def take_stock(self, wanted: Mapping[uuid.UUID, int], now: datetime) -> uuid.UUID | None:
        """Take every quantity in `wanted` from stock, or none of them: the first product
        (by id) short of its quantity, or None when all were taken.

        The rows are locked in id order first (PostgreSQL), so concurrent reservations
        of overlapping products queue instead of deadlocking, and what is checked is
        what is changed; then one conditional statement takes them all.
        """
        ids = sorted(wanted)
        rows = await self.session.execute(
            select(Product.id, Product.stock)
            .where(Product.id.in_(ids))
            .order_by(Product.id)
            .with_for_update()
        )
        stock: dict[uuid.UUID, int] = {row.id: row.stock for row in rows}
        for product_id in ids:
            if stock.get(product_id, 0) < wanted[product_id]:
                return product_id
        taken = await self._add_stock(wanted, now, sign=-1)
        if taken != len(ids):
            raise RuntimeError("stock changed under a lock")
        return None

    async def return_stock(self, given: Mapping[uuid.UUID, int], now: datetime) -> None:
        await self._add_stock(given, now, sign=1)

    async def _add_stock(
        self, amounts: Mapping[uuid.UUID, int], now: datetime, *, sign: int
    ) -> int:
        change = case({product_id: sign * n for product_id, n in amounts.items()}, value=Product.id)
        statement = (
            update(Product)
            .where(Product.id.in_(list(amounts)), Product.stock + change >= 0)
            .values(stock=Product.stock + change, updated_at=now)
            .execution_options(synchronize_session=False)
        )
        result = await self.session.execute(statement)
        return int(result.rowcount)  # type: ignore[attr-defined]

    async def list(
        self, page: PageRequest, *, pattern: str | None, include_inactive: bool
    ) -> Page[Row[Any]]:
        listing = _LISTS[(include_inactive, pattern is not None)]
        params = {} if pattern is None else {"pattern": pattern}
        return await self.page_rows(listing, page, params)

    async def with_sku(self, key: str) -> Product | None:
        return cast(
            Product | None,
            await self.session.scalar(select(Product).where(Product.sku_key == key)),
        )

    async def ids_of_skus(self, keys: Sequence[str]) -> dict[str, uuid.UUID]:
        """The products that have these SKU keys: key to id."""
        rows = await self.session.execute(
            select(Product.sku_key, Product.id).where(Product.sku_key.in_(keys))
        )
        return {row.sku_key: row.id for row in rows}

    async def upsert(self, rows: Sequence[dict[str, Any]], *, update: bool = True) -> None:
        """Insert `rows` in one statement; a row whose SKU exists updates that product, or
        with `update=False` is left out."""
        if not rows:
            return
        table = cast(Table, Product.__table__)
        insert = (
            postgresql.insert(table)
            if self.session.get_bind().dialect.name == "postgresql"
            else sqlite.insert(table)
        )
        values = insert.values(list(rows))
        statement = (
            values.on_conflict_do_update(
                index_elements=[table.c.sku_key],
                # Everything but the product's identity and when it was first added.
                set_={
                    column.name: values.excluded[column.name]
                    for column in table.c
                    if column.name not in {"id", "created_at"}
                },
            )
            if update
            else values.on_conflict_do_nothing(index_elements=[table.c.sku_key])
        )
        await self.session.execute(statement)
