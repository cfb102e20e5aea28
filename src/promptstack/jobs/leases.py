"""The lease protocol every runner follows, whichever executor it runs in.

A runner claims a job before it runs it: pending (or in progress with a lapsed lease) to
in progress, one more attempt, a lease it renews while it works. A finished job cannot be
claimed and a leased one is busy, so a job dispatched twice runs once. Every later write
of the runner is fenced by its attempt number: a runner whose lease lapsed and whose job
was taken over cannot overwrite what its successor does.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from promptstack.core.clock import Clock
from promptstack.core.metrics import JOBS
from promptstack.core.resilience import Backoff
from promptstack.core.settings import Settings
from promptstack.core.unit_of_work import UnitOfWorkFactory
from promptstack.jobs.models import UNFINISHED, Job, JobState
from promptstack.jobs.repository import JobRepository

# A runner that finds a job leased looks again this long after the lease should lapse.
LEASE_MARGIN_SECONDS = 0.1
ERROR_MAX_LENGTH = 2000


class FatalJobError(Exception):
    """Raised by a job that can never succeed (its input is wrong, its subject is gone):
    the job fails at once instead of being retried."""


class RetryLater(Exception):
    """Raised by a job that waits on something outside (a payment gateway that is down):
    it runs again after `after` seconds, and the wait is no failed attempt, so a job may
    wait as long as it decides rather than as long as `JOB_MAX_RETRIES` allows."""

    def __init__(self, after: float, reason: str) -> None:
        super().__init__(reason)
        self.after = after


class JobLost(Exception):
    """The runner's lease lapsed and another runner took the job over."""


@dataclass(frozen=True, slots=True)
class ClaimedJob:
    """A job as its runner holds it: `attempt` fences the runner's writes."""

    id: uuid.UUID
    kind: str
    owner_id: uuid.UUID | None
    params: Mapping[str, Any]
    attempt: int
    total: int | None


@dataclass(frozen=True, slots=True)
class Busy:
    """Another runner holds the job; its lease lapses in `wait` seconds at the latest."""

    wait: float


class JobLeases:
    def __init__(self, settings: Settings, uow: UnitOfWorkFactory, clock: Clock) -> None:
        self.settings = settings
        self.uow = uow
        self.clock = clock

    @property
    def max_attempts(self) -> int:
        return self.settings.job_max_retries + 1

    @property
    def lease(self) -> timedelta:
        return timedelta(seconds=self.settings.job_lease_seconds)

    async def claim(self, job_id: uuid.UUID) -> ClaimedJob | Busy | None:
        """Take the job for one attempt; None when there is nothing to run (finished, gone,
        or given up now because its runners kept dying)."""
        now = self.clock.now()
        async with self.uow() as uow:
            job = await JobRepository.of(uow).get_for_update(job_id)
            if job is None or job.state not in UNFINISHED:
                return None
            if job.state is JobState.PROGRESS:
                if job.locked_until is not None and job.locked_until > now:
                    wait = (job.locked_until - now).total_seconds() + LEASE_MARGIN_SECONDS
                    return Busy(wait)
                if job.attempts >= self.max_attempts:
                    # Its last runner died mid-way, and it has had all its attempts.
                    self._finish(job, JobState.FAILURE, now)
                    job.error = f"Interrupted on each of its {job.attempts} attempts."
                    uow.after_commit(lambda: JOBS.labels(job.kind, JobState.FAILURE.value).inc())
                    return None
            job.state = JobState.PROGRESS
            job.attempts += 1
            job.started_at = job.updated_at = now
            job.locked_until = now + self.lease
            return ClaimedJob(
                id=job.id,
                kind=job.kind,
                owner_id=job.owner_id,
                params=dict(job.params),
                attempt=job.attempts,
                total=job.total,
            )

    async def report_progress(self, job: ClaimedJob, current: int, total: int | None) -> None:
        """Store how far the job got, at once, in a transaction of its own (so readers see
        it while the job runs); `total` None keeps the total as it is."""
        if current < 0 or (total is not None and total < 0):
            raise ValueError("progress counts cannot be negative")
        now = self.clock.now()
        values: dict[str, Any] = {
            "current": current,
            "updated_at": now,
            "locked_until": now + self.lease,
        }
        if total is not None:
            values["total"] = total
        async with self.uow() as uow:
            held = await JobRepository.of(uow).update_claimed(job.id, job.attempt, **values)
        if not held:
            raise JobLost(f"job {job.id} was taken over by another runner")

    async def renew(self, job: ClaimedJob) -> bool:
        """Extend the lease; False when the job is no longer this runner's."""
        async with self.uow() as uow:
            return await JobRepository.of(uow).update_claimed(
                job.id, job.attempt, locked_until=self.clock.now() + self.lease
            )

    async def succeed(self, job: ClaimedJob, result: dict[str, Any]) -> bool:
        """Store the result; False when the job was no longer this runner's."""
        now = self.clock.now()
        async with self.uow() as uow:
            return await JobRepository.of(uow).complete_claimed(job.id, job.attempt, result, now)

    async def fail_attempt(self, job: ClaimedJob, error: str, *, fatal: bool) -> float | None:
        """Record a failed attempt: the delay before the retry, or None when the job has
        failed for good (a fatal error, or no retries left). Raises `JobLost`."""
        now = self.clock.now()
        retry = not fatal and job.attempt < self.max_attempts
        values: dict[str, Any] = {
            "error": error[:ERROR_MAX_LENGTH],
            "updated_at": now,
            "locked_until": None,
        }
        if retry:
            values["state"] = JobState.PENDING
        else:
            values.update(state=JobState.FAILURE, finished_at=now)
        async with self.uow() as uow:
            held = await JobRepository.of(uow).update_claimed(job.id, job.attempt, **values)
        if not held:
            raise JobLost(f"job {job.id} was taken over by another runner")
        if not retry:
            return None
        return Backoff(self.settings.job_retry_base_seconds).delay(job.attempt)

    async def postpone(self, job: ClaimedJob, reason: str) -> None:
        """Pending again, this attempt not counted, with `reason` as its last error.
        Raises `JobLost`."""
        async with self.uow() as uow:
            held = await JobRepository.of(uow).update_claimed(
                job.id,
                job.attempt,
                state=JobState.PENDING,
                attempts=job.attempt - 1,
                error=reason[:ERROR_MAX_LENGTH],
                locked_until=None,
                updated_at=self.clock.now(),
            )
        if not held:
            raise JobLost(f"job {job.id} was taken over by another runner")

    async def release(self, job: ClaimedJob) -> None:
        """Give the job back unfinished (its process is stopping): pending again, and the
        interrupted attempt does not count."""
        async with self.uow() as uow:
            await JobRepository.of(uow).update_claimed(
                job.id,
                job.attempt,
                state=JobState.PENDING,
                attempts=job.attempt - 1,
                locked_until=None,
                updated_at=self.clock.now(),
            )

    @staticmethod
    def _finish(job: Job, state: JobState, now: datetime) -> None:
        job.state = state
        job.finished_at = job.updated_at = now
        job.locked_until = None
