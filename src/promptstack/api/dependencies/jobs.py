"""The job services a route may ask for."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from promptstack.api.dependencies.services import ContainerDep
from promptstack.services.exports import AccountExports
from promptstack.services.jobs import JobService


async def get_jobs(container: ContainerDep) -> JobService:
    return container.jobs


async def get_exports(container: ContainerDep) -> AccountExports:
    return container.exports


JobServiceDep = Annotated[JobService, Depends(get_jobs)]
AccountExportsDep = Annotated[AccountExports, Depends(get_exports)]
