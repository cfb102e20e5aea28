"""Dispatching jobs: a stored job reaches its executor through the outbox, so a crash after
the submitting transaction commits delays the job but never loses it."""

from __future__ import annotations

from promptstack.core.envelope import Envelope
from promptstack.core.unit_of_work import UnitOfWork
from promptstack.events.consumers import Consumers
from promptstack.jobs.events import JobSubmitted
from promptstack.jobs.service import JobDispatcher


def register(consumers: Consumers, executor: JobDispatcher) -> None:
    async def dispatch(event: JobSubmitted, _: Envelope, __: UnitOfWork) -> None:
        # Sent before the inbox row commits: at least once, and the claim absorbs repeats.
        await executor.enqueue(event.job_id)

    consumers.on("jobs.dispatch", JobSubmitted, dispatch)
