"""Background jobs as the API shows them."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel

from promptstack.http.schemas import Output
from promptstack.jobs.models import JobState


class JobOut(Output):
    """A job's state and progress; `result` once it has succeeded, `error` after a failed
    attempt (the last one's, while retries remain)."""

    id: uuid.UUID
    kind: str
    state: JobState
    current: int
    total: int | None
    attempts: int
    error: str | None
    result: dict[str, Any] | None
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class JobAccepted(BaseModel):
    """The job was stored; follow it at `GET /api/v1/jobs/{job_id}` (the Location header)."""

    job_id: uuid.UUID
    status: JobState
