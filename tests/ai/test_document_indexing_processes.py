"""Indexing on the scale-out topology: documents uploaded to an API on PostgreSQL, their
jobs carried by RabbitMQ to real `promptstack worker` processes embedding with the
shipped model, and a worker killed in the middle of a document.

The worker is killed (SIGKILL, no warm shutdown) once the job has reported some chunks
and before it has stored any; its lease lapses, a new worker takes the job over, and the
document ends with exactly one complete set of chunks.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from promptstack.ai.documents.embeddings import MiniLM
from promptstack.ai.documents.models import DocumentChunk
from promptstack.jobs.models import Job, JobState
from tests.fixtures.celery_worker import WorkerProcess, celery_queue
from tests.fixtures.documents import DOCUMENTS
from tests.fixtures.support import Api, eventually

pytestmark = pytest.mark.postgres

BROKER = "amqp://guest:guest@127.0.0.1:5672//"
LEASE_SECONDS = 2.0
# Long enough that a worker is killed in the middle: one chunk a paragraph, one
# paragraph per embedding call.
PARAGRAPHS = 400
TEXT = "\n\n".join(
    f"Paragraph {n} explains how parcel {n} travels from the warehouse to the customer, "
    f"which courier carries it on day {n % 7}, and what happens when nobody is home."
    for n in range(PARAGRAPHS)
)


@pytest.fixture
def backend() -> str:
    return "postgres"


@pytest.fixture
def queue() -> Iterator[str]:
    with celery_queue(BROKER) as name:
        yield name


@pytest.fixture
def settings_overrides(queue: str) -> dict[str, Any]:
    return {
        "celery_broker_url": BROKER,
        "celery_queue": queue,
        "job_lease_seconds": LEASE_SECONDS,
        "job_retry_base_seconds": 0.01,
        "document_embed_batch": 1,
    }


@pytest.fixture
def worker_env(api: Api, queue: str) -> dict[str, str]:
    return {
        "DATABASE_URL": api.settings.database_url,
        "ENVIRONMENT": "test",
        "CELERY_BROKER_URL": BROKER,
        "CELERY_QUEUE": queue,
        "JOB_LEASE_SECONDS": str(LEASE_SECONDS),
        "JOB_RETRY_BASE_SECONDS": "0.01",
        "DOCUMENT_EMBED_BATCH": "1",
        "LOG_JSON": "false",
        "DATABASE_POOL_SIZE": "2",
    }


@pytest.fixture
def workers(worker_env: dict[str, str], tmp_path: Path) -> Iterator[list[WorkerProcess]]:
    """One worker running; a test appends the ones it starts, and all are stopped."""
    started = [WorkerProcess(worker_env, tmp_path, concurrency=1)]
    yield started
    for worker in started:
        worker.stop()


async def _job(api: Api, job_id: str) -> Job:
    async with api.container.uow(read_only=True) as uow:
        job = await uow.session.get(Job, uuid.UUID(job_id))
    assert job is not None
    return job


async def _chunks(api: Api, document_id: str) -> list[tuple[int, str]]:
    async with api.container.uow(read_only=True) as uow:
        rows = await uow.session.execute(
            select(DocumentChunk.chunk_index, DocumentChunk.model)
            .where(DocumentChunk.document_id == uuid.UUID(document_id))
            .order_by(DocumentChunk.chunk_index)
        )
        return [(row.chunk_index, row.model) for row in rows]


async def test_a_worker_killed_mid_document_leaves_one_complete_set_after_the_retry(
    api: Api, workers: list[WorkerProcess], worker_env: dict[str, str], tmp_path: Path
) -> None:
    account = await api.user()
    response = await api.client.post(
        DOCUMENTS, json={"title": "Deliveries", "content": TEXT}, headers=account.headers
    )
    assert response.status_code == 202, response.text
    document_id, job_id = response.json()["id"], response.json()["job_id"]
    await api.container.events.relay.drain()

    async def midway() -> Job | None:
        job = await _job(api, job_id)
        return job if job.state is JobState.PROGRESS and (job.current or 0) >= 5 else None

    running = await eventually(midway, within=120, what="the worker to be midway")
    workers[0].kill()
    killed = await _job(api, job_id)
    assert killed.state is JobState.PROGRESS
    assert killed.total is not None
    assert killed.current < killed.total, "the job finished before its worker was killed"
    assert running.attempts == 1
    assert await _chunks(api, document_id) == []  # nothing stored before the end

    workers.append(WorkerProcess(worker_env, tmp_path, concurrency=1))

    async def finished() -> Job | None:
        job = await _job(api, job_id)
        return job if job.state in (JobState.SUCCESS, JobState.FAILURE) else None

    job = await eventually(finished, within=180, what="the job to finish on the new worker")
    assert job.state is JobState.SUCCESS, job.error
    assert job.attempts == 2
    chunks = await _chunks(api, document_id)
    assert [index for index, _ in chunks] == list(range(killed.total))
    assert {model for _, model in chunks} == {MiniLM.name}
    async with api.container.uow(read_only=True) as uow:
        every = await uow.session.scalar(select(func.count()).select_from(DocumentChunk))
    assert every == killed.total
    shown = await api.client.get(f"{DOCUMENTS}/{document_id}", headers=account.headers)
    assert (shown.json()["status"], shown.json()["chunk_count"]) == ("ready", killed.total)
