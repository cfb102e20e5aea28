"""Background jobs as their callers see them: submitting one, reading one.

The `jobs` table is the truth about a job, whichever executor runs it. A job is stored
together with a `JobSubmitted` event in the caller's transaction, so once the caller has
committed, the job cannot be lost: the outbox relay hands the event to the `jobs.dispatch`
consumer, which passes the job to the configured executor. How runners take and hold a
job is `leases.py`.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any, Protocol

from promptstack.accounts.models import ROLE_RANK, Role, UserSnapshot
from promptstack.core.clock import Clock
from promptstack.core.errors import NotFound
from promptstack.core.ids import IdSource
from promptstack.core.metrics import JOBS, JOBS_UNFINISHED
from promptstack.core.settings import Settings
from promptstack.core.unit_of_work import UnitOfWork, UnitOfWorkFactory
from promptstack.jobs.events import JobSubmitted
from promptstack.jobs.models import Job, JobState
from promptstack.jobs.repository import JobRepository


class JobDispatcher(Protocol):
    """Hands a stored job to whatever runs jobs (the in-process executor or Celery)."""

    async def enqueue(self, job_id: uuid.UUID, delay: float = 0.0) -> None: ...


class JobService:
    def __init__(
        self, settings: Settings, uow: UnitOfWorkFactory, clock: Clock, ids: IdSource
    ) -> None:
        self.settings = settings
        self.uow = uow
        self.clock = clock
        self.ids = ids

    async def submit(
        self,
        uow: UnitOfWork,
        owner_id: uuid.UUID | None,
        kind: str,
        params: Mapping[str, Any],
        total: int | None = None,
    ) -> Job:
        """Store a pending job and the event that dispatches it, in the caller's transaction."""
        now = self.clock.now()
        job = Job(
            id=self.ids.new(),
            owner_id=owner_id,
            kind=kind,
            state=JobState.PENDING,
            params=dict(params),
            result=None,
            current=0,
            total=total,
            attempts=0,
            error=None,
            created_at=now,
            updated_at=now,
        )
        JobRepository.of(uow).add(job)
        uow.record(JobSubmitted(job_id=job.id, kind=kind), aggregate_id=job.id)
        uow.after_commit(lambda: JOBS.labels(kind, JobState.PENDING.value).inc())
        return job

    async def get(self, actor: UserSnapshot, job_id: uuid.UUID) -> Job:
        """A job as its owner or an administrator sees it; to anyone else it does not exist."""
        async with self.uow(read_only=True) as uow:
            job = await JobRepository.of(uow).get(job_id)
        if job is None or not _may_read(actor, job):
            raise NotFound("No such job.")
        return job

    async def observe(self) -> None:
        """Set the gauges of waiting and running jobs from the table (at scrape time, so
        any process reports them, wherever the jobs run)."""
        async with self.uow(read_only=True) as uow:
            counts = await JobRepository.of(uow).count_unfinished()
        for state, count in counts.items():
            JOBS_UNFINISHED.labels(state.value).set(count)

    async def unfinished(self) -> list[uuid.UUID]:
        async with self.uow(read_only=True) as uow:
            return await JobRepository.of(uow).unfinished_ids()


def _may_read(actor: UserSnapshot, job: Job) -> bool:
    return job.owner_id == actor.id or ROLE_RANK[actor.role] >= ROLE_RANK[Role.ADMIN]
