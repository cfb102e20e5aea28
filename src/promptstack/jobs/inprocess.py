"""The embedded executor: jobs run as tasks of this process's event loop.

It keeps the guarantees that fit one process. At most `JOB_CONCURRENCY` attempts run at
once; a failed attempt is retried after its delay; the same job enqueued again while this
process has it in hand is not run twice (and the lease keeps other processes off it).
Nothing lives only in memory: `start` resumes every unfinished job in the table, so a
restart, or a crash, loses none. At shutdown, running attempts get the grace period and
are then given back unfinished, to be resumed by the next start.
"""

from __future__ import annotations

import asyncio
import uuid

from promptstack.core.logging import get_logger
from promptstack.core.resilience import Backoff
from promptstack.core.settings import Settings
from promptstack.jobs.runner import JobRunner, RunAgain
from promptstack.jobs.service import JobService

log = get_logger(__name__)

MAX_ERROR_BACKOFF_SECONDS = 60.0


class InProcessExecutor:
    def __init__(self, settings: Settings, runner: JobRunner, jobs: JobService) -> None:
        self.settings = settings
        self.runner = runner
        self.jobs = jobs
        self._limit = asyncio.Semaphore(settings.job_concurrency)
        self._tasks: dict[uuid.UUID, asyncio.Task[None]] = {}
        self._running: set[uuid.UUID] = set()
        self._resume: asyncio.Task[None] | None = None
        self._stopping = False

    async def enqueue(self, job_id: uuid.UUID, delay: float = 0.0) -> None:
        """Run the job (after `delay` seconds); nothing happens if this process already
        has it in hand."""
        if self._stopping:
            # It stays pending in the table, and the next start resumes it.
            log.info("job_not_enqueued_while_stopping", job_id=str(job_id))
            return
        if job_id in self._tasks:
            return
        task = asyncio.get_running_loop().create_task(
            self._drive(job_id, delay), name=f"job-{job_id}"
        )
        self._tasks[job_id] = task
        task.add_done_callback(lambda _: self._tasks.pop(job_id, None))

    async def start(self) -> None:
        """Resume every unfinished job in the table, in the background."""
        self._stopping = False
        if self._resume is None or self._resume.done():
            self._resume = asyncio.get_running_loop().create_task(
                self._resume_unfinished(), name="jobs-resume"
            )

    async def drain(self) -> None:
        """Wait until every job in hand has finished, retries included."""
        while True:
            waiting = set(self._tasks.values())
            if self._resume is not None and not self._resume.done():
                waiting.add(self._resume)
            if not waiting:
                return
            await asyncio.wait(waiting)

    async def stop(self, grace: float) -> None:
        """Take no more jobs; let running attempts finish within `grace` seconds, then give
        them back unfinished. Jobs waiting for a turn or a retry stay pending."""
        self._stopping = True
        loop = asyncio.get_running_loop()
        # Tasks of an event loop that has ended (a test client's) died with it; their
        # jobs are still in the table.
        for job_id, task in list(self._tasks.items()):
            if task.get_loop() is not loop:
                del self._tasks[job_id]
        if self._resume is not None and self._resume.get_loop() is not loop:
            self._resume = None
        if self._resume is not None:
            self._resume.cancel()
        idle = [task for job_id, task in self._tasks.items() if job_id not in self._running]
        for task in idle:
            task.cancel()
        running = set(self._tasks.values())
        if running:
            _, late = await asyncio.wait(running, timeout=grace)
            if late:
                log.warning("jobs_interrupted_at_shutdown", count=len(late))
            for task in late:
                task.cancel()
        await asyncio.gather(
            *self._tasks.values(), *filter(None, [self._resume]), return_exceptions=True
        )

    async def _drive(self, job_id: uuid.UUID, delay: float) -> None:
        failures = 0
        while True:
            if delay > 0:
                await asyncio.sleep(delay)
            async with self._limit:
                if self._stopping:
                    return
                self._running.add(job_id)
                try:
                    again = await self.runner.run(job_id)
                    failures = 0
                except Exception:
                    # The database, most likely: try again later, the job is in the table.
                    failures += 1
                    log.exception("job_run_failed", job_id=str(job_id))
                    again = RunAgain(_error_backoff(self.settings, failures), retry=False)
                finally:
                    self._running.discard(job_id)
            if again is None or self._stopping:
                return
            delay = again.after

    async def _resume_unfinished(self) -> None:
        failures = 0
        while True:
            try:
                unfinished = await self.jobs.unfinished()
                break
            except Exception as exc:
                failures += 1
                log.warning("jobs_resume_failed", error=repr(exc))
                await asyncio.sleep(_error_backoff(self.settings, failures))
        for job_id in unfinished:
            await self.enqueue(job_id)
        if unfinished:
            log.info("jobs_resumed", count=len(unfinished))


def _error_backoff(settings: Settings, failures: int) -> float:
    return Backoff(settings.job_retry_base_seconds, cap=MAX_ERROR_BACKOFF_SECONDS).delay(
        failures + 1
    )
