"""Background jobs keep the same guarantees on every executor.

One suite, three ways to run it: the in-process executor on SQLite and on PostgreSQL, and
Celery, with real `promptstack worker` processes consuming RabbitMQ (a queue of the
test's own) and sharing PostgreSQL with the test. Jobs are submitted as the service
submits them (a row and an event in one transaction, dispatched by the relay); the test
then watches the jobs table, the truth whichever executor runs the job. The test jobs
are in tests/fixtures/jobs_for_tests.py, which the workers load through JOB_MODULES.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import shutil
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import redis

from promptstack.audit.repository import AuditRepository
from promptstack.bootstrap import Container, bootstrap
from promptstack.core.pagination import PageRequest
from promptstack.core.settings import Settings
from promptstack.jobs.inprocess import InProcessExecutor
from promptstack.jobs.leases import Busy
from promptstack.jobs.models import UNFINISHED, Job, JobState
from promptstack.jobs.repository import JobRepository
from tests.conftest import empty_postgres, make_settings
from tests.fixtures.celery_worker import WorkerProcess, celery_queue
from tests.fixtures.jobs_for_tests import EFFECT, marks

RABBITMQ_URL = os.environ.get("TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672//")
# A database of its own: Celery's Redis transport keeps a few keys shared by all queues.
REDIS_BROKER_URL = os.environ.get("TEST_CELERY_REDIS_URL", "redis://127.0.0.1:6379/14")
DEADLINE_SECONDS = 90.0
POLL_SECONDS = 0.05
LEASE_SECONDS = 2.0
MAX_RETRIES = 3

IN_PROCESS = [
    pytest.param("inprocess-sqlite", id="inprocess-sqlite"),
    pytest.param("inprocess-postgres", id="inprocess-postgres", marks=pytest.mark.postgres),
]
CELERY = [pytest.param("celery", id="celery", marks=pytest.mark.postgres)]


@pytest.fixture(params=IN_PROCESS + CELERY)
def executor(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def jobs_database(executor: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if executor == "inprocess-sqlite":
        path = tmp_path / "jobs.db"
        shutil.copyfile(request.getfixturevalue("sqlite_template"), path)
        return f"sqlite+aiosqlite:///{path}"
    url: str = request.getfixturevalue("postgres_url")
    asyncio.run(empty_postgres(url))
    return url


def _broker_url(executor: str) -> str:
    return REDIS_BROKER_URL if executor == "celery-redis" else RABBITMQ_URL


@pytest.fixture
def broker_queue(executor: str) -> Iterator[str | None]:
    """A queue of this test's own on the broker, deleted afterwards (Celery only)."""
    if not executor.startswith("celery"):
        yield None
        return
    url = _broker_url(executor)
    with celery_queue(url) as queue:
        yield queue
    if executor == "celery-redis":
        # Kombu keeps its bindings in keys of their own, which deleting the queue leaves.
        client = redis.Redis.from_url(url)
        client.delete(f"_kombu.binding.{queue}", f"_kombu.binding_permanent.{queue}")
        client.close()


