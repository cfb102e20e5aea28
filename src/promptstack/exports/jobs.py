"""The `account.export` job: a user's data, gathered page by page into the job's result."""

from __future__ import annotations

import uuid

from promptstack.exports.service import ACCOUNT_EXPORT, gather_account_export
from promptstack.jobs.leases import FatalJobError
from promptstack.jobs.registry import JobContext, JobKinds, JobResult


def register(kinds: JobKinds) -> None:
    kinds.add(ACCOUNT_EXPORT, export_account)


async def export_account(job: JobContext) -> JobResult:
    try:
        user_id = uuid.UUID(str(job.params["user_id"]))
    except (KeyError, ValueError) as exc:
        raise FatalJobError("The export names no valid account.") from exc
    return await gather_account_export(job.uow, job.clock, user_id, job.progress)
