"""The events of background jobs."""

from __future__ import annotations

import uuid

from pydantic import Field

from promptstack.core.envelope import Event


class JobSubmitted(Event):
    """A background job was stored; the `jobs.dispatch` consumer hands it to the executor."""

    type = "job.submitted"

    job_id: uuid.UUID
    kind: str = Field(max_length=64)