class Harness:
    """The service's side of the jobs (a container) and, for Celery, its workers."""

    def __init__(
        self, executor: str, settings: Settings, env: dict[str, str], workdir: Path
    ) -> None:
        self.executor = executor
        self.settings = settings
        self.env = env
        self.workdir = workdir
        self.marks = workdir / "marks"
        self.marks.mkdir()
        self.container = bootstrap(settings)
        self.others: list[Container] = []
        self.workers: list[WorkerProcess] = []
        self._gates = itertools.count(1)

    @property
    def celery(self) -> bool:
        return self.executor.startswith("celery")

    def start_worker(self) -> WorkerProcess:
        worker = WorkerProcess(self.env, self.workdir)
        self.workers.append(worker)
        return worker

    def gate(self) -> Path:
        """A file the gated job waits for; it does not exist yet."""
        return self.workdir / f"gate-{next(self._gates)}"

    async def submit(self, kind: str, **params: Any) -> uuid.UUID:
        """Submit as a service does, and let the relay dispatch it to the executor."""
        container = self.container
        async with container.uow() as uow:
            job = await container.jobs.service.submit(
                uow, None, kind, {"marks": str(self.marks), **params}
            )
        await container.events.relay.drain()
        return job.id

    async def job(self, job_id: uuid.UUID) -> Job:
        async with self.container.uow(read_only=True) as uow:
            job = await JobRepository.of(uow).get(job_id)
        assert job is not None
        return job

    async def wait(self, job_id: uuid.UUID, reached: Callable[[Job], bool], what: str) -> Job:
        """Poll the table until the job has `reached` the expected state."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + DEADLINE_SECONDS
        while True:
            job = await self.job(job_id)
            if reached(job):
                return job
            if loop.time() > deadline:
                logs = "\n".join(worker.output()[-4000:] for worker in self.workers)
                pytest.fail(
                    f"job {job_id} never reached {what}: it is {job.state.value}, "
                    f"{job.current}/{job.total}, attempts {job.attempts}, error {job.error}\n"
                    f"{logs}"
                )
            await asyncio.sleep(POLL_SECONDS)

    async def logged(self, event: str) -> None:
        """Wait until a worker has logged `event`."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + DEADLINE_SECONDS
        while not any(event in worker.output() for worker in self.workers):
            assert loop.time() < deadline, f"no worker logged {event}"
            await asyncio.sleep(POLL_SECONDS)

    async def finished(self, job_id: uuid.UUID) -> Job:
        return await self.wait(job_id, lambda job: job.state not in UNFINISHED, "an end")

    async def effects(self) -> int:
        """How many times any test job's effect happened."""
        async with self.container.uow(read_only=True) as uow:
            page = await AuditRepository.of(uow).list(PageRequest(limit=100), action=EFFECT)
        return len(page.items)

    def another_process(self) -> Container:
        """A second service process on the same database (in-process executors)."""
        other = bootstrap(self.settings)
        self.others.append(other)
        return other

    async def stop(self) -> None:
        """Stop this process as the server stops it (a short grace period)."""
        await self.container.aclose()

    async def start_again(self) -> None:
        """A new process in the stopped one's place, started as the server starts it."""
        self.container = bootstrap(self.settings)
        await self.container.jobs.executor.start()

    async def close(self) -> None:
        for container in (self.container, *self.others):
            await container.aclose()
        for worker in self.workers:
            worker.stop()


@pytest.fixture
async def harness(
    executor: str, jobs_database: str, broker_queue: str | None, tmp_path: Path
) -> AsyncIterator[Harness]:
    overrides: dict[str, Any] = {
        "job_modules": ["tests.fixtures.jobs_for_tests"],
        "job_concurrency": 2,
        "job_max_retries": MAX_RETRIES,
        "job_retry_base_seconds": 0.01,
        "job_lease_seconds": LEASE_SECONDS,
        "shutdown_grace_seconds": 0.5,
    }
    env = {}
    if broker_queue is not None:
        broker_url = _broker_url(executor)
        overrides |= {"celery_broker_url": broker_url, "celery_queue": broker_queue}
        env = {
            "DATABASE_URL": jobs_database,
            "ENVIRONMENT": "test",
            "CELERY_BROKER_URL": broker_url,
            "CELERY_QUEUE": broker_queue,
            "JOB_MODULES": "tests.fixtures.jobs_for_tests",
            "JOB_MAX_RETRIES": str(MAX_RETRIES),
            "JOB_RETRY_BASE_SECONDS": "0.01",
            "JOB_LEASE_SECONDS": str(LEASE_SECONDS),
            "LOG_JSON": "false",
            "DATABASE_POOL_SIZE": "2",
        }
    built = Harness(executor, make_settings(jobs_database, tmp_path, **overrides), env, tmp_path)
    if built.celery:
        built.start_worker()
    try:
        yield built
    finally:
        await built.close()


