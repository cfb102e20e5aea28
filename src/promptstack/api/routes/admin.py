"""Administration views: the audit log."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query

from promptstack.api.dependencies.auth import AdminUser
from promptstack.api.dependencies.pagination import PageDep
from promptstack.api.dependencies.services import AuditLogDep
from promptstack.api.problems import problem_responses
from promptstack.api.routes import API_V1
from promptstack.api.schemas.common import PageOut
from promptstack.api.schemas.users import AuditEntryOut
from promptstack.core.errors import Forbidden, Unauthorized, ValidationFailed
from promptstack.core.pagination import Page
from promptstack.models.audit import AuditEntry

router = APIRouter(prefix=f"{API_V1}/admin", tags=["admin"])


@router.get(
    "/audit-log",
    response_model=PageOut[AuditEntryOut],
    responses=problem_responses(Unauthorized, Forbidden, ValidationFailed),
)
async def audit_log(
    _admin: AdminUser,
    log: AuditLogDep,
    page: PageDep,
    action: Annotated[str | None, Query(max_length=64, pattern=r"^[a-z_.]+$")] = None,
    actor_id: uuid.UUID | None = None,
    subject_id: uuid.UUID | None = None,
) -> Page[AuditEntry]:
    """Newest first."""
    return await log.list(page, action=action, actor_id=actor_id, subject_id=subject_id)
