"""Background jobs: the rows both executors read and write.

Every change a runner makes to a job it holds is fenced by the attempt number it
claimed: once another runner has taken the job over (after the lease lapsed), the first
one's writes match no row and are dropped.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update

from promptstack.core.repository import Repository
from promptstack.jobs.models import UNFINISHED, Job, JobState


class JobRepository(Repository[Job]):
    model = Job

    async def get_for_update(self, job_id: uuid.UUID) -> Job | None:
        """The job, locked until the transaction ends (PostgreSQL; SQLite's writers are
        serialised already), so two runners never claim it at once."""
        query = select(Job).where(Job.id == job_id).with_for_update()
        return (await self.session.scalars(query)).one_or_none()

    async def unfinished_ids(self) -> list[uuid.UUID]:
        """Every job still to run or running, oldest first."""
        query = select(Job.id).where(Job.state.in_(UNFINISHED)).order_by(Job.created_at, Job.id)
        return list((await self.session.scalars(query)).all())

    async def count_unfinished(self) -> dict[JobState, int]:
        """How many jobs wait and run, by state (the partial index keeps this cheap)."""
        query = select(Job.state, func.count()).where(Job.state.in_(UNFINISHED)).group_by(Job.state)
        counts = dict.fromkeys(UNFINISHED, 0)
        for state, count in await self.session.execute(query):
            counts[state] = count
        return counts

    async def unfinished_of(self, owner_id: uuid.UUID, kind: str) -> Job | None:
        """The owner's oldest job of this kind that has not finished yet."""
        query = (
            select(Job)
            .where(Job.owner_id == owner_id, Job.kind == kind, Job.state.in_(UNFINISHED))
            .order_by(Job.created_at, Job.id)
            .limit(1)
        )
        return (await self.session.scalars(query)).first()

    async def complete_claimed(
        self, job_id: uuid.UUID, attempt: int, result: dict[str, Any], now: datetime
    ) -> bool:
        """Store the result of a job held by `attempt`, its progress made whole (the total,
        or what was reached when none was known); False when it is no longer held."""
        done = func.coalesce(Job.total, Job.current)
        return await self.update_claimed(
            job_id,
            attempt,
            state=JobState.SUCCESS,
            result=result,
            error=None,
            current=done,
            total=done,
            finished_at=now,
            updated_at=now,
            locked_until=None,
        )

    async def update_claimed(self, job_id: uuid.UUID, attempt: int, **values: Any) -> bool:
        """Change a job held in progress by `attempt`; False when it no longer is."""
        statement = (
            update(Job)
            .where(Job.id == job_id, Job.attempts == attempt, Job.state == JobState.PROGRESS)
            .values(**values)
            .execution_options(synchronize_session=False)
        )
        result = await self.session.execute(statement)
        return bool(result.rowcount)  # type: ignore[attr-defined]