async def test_a_submitted_job_completes_once_with_its_result(harness: Harness) -> None:
    job_id = await harness.submit("test.gated")

    job = await harness.finished(job_id)

    assert job.state is JobState.SUCCESS, job.error
    assert job.result == {"answer": 42, "attempt": 1}
    assert (job.attempts, job.current, job.total, job.error) == (1, 2, 2, None)
    assert job.finished_at is not None
    assert job.started_at is not None
    assert job.locked_until is None
    assert await harness.effects() == 1
    assert marks(harness.marks, job_id, "finished") == [1]


async def test_progress_is_visible_while_the_job_runs(harness: Harness) -> None:
    gate = harness.gate()
    job_id = await harness.submit("test.gated", gate=str(gate))

    running = await harness.wait(
        job_id, lambda job: job.state is JobState.PROGRESS and job.current == 1, "step 1"
    )
    assert (running.current, running.total, running.attempts) == (1, 2, 1)
    assert running.result is None
    assert running.finished_at is None
    assert await harness.effects() == 0

    gate.touch()
    done = await harness.finished(job_id)
    assert done.state is JobState.SUCCESS, done.error
    assert (done.current, done.total) == (2, 2)


async def test_a_job_that_fails_twice_then_succeeds_ends_in_success(harness: Harness) -> None:
    job_id = await harness.submit("test.flaky", failures=2)

    job = await harness.finished(job_id)

    assert job.state is JobState.SUCCESS, job.error
    assert job.attempts == 3
    assert job.result == {"attempt": 3}
    assert job.error is None


async def test_a_job_that_always_fails_ends_in_failure_after_its_retries(
    harness: Harness,
) -> None:
    job_id = await harness.submit("test.broken")

    job = await harness.finished(job_id)

    assert job.state is JobState.FAILURE
    assert job.attempts == MAX_RETRIES + 1
    assert job.error == "RuntimeError: always broken"
    assert job.result is None
    assert job.finished_at is not None


async def test_a_job_may_wait_longer_than_its_retries_allow(harness: Harness) -> None:
    """Waiting on the outside world (RetryLater) is no failed attempt."""
    job_id = await harness.submit("test.patient", waits=MAX_RETRIES + 3)

    job = await harness.finished(job_id)

    assert job.state is JobState.SUCCESS, job.error
    assert job.result == {"attempt": 1, "waited": MAX_RETRIES + 3}
    assert job.attempts == 1
    assert job.error is None


async def test_a_job_dispatched_twice_runs_once(harness: Harness) -> None:
    gate = harness.gate()
    job_id = await harness.submit("test.gated", gate=str(gate))
    await harness.wait(job_id, lambda job: job.state is JobState.PROGRESS, "its run")

    # The same job sent again while it runs: twice by this process, and, for the
    # in-process executor, once by another process on the same database.
    await harness.container.jobs.executor.enqueue(job_id)
    await harness.container.jobs.executor.enqueue(job_id)
    other = None if harness.celery else harness.another_process()
    if other is not None:
        await other.jobs.executor.enqueue(job_id)
    else:
        # A second worker process took a copy while the first runs the job.
        await harness.logged("job_busy")
    gate.touch()
    job = await harness.finished(job_id)
    if other is not None:
        # The other process looks again once the lease would have lapsed, and finds
        # the job done.
        assert isinstance(other.jobs.executor, InProcessExecutor)
        await asyncio.wait_for(other.jobs.executor.drain(), DEADLINE_SECONDS)

    assert job.state is JobState.SUCCESS, job.error
    assert job.attempts == 1
    assert marks(harness.marks, job_id, "started") == [1]
    assert marks(harness.marks, job_id, "finished") == [1]
    assert await harness.effects() == 1


