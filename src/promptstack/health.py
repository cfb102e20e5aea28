"""Liveness, readiness and metrics, for load balancers, orchestrators and Prometheus."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
from collections.abc import Awaitable, Callable
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from promptstack.bootstrap import Container
from promptstack.core import metrics
from promptstack.core.errors import Forbidden
from promptstack.core.net import address_in, client_address
from promptstack.core.settings import Settings
from promptstack.http.dependencies import provider
from promptstack.migrations.runner import schema_problem

ContainerDep = Annotated[Container, Depends(provider(Container))]

router = APIRouter(tags=["health"])

CHECK_TIMEOUT_SECONDS = 2.0


class Liveness(BaseModel):
    status: str


class Check(BaseModel):
    status: Literal["up", "down", "local"]
    required: bool
    error: str | None = None


class Readiness(BaseModel):
    status: Literal["healthy", "degraded", "unhealthy"]
    timestamp: str
    checks: dict[str, Check]


@router.get("/health", response_model=Liveness)
async def liveness() -> Liveness:
    """The process is up. No I/O, so a slow database never gets a healthy process killed."""
    return Liveness(status="ok")


@router.get(
    "/health/ready",
    response_model=Readiness,
    responses={503: {"model": Readiness, "description": "The database is unreachable"}},
)
async def readiness(container: ContainerDep) -> JSONResponse:
    """Whether this instance can serve.

    The database is required (503 without it); the cache is optional: without Redis the
    service answers from the database and reports itself `degraded`. So is the broker,
    when there is one: without RabbitMQ events wait in the outbox and requests still
    succeed. Checks run at once, each bounded by a timeout, so one hung dependency
    cannot hang the probe.
    """
    checks = await _run_checks(container)
    if checks["database"].status != "up":
        status: Literal["healthy", "degraded", "unhealthy"] = "unhealthy"
    elif any(check.status == "down" for check in checks.values()):
        status = "degraded"
    else:
        status = "healthy"
    body = Readiness(status=status, timestamp=container.clock.now().isoformat(), checks=checks)
    return JSONResponse(body.model_dump(), status_code=503 if status == "unhealthy" else 200)


async def _run_checks(container: Container) -> dict[str, Check]:
    probes: dict[str, tuple[bool, Callable[[], Awaitable[None]]]] = {
        "database": (True, lambda: _database_ready(container)),
    }
    if container.cache.status != "local":
        probes["cache"] = (False, container.cache.ping)
    if container.events.broker_ping is not None:
        probes["broker"] = (False, container.events.broker_ping)
    results = await asyncio.gather(*(_probe(fn) for _, fn in probes.values()))
    checks = {
        name: Check(status="down" if error else "up", required=required, error=error)
        for (name, (required, _)), error in zip(probes.items(), results, strict=True)
    }
    if "cache" not in checks:
        checks["cache"] = Check(status="local", required=False)
    return checks


class SchemaNotCurrent(Exception):
    """The database answers, but its schema is not the one this code needs."""


async def _database_ready(container: Container) -> None:
    problem = await schema_problem(container.database.engine)
    if problem is not None:
        raise SchemaNotCurrent(problem)


async def _probe(check: Callable[[], Awaitable[None]]) -> str | None:
    try:
        await asyncio.wait_for(check(), CHECK_TIMEOUT_SECONDS)
    except SchemaNotCurrent as exc:
        return str(exc)
    except Exception as exc:  # any failure to answer means down
        return type(exc).__name__
    return None


class MetricsForbidden(Forbidden):
    code = "metrics_forbidden"
    title = "Metrics are restricted"


@router.get("/metrics", include_in_schema=False)
async def prometheus_metrics(request: Request, container: ContainerDep) -> Response:
    _check_metrics_access(request, container.settings)
    _observe_pools(container)
    await _observe_tables(container)
    body, content_type = metrics.render(container.settings.prometheus_multiproc_dir)
    return Response(body, media_type=content_type)


def _check_metrics_access(request: Request, settings: Settings) -> None:
    """With METRICS_TOKEN or METRICS_ALLOWED_NETWORKS set, only a scraper that presents
    the token or comes from those networks reads the metrics; with neither, anyone."""
    token = settings.metrics_token
    networks = settings.metrics_allowed_networks
    if token is None and not networks:
        return
    if token is not None:
        scheme, _, presented = (request.headers.get("authorization") or "").partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(
            presented.strip().encode(), token.get_secret_value().encode()
        ):
            return
    if networks:
        peer = request.client.host if request.client else None
        address = client_address(
            peer, request.headers.get("x-forwarded-for"), settings.trusted_proxy_networks
        )
        if address_in(address, settings.metrics_networks):
            return
    raise MetricsForbidden("Metrics are served only to the configured scrapers.")


async def _observe_tables(container: Container) -> None:
    """The outbox backlog and the unfinished jobs as of this scrape, whichever process
    relays or runs them: in scale-out those are processes of their own, and every API
    process sees the same tables."""
    with contextlib.suppress(Exception):
        await asyncio.wait_for(
            asyncio.gather(
                container.events.relay.refresh_metrics(),
                container.jobs.service.observe(),
                container.shop.orders.observe(),
            ),
            CHECK_TIMEOUT_SECONDS,
        )


def _observe_pools(container: Container) -> None:
    pool = container.database.engine.sync_engine.pool
    checked_out = getattr(pool, "checkedout", None)
    checked_in = getattr(pool, "checkedin", None)
    if callable(checked_out) and callable(checked_in):
        metrics.DB_POOL_CHECKED_OUT.labels(pool="primary").set(checked_out())
        metrics.DB_POOL_SIZE.labels(pool="primary").set(checked_out() + checked_in())
