"""Running one attempt of a job: the part both executors share.

The runner claims the job, runs its kind while renewing the lease, and records the
outcome: success with the result, or a failed attempt, which is retried after
`JOB_RETRY_BASE_SECONDS * 2**n` up to `JOB_MAX_RETRIES` times and then fails with the
error. What to do next is the executor's business: `run` says when to run again.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from dataclasses import dataclass

import structlog
from pydantic_core import to_jsonable_python

from promptstack.core.clock import Clock
from promptstack.core.logging import get_logger
from promptstack.core.metrics import JOBS
from promptstack.core.settings import Settings
from promptstack.core.unit_of_work import UnitOfWorkFactory
from promptstack.jobs.leases import (
    Busy,
    ClaimedJob,
    FatalJobError,
    JobLeases,
    JobLost,
    RetryLater,
)
from promptstack.jobs.models import JobState
from promptstack.jobs.registry import JobContext, JobKinds, JobResult

log = get_logger(__name__)


@dataclass(frozen=True, slots=True)
class RunAgain:
    """Run the job again after `after` seconds: a retry of a failed attempt (`retry`); or
    a look at a job another runner holds, once its lease would have lapsed, or at a job
    that asked to wait (`RetryLater`)."""

    after: float
    retry: bool


class JobRunner:
    def __init__(
        self,
        settings: Settings,
        leases: JobLeases,
        uow: UnitOfWorkFactory,
        clock: Clock,
        registry: JobKinds,
    ) -> None:
        self.settings = settings
        self.leases = leases
        self.uow = uow
        self.clock = clock
        self.registry = registry

    async def run(self, job_id: uuid.UUID) -> RunAgain | None:
        """Run one attempt of the job, if it is there to run; when to run it again, or
        None when nothing is left to do. Cancelled, it gives the job back unfinished."""
        claim = await self.leases.claim(job_id)
        if isinstance(claim, Busy):
            log.info("job_busy", job_id=str(job_id), look_again_in=round(claim.wait, 3))
            return RunAgain(claim.wait, retry=False)
        if claim is None:
            return None
        with structlog.contextvars.bound_contextvars(
            job_id=str(claim.id), job_kind=claim.kind, attempt=claim.attempt
        ):
            return await self._attempt(claim)

    async def _attempt(self, job: ClaimedJob) -> RunAgain | None:
        JOBS.labels(job.kind, JobState.PROGRESS.value).inc()
        context = JobContext(job, self.leases, self.uow, self.settings, self.clock)
        try:
            result = await self._leased(job, context)
        except asyncio.CancelledError:
            await self._release(job)
            raise
        except JobLost:
            log.warning("job_lost")
            return None
        except RetryLater as wait:
            return await self._postponed(job, wait)
        except Exception as exc:
            return await self._failed(job, exc)
        if await self.leases.succeed(job, result):
            JOBS.labels(job.kind, JobState.SUCCESS.value).inc()
            log.info("job_succeeded")
        else:
            log.warning("job_result_discarded", reason="another runner holds the job")
        return None

    async def _leased(self, job: ClaimedJob, context: JobContext) -> JobResult:
        """Run the job function while a side task keeps the lease."""
        lease = asyncio.get_running_loop().create_task(self._keep_lease(job))
        try:
            result = await self.registry.get(job.kind).run(context)
            return _json_object(result)
        finally:
            lease.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await lease

    async def _keep_lease(self, job: ClaimedJob) -> None:
        interval = self.settings.job_lease_seconds / 3
        while True:
            await asyncio.sleep(interval)
            try:
                if not await self.leases.renew(job):
                    log.warning("job_lease_lost")
                    return
            except Exception as exc:
                log.warning("job_lease_renewal_failed", error=repr(exc))

    async def _failed(self, job: ClaimedJob, exc: Exception) -> RunAgain | None:
        fatal = isinstance(exc, FatalJobError)
        error = str(exc) if fatal else f"{type(exc).__name__}: {exc}"
        try:
            delay = await self.leases.fail_attempt(job, error, fatal=fatal)
        except JobLost:
            log.warning("job_lost")
            return None
        if delay is None:
            JOBS.labels(job.kind, JobState.FAILURE.value).inc()
            log.error("job_failed", error=error, exc_info=exc)
            return None
        JOBS.labels(job.kind, "retry").inc()
        log.warning("job_attempt_failed", error=error, retry_in=delay, exc_info=exc)
        return RunAgain(delay, retry=True)

    async def _postponed(self, job: ClaimedJob, wait: RetryLater) -> RunAgain | None:
        try:
            await self.leases.postpone(job, str(wait))
        except JobLost:
            log.warning("job_lost")
            return None
        log.info("job_postponed", reason=str(wait), run_again_in=wait.after)
        # Not a retry of a failure: no executor's retry budget is spent on it.
        return RunAgain(wait.after, retry=False)

    async def _release(self, job: ClaimedJob) -> None:
        try:
            await self.leases.release(job)
            log.info("job_interrupted")
        except Exception as exc:
            # The lease lapses by itself; the job is taken over then.
            log.warning("job_release_failed", error=repr(exc))


def _json_object(result: object) -> JobResult:
    value = to_jsonable_python(result)
    if not isinstance(value, dict):
        raise TypeError(f"a job returns a JSON object, not {type(result).__name__}")
    return value
