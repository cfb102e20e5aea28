"""Bad input at the job routes and the export that starts one: a 4xx problem document,
and no job submitted."""

from __future__ import annotations

import uuid

from tests.fixtures.bad_input import Authorization, Endpoint, PathIds, Scene

READ_JOB = Endpoint("read-job", "GET", "/jobs/{job_id}", "user")
EXPORT = Endpoint("export", "POST", "/users/me/export", "user")


class TestJobsBadInput(PathIds, Authorization):
    endpoints = (READ_JOB, EXPORT)

    async def prepare(self, scene: Scene) -> None:
        # A job that does not exist: a token the service accepted would get a 404, so
        # every 401 below is the token's doing. A real job would run while the test looks.
        scene.names["job_id"] = str(uuid.uuid4())
