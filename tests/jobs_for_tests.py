"""Job kinds for the tests, loaded through JOB_MODULES by the API and the Celery workers.

`test.gated` reports progress and then waits, between its steps, for a file the test
creates (the gate), so a test can look at a job while it runs, or kill its worker there.
Its effect is a row keyed by the job's id, written only if absent, as a real job keeps
its effects idempotent; each run also leaves marks in a folder, so a test can count
the runs that started and the runs that finished.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from promptstack.audit.models import AuditEntry
from promptstack.audit.repository import AuditRepository
from promptstack.jobs.registry import JobContext, JobResult, kinds

EFFECT = "test.effect"
GATE_POLL_SECONDS = 0.02


def mark(folder: str, job: JobContext, what: str) -> None:
    with (Path(folder) / f"{job.job.id}.{what}").open("a") as marks:
        marks.write(f"{job.job.attempt}\n")


def marks(folder: Path, job_id: object, what: str) -> list[int]:
    """The attempts that left the mark `what` (started, finished), in order."""
    path = folder / f"{job_id}.{what}"
    return [int(line) for line in path.read_text().split()] if path.exists() else []


async def _opened(gate: Path) -> None:
    """Wait for the test to create `gate`: a file, since the test may be another process."""
    while True:
        if await asyncio.to_thread(gate.exists):
            return
        await asyncio.sleep(GATE_POLL_SECONDS)


@kinds.define("test.gated")
async def gated(job: JobContext) -> JobResult:
    params = job.params
    mark(params["marks"], job, "started")
    await job.progress(1, 2)
    if params.get("gate"):
        await _opened(Path(params["gate"]))
    async with job.uow() as uow:
        if await AuditRepository.of(uow).get(job.job.id) is None:
            AuditRepository.of(uow).add(
                AuditEntry(
                    id=job.job.id,
                    action=EFFECT,
                    actor_id=None,
                    subject_id=None,
                    at=job.clock.now(),
                    details={"attempt": job.job.attempt},
                )
            )
    await job.progress(2)
    mark(params["marks"], job, "finished")
    return {"answer": 42, "attempt": job.job.attempt}


@kinds.define("test.flaky")
async def flaky(job: JobContext) -> JobResult:
    """Fails its first `failures` attempts."""
    if job.job.attempt <= int(job.params["failures"]):
        raise RuntimeError(f"flaky attempt {job.job.attempt}")
    return {"attempt": job.job.attempt}


@kinds.define("test.broken")
async def broken(job: JobContext) -> JobResult:
    raise RuntimeError("always broken")
