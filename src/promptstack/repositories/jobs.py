"""Background jobs."""

from __future__ import annotations

from promptstack.models.job import Job
from promptstack.repositories.base import Repository


class JobRepository(Repository[Job]):
    model = Job
