"""The catalog: administrators add and change products; anyone reads them.

A product is read through the cache (`get`), and every change drops the cached copy in
every process once its transaction commits, whoever made it: this service, or the
inventory reserving stock (`forget_after_commit`).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

from promptstack.accounts.models import Role, UserSnapshot
from promptstack.audit.service import Auditor
from promptstack.core.cache import CacheRegion
from promptstack.core.clock import Clock
from promptstack.core.errors import Forbidden, NotFound, ValidationFailed
from promptstack.core.ids import IdSource
from promptstack.core.pagination import Page, PageRequest
from promptstack.core.repository import escape_like
from promptstack.core.unit_of_work import UnitOfWork, UnitOfWorkFactory
from promptstack.shop.catalog.models import Product, ProductKind, ProductView, product_search_key
from promptstack.shop.catalog.repository import ProductRepository, SkuTaken
from promptstack.shop.catalog.rules import credits_problem, sku_key


@dataclass(frozen=True, slots=True)
class NewProduct:
    sku: str
    name: str
    price_cents: int
    currency: str
    description: str = ""
    stock: int = 0
    kind: ProductKind = ProductKind.GOODS
    credits: int | None = None
    active: bool = True


# The fields a product is made of, as clients (and CSV files) give them.
PRODUCT_FIELDS = tuple(item.name for item in fields(NewProduct))


@dataclass(frozen=True, slots=True)
class ProductChanges:
    """Fields an administrator changes; None means 'leave as is' (`clear_credits` removes
    the credits, which a product turned into goods must do)."""

    sku: str | None = None
    name: str | None = None
    description: str | None = None
    price_cents: int | None = None
    currency: str | None = None
    stock: int | None = None
    kind: ProductKind | None = None
    credits: int | None = None
    clear_credits: bool = False
    active: bool | None = None


class CatalogService:
    def __init__(
        self,
        uow: UnitOfWorkFactory,
        region: CacheRegion[ProductView],
        auditor: Auditor,
        clock: Clock,
        ids: IdSource,
    ) -> None:
        self.uow = uow
        self.region = region
        self.audit = auditor
        self.clock = clock
        self.ids = ids

    async def get(self, product_id: uuid.UUID) -> ProductView:
        """One product, active or not: an order placed before it was withdrawn still
        links to it."""
        product = await self.region.get_or_load(str(product_id), lambda: self._load(product_id))
        if product is None:
            raise NotFound("No such product.")
        return product

    async def _load(self, product_id: uuid.UUID) -> ProductView | None:
        async with self.uow(read_only=True) as uow:
            return await ProductRepository.of(uow).shown(product_id)

    async def list(
        self,
        actor: UserSnapshot | None,
        page: PageRequest,
        *,
        query: str | None = None,
        include_inactive: bool = False,
    ) -> Page[Any]:
        """Products in the order they were added; `query` matches the SKU, name and
        description regardless of case. Withdrawn products are listed for administrators
        who ask for them."""
        if include_inactive and (actor is None or actor.role is Role.USER):
            raise Forbidden("Only administrators may list withdrawn products.")
        pattern = escape_like(query.casefold()) if query else None
        async with self.uow(read_only=True) as uow:
            return await ProductRepository.of(uow).list(
                page, pattern=pattern, include_inactive=include_inactive
            )

    async def create(self, actor: UserSnapshot, new: NewProduct) -> ProductView:
        _require_admin(actor)
        _check_credits(new.kind, new.credits)
        now = self.clock.now()
        product = Product(
            id=self.ids.new(),
            sku=new.sku,
            sku_key=sku_key(new.sku),
            name=new.name,
            description=new.description,
            search_key=product_search_key(new.sku, new.name, new.description),
            price_cents=new.price_cents,
            currency=new.currency,
            stock=new.stock,
            kind=new.kind,
            credits=new.credits,
            active=new.active,
            created_at=now,
            updated_at=now,
        )
        async with self.uow() as uow:
            products = ProductRepository.of(uow)
            if await products.with_sku(product.sku_key) is not None:
                raise SkuTaken("Another product has this SKU (SKUs ignore letter case).")
            products.add(product)
            await products.save()
            self.audit.record(
                uow,
                "product.created",
                actor_id=actor.id,
                subject_id=None,
                sku=new.sku,
                product_id=str(product.id),
            )
            return ProductView.model_validate(product)

    async def update(
        self, actor: UserSnapshot, product_id: uuid.UUID, changes: ProductChanges
    ) -> ProductView:
        _require_admin(actor)
        async with self.uow() as uow:
            products = ProductRepository.of(uow)
            product = await products.for_update(product_id)
            if product is None:
                raise NotFound("No such product.")
            changed = _apply(product, changes)
            if "sku" in changed:
                other = await products.with_sku(sku_key(product.sku))
                if other is not None and other.id != product.id:
                    raise SkuTaken("Another product has this SKU (SKUs ignore letter case).")
                product.sku_key = sku_key(product.sku)
            _check_credits(product.kind, product.credits)
            if changed:
                product.search_key = product_search_key(
                    product.sku, product.name, product.description
                )
                product.updated_at = self.clock.now()
                await products.save()
                self.audit.record(
                    uow,
                    "product.updated",
                    actor_id=actor.id,
                    subject_id=None,
                    product_id=str(product.id),
                    changed=sorted(changed),
                )
                self.forget_after_commit(uow, [product.id])
            return ProductView.model_validate(product)

    async def import_products(
        self,
        drafts: Sequence[NewProduct],
        *,
        update: bool = True,
        dry_run: bool = False,
        ids: Mapping[str, uuid.UUID] | None = None,
    ) -> Imported:
        """Add `drafts` in one transaction and one statement; a draft whose SKU exists
        replaces that product's fields (or, with `update=False`, is skipped). A dry run
        tells what would happen and writes nothing. SKUs must be unique among `drafts`.
        `ids` fixes the ids of new products by SKU (the demo's, which the API's examples
        name); the others get new ones."""
        for draft in drafts:
            _check_credits(draft.kind, draft.credits)
        keys = [sku_key(draft.sku) for draft in drafts]
        if len(set(keys)) != len(keys):
            raise ValueError("each SKU may appear once in a batch")
        now = self.clock.now()
        async with self.uow() as uow:
            products = ProductRepository.of(uow)
            existing = await products.ids_of_skus(keys)
            imported = Imported(
                created=len(keys) - len(existing), updated=len(existing) if update else 0
            )
            if dry_run:
                return imported
            await products.upsert(
                [
                    _row(draft, key, (ids or {}).get(draft.sku) or self.ids.new(), now)
                    for draft, key in zip(drafts, keys, strict=True)
                ],
                update=update,
            )
            if imported.created or imported.updated:
                self.audit.record(
                    uow,
                    "products.imported",
                    actor_id=None,
                    subject_id=None,
                    created=imported.created,
                    updated=imported.updated,
                )
            if update:
                self.forget_after_commit(uow, existing.values())
        return imported

    async def for_order(
        self, uow: UnitOfWork, product_ids: Sequence[uuid.UUID]
    ) -> dict[uuid.UUID, ProductView]:
        """The products an order names, read in the placing transaction itself rather
        than from the cache, so an order is never priced from a stale copy."""
        return await ProductRepository.of(uow).shown_many(product_ids)

    async def take_stock(
        self, uow: UnitOfWork, wanted: Mapping[uuid.UUID, int]
    ) -> uuid.UUID | None:
        """Take all of `wanted` from stock in `uow`, or nothing: the product short of
        its quantity, if one is. Every process sees the new stock once `uow` commits."""
        short = await ProductRepository.of(uow).take_stock(wanted, self.clock.now())
        if short is None:
            self.forget_after_commit(uow, wanted)
        return short

    async def return_stock(self, uow: UnitOfWork, given: Mapping[uuid.UUID, int]) -> None:
        await ProductRepository.of(uow).return_stock(given, self.clock.now())
        self.forget_after_commit(uow, given)

    def forget_after_commit(self, uow: UnitOfWork, product_ids: Iterable[uuid.UUID]) -> None:
        """Drop the cached copies of `product_ids` in every process once `uow` commits."""
        parts = [str(product_id) for product_id in product_ids]

        async def forget() -> None:
            await self.region.invalidate(*parts)

        uow.after_commit(forget)


@dataclass(frozen=True, slots=True)
class Imported:
    created: int
    updated: int


def _row(draft: NewProduct, key: str, id_: uuid.UUID, now: datetime) -> dict[str, Any]:
    return {
        "id": id_,
        "sku": draft.sku,
        "sku_key": key,
        "name": draft.name,
        "description": draft.description,
        "search_key": product_search_key(draft.sku, draft.name, draft.description),
        "price_cents": draft.price_cents,
        "currency": draft.currency,
        "stock": draft.stock,
        "kind": draft.kind,
        "credits": draft.credits,
        "active": draft.active,
        "created_at": now,
        "updated_at": now,
    }


def _require_admin(actor: UserSnapshot) -> None:
    if actor.role is Role.USER:
        raise Forbidden("Only administrators may change the catalog.")


def _check_credits(kind: ProductKind, credits: int | None) -> None:
    problem = credits_problem(kind.value, credits)
    if problem is not None:
        raise ValidationFailed(problem, loc=("body", "credits"))


def _apply(product: Product, changes: ProductChanges) -> set[str]:
    """Set the fields `changes` names on `product`; the names of those that differ."""
    values = {
        name: getattr(changes, name)
        for name in PRODUCT_FIELDS
        if getattr(changes, name) is not None
    }
    if changes.clear_credits:
        values["credits"] = None
    changed = {name for name, value in values.items() if getattr(product, name) != value}
    for name in changed:
        setattr(product, name, values[name])
    return changed
