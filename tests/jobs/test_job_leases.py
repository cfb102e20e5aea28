"""The rules a job's runners live by, played out step by step with the test's clock.

A runner's writes are fenced by the attempt it claimed; a running job renews its lease;
a job whose runners keep dying is given up on after its retries; a failed attempt is
retried after a delay that doubles. The tests act as the runners themselves, through the
job service and the runner both executors share: they claim, they die (by letting the
lease lapse, which the frozen clock does at once) and they take over. Once on SQLite,
once on PostgreSQL. test_jobs.py runs whole jobs on each executor.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from promptstack.bootstrap import Container
from promptstack.core.clock import FrozenClock
from promptstack.jobs.leases import Busy, ClaimedJob, JobLeases, JobLost
from promptstack.jobs.models import Job, JobState
from promptstack.jobs.repository import JobRepository
from promptstack.jobs.runner import RunAgain
from tests.fixtures.jobs_for_tests import marks
from tests.fixtures.support import eventually

# Leases lapse only when a test moves the clock; the runner renews every third of this
# in real time, so a renewal the test waits for comes soon.
LEASE_SECONDS = 0.3
MAX_RETRIES = 3
RETRY_BASE_SECONDS = 0.5


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {
        "job_modules": ["tests.fixtures.jobs_for_tests"],
        "job_lease_seconds": LEASE_SECONDS,
        "job_max_retries": MAX_RETRIES,
        "job_retry_base_seconds": RETRY_BASE_SECONDS,
    }


async def submit(container: Container, kind: str, **params: Any) -> uuid.UUID:
    async with container.uow() as uow:
        job = await container.jobs.service.submit(uow, None, kind, params)
    return job.id


async def stored(container: Container, job_id: uuid.UUID) -> Job:
    async with container.uow(read_only=True) as uow:
        job = await JobRepository.of(uow).get(job_id)
    assert job is not None
    return job


async def claimed(jobs: JobLeases, job_id: uuid.UUID) -> ClaimedJob:
    claim = await jobs.claim(job_id)
    assert isinstance(claim, ClaimedJob), claim
    return claim


def let_lease_lapse(clock: FrozenClock) -> None:
    """Move past the end of any lease taken or renewed until now."""
    clock.advance(timedelta(seconds=2 * LEASE_SECONDS))


def what_is_stored(job: Job) -> tuple[object, ...]:
    """Everything a runner's write may change."""
    return (
        job.state,
        job.attempts,
        job.current,
        job.total,
        job.result,
        job.error,
        job.updated_at,
        job.finished_at,
        job.locked_until,
    )


@contextlib.asynccontextmanager
async def running(
    container: Container, job_id: uuid.UUID
) -> AsyncIterator[asyncio.Task[RunAgain | None]]:
    """An attempt of the job run by the runner, in the background; cancelled if the test
    leaves it unfinished."""
    attempt: asyncio.Task[RunAgain | None] = asyncio.create_task(container.jobs.runner.run(job_id))
    try:
        yield attempt
    finally:
        attempt.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await attempt


@dataclass(frozen=True, slots=True)
class Takeover:
    stale: ClaimedJob
    successor: ClaimedJob
    held: tuple[object, ...]  # the stored job as the successor took it over


@pytest.fixture
async def takeover(container: Container, clock: FrozenClock) -> Takeover:
    """A job whose first runner stopped renewing its lease and was taken over."""
    job_id = await submit(container, "test.gated")
    stale = await claimed(container.jobs.leases, job_id)
    let_lease_lapse(clock)
    successor = await claimed(container.jobs.leases, job_id)
    assert (stale.attempt, successor.attempt) == (1, 2)
    return Takeover(stale, successor, what_is_stored(await stored(container, job_id)))


async def test_a_stale_runner_cannot_complete_the_job(
    container: Container, takeover: Takeover
) -> None:
    assert await container.jobs.leases.succeed(takeover.stale, {"by": "stale"}) is False

    assert what_is_stored(await stored(container, takeover.stale.id)) == takeover.held


