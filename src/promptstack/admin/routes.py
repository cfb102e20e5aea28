"""Administration views: the audit log, the event backbone's backlog and parked events
to replay, the orders the saga has not settled, and what the LLM gateway served."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query

from promptstack.accounts.dependencies import AdminUser
from promptstack.admin.dependencies import EventAdminDep
from promptstack.admin.schemas import BacklogOut, ParkedEventOut
from promptstack.ai.llm.dependencies import UsageReportsDep
from promptstack.ai.llm.schemas import EveryonesUsageOut
from promptstack.audit.dependencies import AuditLogDep
from promptstack.audit.models import ShownAuditEntry
from promptstack.audit.schemas import AuditEntryOut
from promptstack.core.errors import Forbidden, NotFound, Unauthorized
from promptstack.core.pagination import Page
from promptstack.events.models import Backlog, OutboxMessage
from promptstack.http import API_V1
from promptstack.http.openapi import problem_responses
from promptstack.http.pagination import PageDep
from promptstack.http.schemas import Accepted, Moment, PageOut
from promptstack.shop.orders.dependencies import OrderServiceDep
from promptstack.shop.orders.schemas import OrderOut

router = APIRouter(prefix=f"{API_V1}/admin", tags=["admin"])


@router.get(
    "/audit-log",
    response_model=PageOut[AuditEntryOut],
    responses=problem_responses(Unauthorized, Forbidden),
)
async def audit_log(
    _admin: AdminUser,
    log: AuditLogDep,
    page: PageDep,
    action: Annotated[str | None, Query(max_length=64, pattern=r"^[a-z_.]+$")] = None,
    actor_id: uuid.UUID | None = None,
    subject_id: uuid.UUID | None = None,
) -> Page[ShownAuditEntry]:
    """Newest first."""
    return await log.list(page, action=action, actor_id=actor_id, subject_id=subject_id)


@router.get(
    "/events/backlog",
    response_model=BacklogOut,
    responses=problem_responses(Unauthorized, Forbidden),
)
async def event_backlog(_admin: AdminUser, events: EventAdminDep) -> Backlog:
    """Events waiting to be published, the oldest one's time, and how many are parked."""
    return await events.backlog()


@router.get(
    "/events/parked",
    response_model=PageOut[ParkedEventOut],
    responses=problem_responses(Unauthorized, Forbidden),
)
async def parked_events(
    _admin: AdminUser, events: EventAdminDep, page: PageDep
) -> Page[OutboxMessage]:
    """Events that failed too often, oldest first, with their last error."""
    return await events.parked(page)


@router.post(
    "/events/{event_id}/replay",
    status_code=202,
    response_model=Accepted,
    responses=problem_responses(Unauthorized, Forbidden, NotFound),
)
async def replay_event(admin: AdminUser, events: EventAdminDep, event_id: uuid.UUID) -> Accepted:
    """Put a parked event back in line with a fresh set of attempts."""
    await events.replay(admin, event_id)
    return Accepted(status="queued")


@router.get(
    "/orders/stuck",
    response_model=list[OrderOut],
    responses=problem_responses(Unauthorized, Forbidden),
)
async def stuck_orders(
    admin: AdminUser,
    orders: OrderServiceDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[OrderOut]:
    """Orders still `pending` or `paid` after ORDER_SETTLE_MINUTES, oldest change first:
    a payment processor that stays down, a consumer that keeps failing. The gauge
    `promptstack_orders_stuck` counts them."""
    return [OrderOut.of(order) for order in await orders.stuck(admin, limit)]


@router.get(
    "/llm/usage",
    response_model=EveryonesUsageOut,
    responses=problem_responses(Unauthorized, Forbidden),
)
async def llm_usage(
    admin: AdminUser,
    reports: UsageReportsDep,
    since: Annotated[
        Moment | None, Query(description="From this moment (RFC 3339); 30 days before until")
    ] = None,
    until: Annotated[Moment | None, Query(description="Up to this moment; now")] = None,
) -> EveryonesUsageOut:
    """What the LLM gateway served over a window (at most 366 days): per provider and
    model, and for the 100 users who spent most."""
    return EveryonesUsageOut.of(await reports.everyone(since, until))
