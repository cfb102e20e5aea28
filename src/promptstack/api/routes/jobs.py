"""Background jobs: following one, and the account export that runs as one."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Response

from promptstack.api.dependencies.auth import CurrentUser
from promptstack.api.dependencies.services import AccountExportsDep, ClientAddress, JobServiceDep
from promptstack.api.problems import problem_responses
from promptstack.api.routes import API_V1
from promptstack.api.schemas.jobs import JobAccepted, JobOut
from promptstack.core.errors import NotFound, Unauthorized, ValidationFailed
from promptstack.models.job import Job

router = APIRouter(prefix=API_V1, responses=problem_responses(Unauthorized, ValidationFailed))


@router.post("/users/me/export", status_code=202, response_model=JobAccepted, tags=["users"])
async def export_my_data(
    user: CurrentUser, exports: AccountExportsDep, address: ClientAddress, response: Response
) -> JobAccepted:
    """Gather a copy of your data (profile and account history) in the background. Follow
    the job it returns; the export is the job's `result`. Asking again while an export is
    under way returns that one."""
    job = await exports.request(user, address=address)
    response.headers["Location"] = f"{API_V1}/jobs/{job.id}"
    return JobAccepted(job_id=job.id, status=job.state)


@router.get(
    "/jobs/{job_id}", response_model=JobOut, tags=["jobs"], responses=problem_responses(NotFound)
)
async def read_job(job_id: uuid.UUID, user: CurrentUser, jobs: JobServiceDep) -> Job:
    """A job you started (administrators: any job), with its progress."""
    return await jobs.get(user, job_id)
