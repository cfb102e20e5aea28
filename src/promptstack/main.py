"""The FastAPI application factory."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from promptstack import __version__
from promptstack.api.middleware import RequestContextMiddleware
from promptstack.api.problems import install_problem_handlers
from promptstack.api.routes import admin, auth, health, users
from promptstack.bootstrap import Container, bootstrap
from promptstack.core.logging import configure_logging, get_logger
from promptstack.core.settings import Settings

log = get_logger(__name__)


def create_app(settings: Settings | None = None, *, container: Container | None = None) -> FastAPI:
    """Build the app. Tests hand in a container; a server builds one from the environment."""
    container = container or bootstrap(settings)
    settings = container.settings
    configure_logging(settings.log_level, json=settings.log_json)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        log.info("startup", environment=settings.environment, version=__version__)
        yield
        # The server has stopped accepting connections and finished in-flight requests
        # by now; what is left is background work and the pools.
        log.info("shutdown", pending_background_tasks=container.background.pending)
        await container.aclose()

    app = FastAPI(
        title=settings.app_name,
        version=__version__,
        description="A production-grade backend for AI-powered products.",
        lifespan=lifespan,
        docs_url="/docs",
        redoc_url="/redoc",
    )
    app.state.container = container
    install_problem_handlers(app)
    app.add_middleware(RequestContextMiddleware)

    app.include_router(health.router)
    for module in (auth, users, admin):
        app.include_router(module.router, prefix=settings.api_v1_prefix)
    return app
