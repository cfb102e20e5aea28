"""Background jobs: following one."""

from __future__ import annotations

import uuid

from fastapi import APIRouter

from promptstack.accounts.dependencies import CurrentUser
from promptstack.core.errors import NotFound, Unauthorized
from promptstack.http import API_V1
from promptstack.http.openapi import problem_responses
from promptstack.jobs.dependencies import JobServiceDep
from promptstack.jobs.models import Job
from promptstack.jobs.schemas import JobOut

router = APIRouter(prefix=API_V1, responses=problem_responses(Unauthorized))


@router.get(
    "/jobs/{job_id}", response_model=JobOut, tags=["jobs"], responses=problem_responses(NotFound)
)
async def read_job(job_id: uuid.UUID, user: CurrentUser, jobs: JobServiceDep) -> Job:
    """A job you started (administrators: any job), with its progress."""
    return await jobs.get(user, job_id)
