"""Orders: customers place, read and cancel their own; administrators ship and deliver."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Header, Query, Request, Response

from promptstack.accounts.dependencies import AdminUser, CurrentUser
from promptstack.core.errors import Forbidden, NotFound, Unauthorized, ValidationFailed
from promptstack.http import API_V1
from promptstack.http.openapi import problem_responses
from promptstack.http.pagination import PageDep
from promptstack.http.schemas import Moment, PageOut
from promptstack.shop.orders.dependencies import OrderServiceDep
from promptstack.shop.orders.domain import InvalidTransition, OrderStatus
from promptstack.shop.orders.schemas import (
    IDEMPOTENCY_KEY_PATTERN,
    HistoryOut,
    OrderIn,
    OrderOut,
)
from promptstack.shop.orders.service import IdempotencyKeyReused

router = APIRouter(
    prefix=f"{API_V1}/orders", tags=["orders"], responses=problem_responses(Unauthorized)
)

IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=255,
        pattern=IDEMPOTENCY_KEY_PATTERN,
        description="Any unique string (a UUID will do): a retry with the same key and "
        "body gets the order the first request placed, for the hours "
        "IDEMPOTENCY_KEY_HOURS says.",
    ),
]


@router.post(
    "",
    status_code=202,
    response_model=OrderOut,
    responses=problem_responses(ValidationFailed, IdempotencyKeyReused),
)
async def place_order(
    body: OrderIn,
    user: CurrentUser,
    orders: OrderServiceDep,
    request: Request,
    response: Response,
    idempotency_key: IdempotencyKey = None,
) -> OrderOut:
    """Place an order: it is accepted at once as `pending`, and the payment and the stock
    reservation follow in the background until it is `confirmed` or `cancelled`."""
    if len(request.headers.getlist("idempotency-key")) > 1:
        raise ValidationFailed(
            "send one Idempotency-Key, not several", loc=("header", "Idempotency-Key")
        )
    placed = await orders.place(user, body.command(), idempotency_key)
    response.headers["Location"] = f"{API_V1}/orders/{placed.order.id}"
    if placed.replayed:
        response.headers["Idempotent-Replayed"] = "true"
    return OrderOut.of(placed.order)


@router.get("", response_model=PageOut[OrderOut], responses=problem_responses(Forbidden))
async def list_orders(
    user: CurrentUser,
    orders: OrderServiceDep,
    page: PageDep,
    status: Annotated[OrderStatus | None, Query(description="Only orders in this status")] = None,
    user_id: Annotated[
        uuid.UUID | None, Query(description="Only this user's orders (administrators)")
    ] = None,
) -> PageOut[OrderOut]:
    """Your orders, newest first (administrators: everyone's, or one user's)."""
    found = await orders.list(user, page, status=status, user_id=user_id)
    return PageOut(
        items=[OrderOut.of(order) for order in found.items], next_cursor=found.next_cursor
    )


@router.get("/{order_id}", response_model=OrderOut, responses=problem_responses(NotFound))
async def get_order(order_id: uuid.UUID, user: CurrentUser, orders: OrderServiceDep) -> OrderOut:
    """One of your orders (administrators: anyone's)."""
    return OrderOut.of(await orders.get(user, order_id))


@router.get("/{order_id}/history", response_model=HistoryOut, responses=problem_responses(NotFound))
async def order_history(
    order_id: uuid.UUID,
    user: CurrentUser,
    orders: OrderServiceDep,
    as_of: Annotated[
        Moment | None,
        Query(description="A moment with its time zone (RFC 3339): the order as it was then."),
    ] = None,
) -> HistoryOut:
    """The order's events, oldest first, and the state they give, up to `as_of`."""
    return HistoryOut.of(await orders.history(user, order_id, as_of))


@router.post(
    "/{order_id}/cancel",
    status_code=202,
    response_model=OrderOut,
    responses=problem_responses(NotFound, InvalidTransition),
)
async def cancel_order(order_id: uuid.UUID, user: CurrentUser, orders: OrderServiceDep) -> OrderOut:
    """Cancel an order that has not shipped. The refund and the release of reserved
    stock follow in the background."""
    return OrderOut.of(await orders.cancel(user, order_id))


@router.post(
    "/{order_id}/ship",
    response_model=OrderOut,
    responses=problem_responses(Forbidden, NotFound, InvalidTransition),
)
async def ship_order(order_id: uuid.UUID, admin: AdminUser, orders: OrderServiceDep) -> OrderOut:
    """Mark a confirmed order shipped (administrators)."""
    return OrderOut.of(await orders.ship(admin, order_id))


@router.post(
    "/{order_id}/deliver",
    response_model=OrderOut,
    responses=problem_responses(Forbidden, NotFound, InvalidTransition),
)
async def deliver_order(order_id: uuid.UUID, admin: AdminUser, orders: OrderServiceDep) -> OrderOut:
    """Mark a shipped order delivered (administrators)."""
    return OrderOut.of(await orders.deliver(admin, order_id))
