"""The services a route may ask for, taken from the container the app was built with.

The providers are `async def` although they do no I/O: FastAPI runs a plain `def`
dependency in a worker thread, which on every request costs more than the lookup.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from promptstack.bootstrap import Container
from promptstack.core.net import client_address
from promptstack.services.accounts import AccountService
from promptstack.services.audit import AuditLog
from promptstack.services.auth import AuthService
from promptstack.services.events import EventAdmin
from promptstack.services.exports import AccountExports
from promptstack.services.features import FeatureFlags
from promptstack.services.jobs import JobService
from promptstack.services.notifications import NotificationService


async def get_container(request: Request) -> Container:
    container: Container = request.app.state.container
    return container


ContainerDep = Annotated[Container, Depends(get_container)]


async def get_auth(container: ContainerDep) -> AuthService:
    return container.auth


async def get_accounts(container: ContainerDep) -> AccountService:
    return container.accounts


async def get_audit_log(container: ContainerDep) -> AuditLog:
    return container.audit_log


async def get_event_admin(container: ContainerDep) -> EventAdmin:
    return container.events


async def get_jobs(container: ContainerDep) -> JobService:
    return container.jobs


async def get_exports(container: ContainerDep) -> AccountExports:
    return container.exports


async def get_features(container: ContainerDep) -> FeatureFlags:
    return container.features


async def get_notifications(container: ContainerDep) -> NotificationService:
    return container.notifications


async def get_client_address(request: Request, container: ContainerDep) -> str:
    peer = request.client.host if request.client else None
    return client_address(
        peer, request.headers.get("x-forwarded-for"), container.settings.trusted_proxy_networks
    )


AuthServiceDep = Annotated[AuthService, Depends(get_auth)]
AccountServiceDep = Annotated[AccountService, Depends(get_accounts)]
AuditLogDep = Annotated[AuditLog, Depends(get_audit_log)]
EventAdminDep = Annotated[EventAdmin, Depends(get_event_admin)]
JobServiceDep = Annotated[JobService, Depends(get_jobs)]
AccountExportsDep = Annotated[AccountExports, Depends(get_exports)]
FeatureFlagsDep = Annotated[FeatureFlags, Depends(get_features)]
NotificationServiceDep = Annotated[NotificationService, Depends(get_notifications)]
ClientAddress = Annotated[str, Depends(get_client_address)]
