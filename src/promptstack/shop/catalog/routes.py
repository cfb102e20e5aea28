"""The catalog: anyone browses; administrators add and change products."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Query

from promptstack.accounts.dependencies import AdminUser, OptionalUser
from promptstack.core.errors import Conflict, Forbidden, NotFound, Unauthorized
from promptstack.core.pagination import Page
from promptstack.http import API_V1
from promptstack.http.openapi import problem_responses
from promptstack.http.pagination import PageDep
from promptstack.http.schemas import PageOut
from promptstack.shop.catalog.dependencies import CatalogServiceDep
from promptstack.shop.catalog.models import ProductView
from promptstack.shop.catalog.schemas import ProductIn, ProductOut, ProductPatch

router = APIRouter(prefix=f"{API_V1}/products", tags=["products"])


@router.get(
    "", response_model=PageOut[ProductOut], responses=problem_responses(Unauthorized, Forbidden)
)
async def list_products(
    catalog: CatalogServiceDep,
    page: PageDep,
    user: OptionalUser,
    q: Annotated[
        str | None,
        Query(min_length=1, max_length=100, description="Part of the SKU, name or description"),
    ] = None,
    include_inactive: Annotated[
        bool, Query(description="Also withdrawn products (administrators)")
    ] = False,
) -> Page[Any]:
    """Products on sale, in the order they were added; no sign-in needed."""
    return await catalog.list(user, page, query=q, include_inactive=include_inactive)


@router.get("/{product_id}", response_model=ProductOut, responses=problem_responses(NotFound))
async def get_product(product_id: uuid.UUID, catalog: CatalogServiceDep) -> ProductView:
    """One product, including a withdrawn one (older orders still name it)."""
    return await catalog.get(product_id)


@router.post(
    "",
    status_code=201,
    response_model=ProductOut,
    responses=problem_responses(Unauthorized, Forbidden, Conflict),
)
async def create_product(
    body: ProductIn, admin: AdminUser, catalog: CatalogServiceDep
) -> ProductView:
    """Add a product (administrators). A credits product grants `credits` per unit to its
    buyer once the order is confirmed."""
    return await catalog.create(admin, body.draft())


@router.patch(
    "/{product_id}",
    response_model=ProductOut,
    responses=problem_responses(Unauthorized, Forbidden, NotFound, Conflict),
)
async def update_product(
    product_id: uuid.UUID, body: ProductPatch, admin: AdminUser, catalog: CatalogServiceDep
) -> ProductView:
    """Change a product (administrators); the change is visible on the next read, in
    every process."""
    return await catalog.update(admin, product_id, body.changes())
