"""What administrators see of events."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict


class ParkedEventOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    type: str
    schema_version: int
    aggregate_id: str
    occurred_at: datetime
    correlation_id: str
    causation_id: uuid.UUID | None
    data: dict[str, Any]
    attempts: int
    last_error: str | None
    parked_at: datetime


class BacklogOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    pending: int
    oldest: datetime | None
    parked: int
