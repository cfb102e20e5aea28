"""Liveness and readiness, for load balancers and orchestrators."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from promptstack.api.dependencies.services import ContainerDep

router = APIRouter(tags=["health"])

CHECK_TIMEOUT_SECONDS = 2.0


class Liveness(BaseModel):
    status: str


@router.get("/health", response_model=Liveness)
async def health() -> Liveness:
    """The process is up. No I/O, so a slow database never gets a healthy process killed."""
    return Liveness(status="ok")


@router.get("/health/ready")
async def ready(container: ContainerDep) -> JSONResponse:
    """Whether this instance can serve: 503 when the database cannot be reached."""
    try:
        await asyncio.wait_for(container.database.ping(), CHECK_TIMEOUT_SECONDS)
        database = {"status": "up"}
    except Exception as exc:  # any failure to reach it means not ready
        database = {"status": "down", "error": type(exc).__name__}
    healthy = database["status"] == "up"
    body = {
        "status": "healthy" if healthy else "unhealthy",
        "timestamp": container.clock.now().isoformat(),
        "checks": {"database": database},
    }
    return JSONResponse(body, status_code=200 if healthy else 503)
