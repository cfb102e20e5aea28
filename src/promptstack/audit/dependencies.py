"""The services this domain's routes take."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from promptstack.audit.service import AuditLog
from promptstack.http.dependencies import provider

AuditLogDep = Annotated[AuditLog, Depends(provider(AuditLog))]