async def test_a_job_that_outlives_its_lease_keeps_it(harness: Harness) -> None:
    gate = harness.gate()
    job_id = await harness.submit("test.gated", gate=str(gate))
    first = await harness.wait(job_id, lambda job: job.current == 1, "step 1")
    assert first.locked_until is not None

    # Renewed at time t, a lease ends at t + LEASE_SECONDS; one that ends beyond this was
    # renewed after the lease of step 1 had ended: the job outlived that lease.
    beyond = first.locked_until + timedelta(seconds=LEASE_SECONDS)
    await harness.wait(
        job_id,
        lambda job: job.locked_until is not None and job.locked_until > beyond,
        "a renewed lease",
    )
    assert isinstance(await harness.container.jobs.leases.claim(job_id), Busy)
    gate.touch()

    job = await harness.finished(job_id)
    assert job.state is JobState.SUCCESS, job.error
    assert job.attempts == 1
    assert marks(harness.marks, job_id, "started") == [1]
    assert await harness.effects() == 1


@pytest.mark.parametrize("executor", IN_PROCESS, indirect=True)
async def test_unfinished_jobs_are_resumed_after_a_restart(harness: Harness) -> None:
    gate = harness.gate()
    # Concurrency 2: two jobs run (and wait at the gate), the third waits for a turn.
    ids = [await harness.submit("test.gated", gate=str(gate)) for _ in range(3)]
    for job_id in ids[:2]:
        await harness.wait(job_id, lambda job: job.current == 1, "step 1")
    # A job whose process died mid-run a moment ago: in progress, lease not yet lapsed.
    now = harness.container.clock.now()
    crashed = uuid.uuid4()
    async with harness.container.uow() as uow:
        JobRepository.of(uow).add(
            Job(
                id=crashed,
                owner_id=None,
                kind="test.gated",
                state=JobState.PROGRESS,
                params={"marks": str(harness.marks)},
                current=1,
                total=2,
                attempts=1,
                created_at=now,
                updated_at=now,
                started_at=now,
                locked_until=now + timedelta(seconds=LEASE_SECONDS / 4),
            )
        )

    await harness.stop()
    # Stopping gave the interrupted jobs back unfinished, their attempts not counted.
    stopped = [await harness.job(job_id) for job_id in ids]
    assert [(job.state, job.attempts, job.locked_until) for job in stopped] == [
        (JobState.PENDING, 0, None)
    ] * 3
    gate.touch()
    await harness.start_again()

    for job_id in ids:
        job = await harness.finished(job_id)
        assert job.state is JobState.SUCCESS, job.error
        assert job.attempts == 1
        assert marks(harness.marks, job_id, "finished") == [1]
    resumed = await harness.finished(crashed)
    assert resumed.state is JobState.SUCCESS, resumed.error
    assert resumed.attempts == 2
    assert marks(harness.marks, crashed, "started") == [2]
    assert await harness.effects() == 4


@pytest.mark.parametrize("executor", CELERY, indirect=True)
async def test_a_job_whose_worker_is_killed_completes_once_on_another(harness: Harness) -> None:
    gate = harness.gate()
    job_id = await harness.submit("test.gated", gate=str(gate))
    running = await harness.wait(
        job_id, lambda job: job.state is JobState.PROGRESS and job.current == 1, "step 1"
    )
    assert (running.current, running.total, running.attempts) == (1, 2, 1)

    harness.workers[0].kill()
    assert (await harness.job(job_id)).state is JobState.PROGRESS
    gate.touch()
    harness.start_worker()

    job = await harness.finished(job_id)
    assert job.state is JobState.SUCCESS, job.error
    assert job.attempts == 2
    assert job.result == {"answer": 42, "attempt": 2}
    assert marks(harness.marks, job_id, "started") == [1, 2]
    assert marks(harness.marks, job_id, "finished") == [2]
    assert await harness.effects() == 1


@pytest.mark.postgres
@pytest.mark.parametrize("executor", ["celery-redis"], indirect=True)
async def test_celery_runs_jobs_with_redis_as_the_broker_too(harness: Harness) -> None:
    job_id = await harness.submit("test.gated")

    job = await harness.finished(job_id)

    assert job.state is JobState.SUCCESS, job.error
    assert (job.attempts, job.current, job.total) == (1, 2, 2)
    assert await harness.effects() == 1
