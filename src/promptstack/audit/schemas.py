"""Audit entries as the API shows them."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import Field

from promptstack.http.schemas import Output


class AuditEntryOut(Output):
    id: uuid.UUID
    action: str
    actor_id: uuid.UUID | None
    subject_id: uuid.UUID | None
    address: str | None
    at: datetime
    details: dict[str, Any] = Field(default_factory=dict)
