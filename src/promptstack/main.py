"""The FastAPI application factory."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware

from promptstack import __version__, health
from promptstack.accounts import api_key_routes, page_routes, session_routes
from promptstack.accounts import routes as accounts_routes
from promptstack.admin import routes as admin_routes
from promptstack.ai.documents import routes as document_routes
from promptstack.ai.llm import routes as llm_routes
from promptstack.ai.openai_compat import routes as openai_routes
from promptstack.ai.openai_compat.errors import OpenAIErrors, document_openai_errors
from promptstack.ai.openai_compat.schemas import OpenAIErrorOut
from promptstack.bootstrap import Container, bootstrap
from promptstack.core.logging import configure_logging, get_logger
from promptstack.core.rate_limit import Quota
from promptstack.core.settings import Settings
from promptstack.core.tracing import tracer_provider
from promptstack.exports import routes as exports_routes
from promptstack.features import routes as features_routes
from promptstack.http import API_V1
from promptstack.http.docs import (
    ASSETS_URL,
    DOCS_POLICY,
    DOCS_URL,
    OAUTH2_REDIRECT_URL,
    REDOC_URL,
    install_docs,
)
from promptstack.http.middleware import (
    BodyLimitMiddleware,
    RateLimitMiddleware,
    RequestContextMiddleware,
    SecurityHeadersMiddleware,
    TrustedHostMiddleware,
)
from promptstack.http.openapi import operation_id, publish_problems
from promptstack.http.pages import PAGE_POLICY
from promptstack.http.problems import install_problem_handlers
from promptstack.jobs import routes as jobs_routes
from promptstack.notifications import routes as notifications_routes
from promptstack.shop.catalog import routes as catalog_routes
from promptstack.shop.orders import routes as order_routes

log = get_logger(__name__)

OPENAPI_URL = "/openapi.json"
DOCS_PAGES = (DOCS_URL, OAUTH2_REDIRECT_URL, REDOC_URL, ASSETS_URL + "/")
UNLIMITED_PATHS = frozenset({"/health", "/health/ready", "/metrics"})
AUTH_PATHS = (
    "/auth/register",
    "/auth/login",
    "/auth/refresh",
    "/auth/password-reset/request",
    "/auth/password-reset/confirm",
    "/auth/verify-email/request",
)

TAGS = [
    {
        "name": "auth",
        "description": "Accounts and sessions: register, log in (OAuth2 password flow), "
        "refresh and log out; password resets and email verification by one-time token.",
    },
    {
        "name": "users",
        "description": "Your own account (profile, password, export, closing it) and, for "
        "administrators, everyone else's.",
    },
    {
        "name": "notifications",
        "description": "In-app notifications with an email copy: administrators send, "
        "each user reads and marks their own.",
    },
    {
        "name": "jobs",
        "description": "Background work started by another call (an export, say): its "
        "state, progress and result.",
    },
    {
        "name": "features",
        "description": "Feature flags as they apply to the caller, signed in or not.",
    },
    {
        "name": "products",
        "description": "The shop's catalog: goods, and credit packs that top up the LLM "
        "credit balance. Anyone browses; administrators add and change products.",
    },
    {
        "name": "orders",
        "description": "Orders, event-sourced: placed at once (idempotently with an "
        "`Idempotency-Key`), then paid and reserved in the background until confirmed or "
        "cancelled. Each order's history can be read as of any moment.",
    },
    {
        "name": "api-keys",
        "description": "Personal API keys for programs: shown once, stored hashed. A key "
        "authenticates the AI endpoints only (`/llm/*`, the OpenAI-compatible `/v1/*`), "
        "never the account itself; these endpoints take an access token.",
    },
    {
        "name": "llm",
        "description": "The LLM gateway: the providers and models this deployment offers, "
        "token counts made offline, answers (whole or streamed) and their usage. Open to "
        "users the `ai_chat` flag admits, with an access token or a personal API key.",
    },
    {
        "name": "documents",
        "description": "Your documents (text, Markdown, PDF), indexed in the background "
        "into chunks with embeddings, and searched by meaning, by words or both. Open to "
        "users the `ai_chat` flag admits, with an access token or a personal API key.",
    },
    {
        "name": "openai",
        "description": "OpenAI's API at `/v1`, so OpenAI client libraries can use this "
        "gateway by its base URL: chat completions (streamed too), models named "
        "`provider/model`, with the credits, quotas and usage of `/llm`. A personal API "
        "key or an access token admits; errors come in OpenAI's shape.",
    },
    {
        "name": "admin",
        "description": "For administrators: the audit log, and the event backbone's "
        "backlog and parked events.",
    },
    {
        "name": "health",
        "description": "Liveness and readiness for load balancers and orchestrators.",
    },
]


def create_app(settings: Settings | None = None, *, container: Container | None = None) -> FastAPI:
    """Build the app. Tests hand in a container; a server builds one from the environment."""
    container = container or bootstrap(settings)
    settings = container.settings
    configure_logging(settings.log_level, json=settings.logs_as_json)
    tracing = tracer_provider(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        log.info("startup", environment=settings.environment, version=__version__)
        container.cache.start()
        # Resumes unfinished jobs when they run in this process (a no-op with Celery).
        await container.jobs.executor.start()
        if settings.relays_in_process:
            await container.start_events()
        yield
        # The server has stopped accepting connections and finished in-flight requests
        # by now; what is left is the event consumers, the outbox, jobs and the pools.
        log.info("shutdown")
        await container.aclose()
        if tracing is not None:
            tracing.shutdown()

    app = FastAPI(
        title=settings.app_name,
        version=__version__,
        description="A production-grade backend for AI-powered products.",
        lifespan=lifespan,
        openapi_tags=TAGS,
        generate_unique_id_function=operation_id,
        # The docs pages are this app's own (`http.docs`): FastAPI's load from CDNs.
        docs_url=None,
        redoc_url=None,
        openapi_url=OPENAPI_URL if settings.docs_enabled else None,
        # No redirects from /path/ to /path: they would be built from the client's Host
        # header. A trailing slash is simply a path that does not exist.
        redirect_slashes=False,
        # FastAPI traces requests natively when given a provider; without one, nothing.
        telemetry={"tracer_provider": tracing, "metrics": False, "logs": False}
        if tracing is not None
        else {"tracing": False, "metrics": False, "logs": False},
    )
    app.state.container = container
    app.state.services = container.services()
    app.state.tracer_provider = tracing
    install_problem_handlers(app)
    larger_bodies = {
        document_routes.UPLOAD_PATH: settings.document_max_bytes + document_routes.MULTIPART_SLACK
    }
    publish_problems(
        app,
        max_body_bytes=settings.max_request_body_bytes,
        body_limits=larger_bodies,
        rate_limited=lambda path: settings.rate_limit_enabled and path not in UNLIMITED_PATHS,
    )
    document_openai_errors(app, OpenAIErrorOut)
    if settings.docs_enabled:
        install_docs(app, openapi_url=OPENAPI_URL)

    # Added innermost first: the request context wraps everything, so even a refused
    # host or a rate-limited call carries a request id and is measured.
    if settings.rate_limit_enabled:
        app.add_middleware(
            RateLimitMiddleware,
            limiter=container.rate_limiter,
            general=Quota(
                settings.rate_limit_burst,
                settings.rate_limit_per_minute,
                lease=settings.rate_limit_lease,
            ),
            auth=Quota(settings.auth_rate_limit_per_minute, settings.auth_rate_limit_per_minute),
            auth_paths=frozenset(API_V1 + path for path in AUTH_PATHS) | set(page_routes.PAGES),
            exempt_paths=UNLIMITED_PATHS,
            tokens=container.accounts.tokens,
            trusted_proxies=settings.trusted_proxy_networks,
        )
    app.add_middleware(
        BodyLimitMiddleware, max_bytes=settings.max_request_body_bytes, larger=larger_bodies
    )
    app.add_middleware(
        SecurityHeadersMiddleware,
        hsts=settings.environment == "production",
        page_policies=[
            *((path, DOCS_POLICY) for path in DOCS_PAGES),
            *((path, PAGE_POLICY) for path in page_routes.PAGES),
        ],
    )
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "PATCH", "DELETE", "OPTIONS"],
            allow_headers=["Authorization", "Content-Type", "Idempotency-Key", "X-Request-ID"],
            expose_headers=[
                "X-Request-ID",
                "Retry-After",
                "RateLimit-Limit",
                "RateLimit-Remaining",
                "RateLimit-Reset",
            ],
            max_age=600,
        )
    if settings.allowed_hosts != ["*"]:
        app.add_middleware(TrustedHostMiddleware, allowed_hosts=tuple(settings.allowed_hosts))
    app.add_middleware(OpenAIErrors)
    app.add_middleware(RequestContextMiddleware)

    app.include_router(health.router)
    for module in (
        page_routes,
        session_routes,
        accounts_routes,
        api_key_routes,
        exports_routes,
        admin_routes,
        features_routes,
        notifications_routes,
        jobs_routes,
        catalog_routes,
        order_routes,
        llm_routes,
        document_routes,
        openai_routes,
    ):
        app.include_router(module.router)
    return app
