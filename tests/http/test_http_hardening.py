"""What an attack on the HTTP surface found, fixed: each case is the attack itself."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from promptstack.bootstrap import bootstrap
from promptstack.core.clock import FrozenClock
from promptstack.main import create_app
from tests.conftest import make_settings
from tests.fixtures.support import assert_problem

pytestmark = pytest.mark.input_only

ClientFor = Callable[..., AbstractAsyncContextManager[httpx.AsyncClient]]


@pytest.fixture
def client_for(database_url: str, tmp_path: Path, clock: FrozenClock) -> ClientFor:
    """A client of an app built with these settings, seen from `peer`."""

    @asynccontextmanager
    async def build(
        peer: str = "203.0.113.7", **overrides: Any
    ) -> AsyncIterator[httpx.AsyncClient]:
        container = bootstrap(make_settings(database_url, tmp_path, **overrides), clock=clock)
        transport = httpx.ASGITransport(app=create_app(container=container), client=(peer, 1))
        try:
            async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
                yield c
        finally:
            await container.aclose()

    return build


async def test_405_allows_every_method_of_the_path(client_for: ClientFor) -> None:
    async with client_for() as client:
        response = await client.put("/api/v1/users/me")
    assert_problem(response, 405, "method_not_allowed")
    assert response.headers["allow"] == "GET, PATCH, DELETE"


@pytest.mark.parametrize(
    "host",
    [
        "evil.com?.example.org",
        "evil.com/.example.org",
        "evil.com#.example.org",
        "evil.com .example.org",
        "user@x.example.org",
        "x.example.org:notaport",
        "",
    ],
)
async def test_a_host_that_is_not_a_host_name_is_refused(client_for: ClientFor, host: str) -> None:
    async with client_for(allowed_hosts=["*.example.org"]) as client:
        response = await client.get("/health", headers={"host": host})
    assert_problem(response, 400, "invalid_host")


@pytest.mark.parametrize("host", ["api.example.org", "API.Example.org:8443", "a.b.example.org."])
async def test_real_subdomains_pass(client_for: ClientFor, host: str) -> None:
    async with client_for(allowed_hosts=["*.example.org"]) as client:
        response = await client.get("/health", headers={"host": host})
    assert response.status_code == 200


async def test_an_ipv6_literal_host_matches_its_configured_form(client_for: ClientFor) -> None:
    async with client_for(allowed_hosts=["::1"]) as client:
        assert (await client.get("/health", headers={"host": "[::1]:8000"})).status_code == 200
        refused = await client.get("/health", headers={"host": "[::2]"})
    assert_problem(refused, 400, "invalid_host")


async def test_a_trailing_slash_is_not_redirected_to_the_clients_host(
    client_for: ClientFor,
) -> None:
    async with client_for() as client:
        response = await client.get("/api/v1/users/me/", headers={"host": "evil.example"})
    assert_problem(response, 404, "not_found")
    assert "location" not in response.headers


async def test_an_invented_method_is_one_metrics_label(client_for: ClientFor) -> None:
    async with client_for() as client:
        for method in ("FROBNICATE", "X-INVENTED-1", "X-INVENTED-2"):
            await client.request(method, "/api/v1/features")
        text = (await client.get("/metrics")).text
    assert "FROBNICATE" not in text
    assert "X-INVENTED" not in text
    assert re.search(r'promptstack_http_requests_total\{method="other",[^}]*\} [1-9]', text)


async def test_metrics_with_a_token_answer_only_its_bearer(client_for: ClientFor) -> None:
    async with client_for(metrics_token="a-long-scrape-token-0123456789") as client:
        anonymous = await client.get("/metrics")
        wrong = await client.get("/metrics", headers={"Authorization": "Bearer wrong"})
        right = await client.get(
            "/metrics", headers={"Authorization": "Bearer a-long-scrape-token-0123456789"}
        )
    assert_problem(anonymous, 403, "metrics_forbidden")
    assert_problem(wrong, 403, "metrics_forbidden")
    assert right.status_code == 200
    assert "promptstack_http_requests_total" in right.text


@pytest.mark.parametrize(
    ("networks", "status"), [(["10.0.0.0/8"], 403), (["203.0.113.0/24", "10.0.0.0/8"], 200)]
)
async def test_metrics_with_networks_answer_only_those_networks(
    client_for: ClientFor, networks: list[str], status: int
) -> None:
    async with client_for(peer="203.0.113.7", metrics_allowed_networks=networks) as client:
        response = await client.get("/metrics")
    assert response.status_code == status


async def test_metrics_networks_do_not_believe_an_untrusted_forwarded_for(
    client_for: ClientFor,
) -> None:
    async with client_for(peer="198.51.100.1", metrics_allowed_networks=["10.0.0.0/8"]) as client:
        response = await client.get("/metrics", headers={"X-Forwarded-For": "10.1.2.3"})
    assert_problem(response, 403, "metrics_forbidden")


async def test_the_interactive_docs_can_be_turned_off(client_for: ClientFor) -> None:
    async with client_for(docs_enabled=False) as client:
        for path in ("/docs", "/redoc", "/openapi.json"):
            assert_problem(await client.get(path), 404, "not_found")
        assert (await client.get("/health")).status_code == 200


async def test_every_documented_error_is_a_problem_document(client_for: ClientFor) -> None:
    async with client_for() as client:
        schema = (await client.get("/openapi.json")).json()
    operations = [
        (path, method, operation)
        for path, item in schema["paths"].items()
        for method, operation in item.items()
    ]
    assert operations
    for path, method, operation in operations:
        for status, response in operation["responses"].items():
            # Readiness answers its report with either status: probes read the status.
            if int(status) >= 400 and (path, status) != ("/health/ready", "503"):
                # The OpenAI-compatible API answers in OpenAI's shape instead.
                wanted = (
                    "application/json" if path.startswith("/v1/") else "application/problem+json"
                )
                assert list(response["content"]) == [wanted], (
                    method,
                    path,
                    status,
                )
        if "requestBody" in operation:
            assert "400" in operation["responses"], (method, path)
    validation = schema["components"]["schemas"]["ValidationProblem"]
    assert "errors" in validation["required"]


async def test_a_body_that_does_not_decode_is_the_documented_400(client_for: ClientFor) -> None:
    async with client_for() as client:
        response = await client.post(
            "/api/v1/auth/register",
            content=b'{"email": "\xff\xfe"}',
            headers={"content-type": "application/json"},
        )
    assert_problem(response, 400, "bad_request")