async def test_a_stale_runner_cannot_fail_the_job(container: Container, takeover: Takeover) -> None:
    with pytest.raises(JobLost):
        await container.jobs.leases.fail_attempt(takeover.stale, "RuntimeError: stale", fatal=False)

    assert what_is_stored(await stored(container, takeover.stale.id)) == takeover.held


async def test_a_stale_runner_cannot_renew_the_lease(
    container: Container, takeover: Takeover
) -> None:
    assert await container.jobs.leases.renew(takeover.stale) is False

    assert what_is_stored(await stored(container, takeover.stale.id)) == takeover.held


async def test_a_stale_runner_cannot_report_progress(
    container: Container, takeover: Takeover
) -> None:
    with pytest.raises(JobLost):
        await container.jobs.leases.report_progress(takeover.stale, 1, 2)

    assert what_is_stored(await stored(container, takeover.stale.id)) == takeover.held


async def test_a_stale_runner_cannot_give_the_job_back(
    container: Container, takeover: Takeover
) -> None:
    await container.jobs.leases.release(takeover.stale)

    assert what_is_stored(await stored(container, takeover.stale.id)) == takeover.held


async def test_the_runner_that_took_over_completes_the_job(
    container: Container, takeover: Takeover
) -> None:
    assert await container.jobs.leases.succeed(takeover.successor, {"by": "successor"}) is True

    job = await stored(container, takeover.successor.id)
    assert (job.state, job.attempts, job.result) == (JobState.SUCCESS, 2, {"by": "successor"})


async def test_a_job_that_outlives_its_lease_keeps_it(
    container: Container, clock: FrozenClock, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    job_id = await submit(container, "test.gated", marks=str(tmp_path), gate=str(gate))

    async def at_the_gate() -> bool:
        return (await stored(container, job_id)).current == 1

    async def lease_held() -> bool:
        locked_until = (await stored(container, job_id)).locked_until
        return locked_until is not None and locked_until > clock.now()

    async with running(container, job_id) as attempt:
        await eventually(at_the_gate, what="the job's first step")
        for _ in range(3):
            let_lease_lapse(clock)
            await eventually(lease_held, what="the runner to renew its lease")
            assert isinstance(await container.jobs.leases.claim(job_id), Busy)
        gate.touch()
        assert await attempt is None

    job = await stored(container, job_id)
    assert (job.state, job.attempts) == (JobState.SUCCESS, 1), job.error
    assert marks(tmp_path, job_id, "started") == [1]


async def test_a_job_whose_runners_keep_dying_fails_after_its_retries(
    container: Container, clock: FrozenClock, tmp_path: Path
) -> None:
    job_id = await submit(container, "test.gated", marks=str(tmp_path))
    for attempt in range(1, MAX_RETRIES + 2):
        runner = await claimed(container.jobs.leases, job_id)
        assert runner.attempt == attempt
        let_lease_lapse(clock)  # the runner died mid-way

    assert await container.jobs.runner.run(job_id) is None

    job = await stored(container, job_id)
    assert job.state is JobState.FAILURE
    assert job.error == f"Interrupted on each of its {MAX_RETRIES + 1} attempts."
    assert (job.attempts, job.locked_until, job.result) == (MAX_RETRIES + 1, None, None)
    assert job.finished_at is not None
    assert marks(tmp_path, job_id, "started") == []


async def test_the_delay_before_each_retry_doubles(container: Container) -> None:
    job_id = await submit(container, "test.broken")

    # The runner tells its executor when to run the job again, after each failed attempt.
    scheduled = [await container.jobs.runner.run(job_id) for _ in range(MAX_RETRIES + 1)]

    assert scheduled == [
        *(RunAgain(RETRY_BASE_SECONDS * 2**n, retry=True) for n in range(MAX_RETRIES)),
        None,
    ]
    job = await stored(container, job_id)
    assert (job.state, job.attempts) == (JobState.FAILURE, MAX_RETRIES + 1)
