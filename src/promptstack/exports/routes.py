"""The account export: asking for one; it is followed as a job (`GET /jobs/{id}`)."""

from __future__ import annotations

from fastapi import APIRouter, Response

from promptstack.accounts.dependencies import CurrentUser
from promptstack.core.errors import Unauthorized
from promptstack.exports.dependencies import AccountExportsDep
from promptstack.http import API_V1
from promptstack.http.dependencies import ClientAddress
from promptstack.http.openapi import problem_responses
from promptstack.jobs.schemas import JobAccepted

router = APIRouter(prefix=API_V1, responses=problem_responses(Unauthorized))


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
