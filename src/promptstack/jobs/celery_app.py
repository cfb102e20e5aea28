"""Celery: the scale-out executor, for when jobs should run outside the API processes.

With `CELERY_BROKER_URL` set (RabbitMQ or Redis), dispatching a job sends one message,
`promptstack.run_job(job_id)`, to the queue `CELERY_QUEUE`; `promptstack worker` processes
consume it and run the same runner as the embedded executor. There is no result backend:
the jobs table holds state, progress and result.

Delivery is at least once. Messages are acknowledged only after the task returns
(`task_acks_late`), and a worker that dies mid-job has its message delivered again
(`task_reject_on_worker_lost`); each worker process takes one message at a time
(`worker_prefetch_multiplier=1`). The claim makes the repeats harmless: a finished job is
not run again, and one whose runner still holds the lease is looked at again once the
lease would have lapsed. A failed attempt is retried with `countdown` doubling from
`JOB_RETRY_BASE_SECONDS` (1, 2, 4 seconds by default, at most `JOB_MAX_RETRIES` times).
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Callable
from typing import Any, Protocol

from celery import Celery
from celery.signals import worker_process_shutdown, worker_shutdown

from promptstack.core.logging import configure_logging, get_logger
from promptstack.core.resilience import Backoff
from promptstack.core.settings import Settings
from promptstack.jobs.runner import JobRunner, RunAgain

log = get_logger(__name__)

RUN_JOB = "promptstack.run_job"


def create_celery(settings: Settings) -> Celery:
    """A Celery app configured from `settings`, without tasks: enough to send jobs."""
    if settings.celery_broker_url is None:
        raise ValueError("CELERY_BROKER_URL is not set")
    queue = settings.celery_queue
    app = Celery("promptstack", broker=settings.celery_broker_url, set_as_current=False)
    app.conf.update(
        broker_connection_retry_on_startup=True,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_ignore_result=True,
        task_serializer="json",
        accept_content=["json"],
        task_default_queue=queue,
        task_default_exchange=queue,
        task_default_exchange_type="direct",
        task_default_routing_key=queue,
        task_routes={RUN_JOB: {"queue": queue, "routing_key": queue}},
        worker_hijack_root_logger=False,
        worker_redirect_stdouts=False,
        worker_send_task_events=False,
        # Redis only: an unacknowledged message returns to the queue after this long, which
        # is how a killed worker's job comes back there. The lease keeps an early return
        # harmless (the job is busy, looked at again later), so it need not be an hour.
        broker_transport_options={"visibility_timeout": 10 * settings.job_lease_seconds},
    )
    return app


class CeleryExecutor:
    """Sends jobs to the Celery workers. kombu is synchronous, so sending runs in a thread."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.app = create_celery(settings)

    async def enqueue(self, job_id: uuid.UUID, delay: float = 0.0) -> None:
        await asyncio.to_thread(self._send, job_id, delay)

    def _send(self, job_id: uuid.UUID, delay: float) -> None:
        self.app.send_task(
            RUN_JOB,
            args=[str(job_id)],
            queue=self.settings.celery_queue,
            routing_key=self.settings.celery_queue,
            countdown=delay or None,
        )

    async def start(self) -> None:
        """The workers run the jobs and the broker keeps them: nothing to start here."""

    async def stop(self, grace: float) -> None:
        await asyncio.to_thread(self.app.close)


class WorkerJobs(Protocol):
    @property
    def runner(self) -> JobRunner: ...


class WorkerContainer(Protocol):
    """What a worker process needs of the composition root's container."""

    @property
    def jobs(self) -> WorkerJobs: ...

    async def aclose(self) -> None: ...


class WorkerRuntime:
    """A worker process's container and event loop, built on its first job.

    Built lazily in the process that runs the jobs, so that no connection crosses the
    fork between Celery's parent process and its pool processes.
    """

    def __init__(self, settings: Settings, build: Callable[[Settings], WorkerContainer]) -> None:
        self.settings = settings
        self.build = build
        self._pid: int | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._container: WorkerContainer | None = None

    def run(self, job_id: uuid.UUID) -> RunAgain | None:
        loop, container = self._ready()
        return loop.run_until_complete(container.jobs.runner.run(job_id))

    def close(self) -> None:
        if self._pid != os.getpid() or self._loop is None or self._container is None:
            return
        loop, container = self._loop, self._container
        self._pid = self._loop = self._container = None
        try:
            loop.run_until_complete(container.aclose())
        finally:
            loop.close()

    def _ready(self) -> tuple[asyncio.AbstractEventLoop, WorkerContainer]:
        if self._pid != os.getpid() or self._loop is None or self._container is None:
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            try:
                container = self.build(self.settings)
            except BaseException:
                asyncio.set_event_loop(None)
                loop.close()
                raise
            self._loop, self._container, self._pid = loop, container, os.getpid()
        return self._loop, self._container


def register_run_job(app: Celery, settings: Settings, runtime: WorkerRuntime) -> Any:
    """The one task: run an attempt of the job, and send it again when the runner says so."""

    def run_job(task: Any, job_id: str, failures: int = 0) -> None:
        try:
            job = uuid.UUID(job_id)
        except ValueError:
            log.error("job_message_invalid", job_id=job_id)
            return
        try:
            again = runtime.run(job)
        except Exception as exc:
            # Not the job failing (the runner records that) but the runner: the database,
            # most likely. The job is in the table still; look again later. (A failed
            # task's message would be acknowledged and the job left behind.)
            delay = Backoff(settings.job_retry_base_seconds, cap=60.0).delay(failures + 1)
            log.warning("job_run_failed", job_id=job_id, error=repr(exc), look_again_in=delay)
            task.apply_async(args=[job_id], kwargs={"failures": failures + 1}, countdown=delay)
            return
        if again is None:
            return
        if again.retry:
            raise task.retry(countdown=again.after)
        # Another runner holds the job: look again once its lease would have lapsed (if
        # that runner finishes, the look finds nothing to do).
        task.apply_async(args=[job_id], countdown=again.after)

    return app.task(name=RUN_JOB, bind=True, max_retries=settings.job_max_retries)(run_job)


def run_worker(
    settings: Settings,
    build: Callable[[Settings], WorkerContainer],
    *,
    concurrency: int,
    loglevel: str,
) -> None:
    """Run a Celery worker on `CELERY_QUEUE` until it is stopped (blocks)."""
    configure_logging(loglevel, json=settings.logs_as_json)
    app = create_celery(settings)
    runtime = WorkerRuntime(settings, build)
    register_run_job(app, settings, runtime)

    def close(**_: Any) -> None:
        runtime.close()

    # Pool processes close their container as they exit; a solo worker as it stops.
    worker_process_shutdown.connect(close, weak=False)
    worker_shutdown.connect(close, weak=False)
    app.worker_main(
        argv=[
            "worker",
            f"--concurrency={concurrency}",
            f"--loglevel={loglevel}",
            f"--queues={settings.celery_queue}",
            f"--hostname=promptstack-{os.getpid()}@%h",
            "--without-gossip",
            "--without-mingle",
        ]
    )
