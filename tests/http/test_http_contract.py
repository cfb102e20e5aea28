"""What every answer carries: request ids, timings, and problem documents for errors."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from fastapi import APIRouter
from sqlalchemy import text

from promptstack.bootstrap import Container, bootstrap
from promptstack.main import create_app
from promptstack.migrations.runner import head_revision
from tests.conftest import make_settings
from tests.fixtures.support import Api, assert_problem


async def test_every_answer_has_a_request_id_and_timing(api: Api) -> None:
    response = await api.client.get("/health")
    assert response.status_code == 200
    assert len(response.headers["x-request-id"]) == 32
    assert response.headers["x-response-time"].endswith("ms")


async def test_a_sane_client_request_id_is_kept(api: Api) -> None:
    response = await api.client.get("/health", headers={"X-Request-ID": "trace-abc.123:xyz"})
    assert response.headers["x-request-id"] == "trace-abc.123:xyz"


@pytest.mark.parametrize(
    "offered", ["x" * 129, "has space", "semi;colon", "<script>", "ünïcode", ""]
)
async def test_an_absurd_request_id_is_replaced(api: Api, offered: str) -> None:
    response = await api.client.get("/health", headers={"X-Request-ID": offered.encode()})
    assert response.headers["x-request-id"] != offered
    assert len(response.headers["x-request-id"]) == 32


async def test_unknown_route_is_a_problem(api: Api) -> None:
    body = assert_problem(await api.client.get("/api/v1/nothing-here"), 404, "not_found")
    assert body["type"] == "/problems/not-found"


async def test_wrong_method_is_a_problem_with_allow(api: Api) -> None:
    response = await api.client.delete("/api/v1/auth/login")
    assert_problem(response, 405, "method_not_allowed")
    assert "POST" in response.headers["allow"]


async def test_validation_errors_list_each_field(api: Api) -> None:
    response = await api.client.post("/api/v1/auth/register", json={"email": "not-an-email"})
    body = assert_problem(response, 422, "validation_error")
    fields = {tuple(error["loc"]) for error in body["errors"]}
    assert ("body", "username") in fields
    assert ("body", "password") in fields
    assert all("input" not in error for error in body["errors"])


async def test_unhandled_errors_leak_nothing(container: Container) -> None:
    app = create_app(container=container)
    boom = APIRouter()

    @boom.get("/boom")
    async def explode() -> None:
        raise RuntimeError("secret database password is hunter2")

    app.include_router(boom)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        response = await client.get("/boom")
    body = assert_problem(response, 500, "internal_error")
    assert "hunter2" not in response.text
    assert "Traceback" not in response.text
    assert body["request_id"] == response.headers["x-request-id"]


async def test_openapi_and_docs_are_served(api: Api) -> None:
    schema = (await api.client.get("/openapi.json")).json()
    login = schema["paths"]["/api/v1/auth/login"]["post"]
    assert "application/x-www-form-urlencoded" in login["requestBody"]["content"]
    assert (
        schema["components"]["securitySchemes"]["OAuth2PasswordBearer"]["flows"]["password"][
            "tokenUrl"
        ]
        == "/api/v1/auth/login"
    )
    assert "401" in schema["paths"]["/api/v1/users/me"]["get"]["responses"]
    docs = await api.client.get("/docs")
    assert docs.status_code == 200
    assert "swagger-ui" in docs.text


async def test_readiness_checks_the_database(api: Api) -> None:
    response = await api.client.get("/health/ready")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "healthy"
    assert body["checks"]["database"]["status"] == "up"


async def test_readiness_is_503_when_the_schema_falls_behind_the_code(api: Api) -> None:
    async def set_revision(revision: str | None) -> None:
        async with api.container.uow() as uow:
            change = text("UPDATE alembic_version SET version_num = :revision")
            await uow.session.execute(change, {"revision": revision})

    await set_revision("0004")
    try:
        response = await api.client.get("/health/ready")
    finally:
        await set_revision(head_revision())  # the PostgreSQL database outlives this test

    assert response.status_code == 503
    database = response.json()["checks"]["database"]
    assert database["status"] == "down"
    assert "schema is at revision 0004" in database["error"]
    assert "run `promptstack migrate`" in database["error"]


async def test_readiness_is_503_without_a_database(tmp_path: Path) -> None:
    settings = make_settings("postgresql+asyncpg://nobody@127.0.0.1:9/none", tmp_path)
    container = bootstrap(settings)
    transport = httpx.ASGITransport(app=create_app(container=container))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        response = await client.get("/health/ready")
        liveness = await client.get("/health")
    await container.aclose()
    assert response.status_code == 503
    assert response.json()["status"] == "unhealthy"
    assert response.json()["checks"]["database"]["status"] == "down"
    assert liveness.status_code == 200
