"""The OpenAPI document teaches: readable ids, described tags, the real rules and bounds,
an example for every body that the API accepts as it is, and only the problems each
operation can answer."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from promptstack.accounts.rules import PASSWORD_MIN_LENGTH, USERNAME_PATTERN
from promptstack.main import create_app
from promptstack.shop.catalog.demo import DEMO_PRODUCT_IDS, DEMO_PRODUCTS
from tests.conftest import make_settings
from tests.fixtures.support import Api

Operation = tuple[str, str, dict[str, Any]]

# The ids generated clients name their methods by: renaming one breaks those clients, so a
# change here is a deliberate one.
OPERATION_IDS = {
    "documents-upload-document",
    "documents-list-documents",
    "documents-get-document",
    "documents-delete-document",
    "documents-search-documents",
    "health-liveness",
    "health-readiness",
    "auth-register",
    "auth-login",
    "auth-refresh",
    "auth-logout",
    "auth-request-password-reset",
    "auth-confirm-password-reset",
    "auth-verify-email",
    "auth-request-verification",
    "users-read-me",
    "users-update-me",
    "users-delete-me",
    "users-change-password",
    "users-export-my-data",
    "users-list-users",
    "users-read-user",
    "users-administer-user",
    "users-read-my-credit-ledger",
    "products-list-products",
    "products-get-product",
    "products-create-product",
    "products-update-product",
    "orders-place-order",
    "orders-list-orders",
    "admin-stuck-orders",
    "orders-get-order",
    "orders-order-history",
    "orders-cancel-order",
    "orders-ship-order",
    "orders-deliver-order",
    "notifications-send-notification",
    "notifications-list-notifications",
    "notifications-mark-all-read",
    "notifications-mark-read",
    "jobs-read-job",
    "features-read-features",
    "api-keys-create-api-key",
    "api-keys-list-api-keys",
    "api-keys-delete-api-key",
    "llm-list-providers",
    "llm-count-tokens",
    "llm-generate",
    "llm-my-usage",
    "admin-audit-log",
    "admin-event-backlog",
    "admin-parked-events",
    "admin-replay-event",
    "admin-llm-usage",
    "openai-list-models",
    "openai-read-model",
    "openai-create-chat-completion",
    "openai-create-embeddings",
}
UNLIMITED = {"/health", "/health/ready"}


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    """The document as a production-like app publishes it (rate limits on)."""
    settings = make_settings("sqlite+aiosqlite:///:memory:", Path("."), rate_limit_enabled=True)
    return create_app(settings).openapi()


def operations(schema: dict[str, Any]) -> Iterator[Operation]:
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            yield method, path, operation


def resolve(schema: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        node = schema["components"]["schemas"][node["$ref"].rsplit("/", 1)[-1]]
    return node


def body_schema(schema: dict[str, Any], operation: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The body's JSON schema; an upload that also takes a form is described by its JSON."""
    contents = operation["requestBody"]["content"]
    if "application/json" in contents:
        return "application/json", resolve(schema, contents["application/json"]["schema"])
    ((media_type, content),) = contents.items()
    return media_type, resolve(schema, content["schema"])


def test_operation_ids_read_as_tag_and_action(schema: dict[str, Any]) -> None:
    ids = [operation["operationId"] for _, _, operation in operations(schema)]
    assert len(ids) == len(set(ids))
    assert set(ids) == OPERATION_IDS
    for method, path, operation in operations(schema):
        assert operation["operationId"].startswith(operation["tags"][0] + "-"), (method, path)
        assert re.fullmatch(r"[a-z]+(-[a-z]+)+", operation["operationId"])


def test_every_tag_is_described_and_used(schema: dict[str, Any]) -> None:
    declared = {tag["name"]: tag.get("description", "") for tag in schema["tags"]}
    used = {tag for _, _, operation in operations(schema) for tag in operation["tags"]}
    assert used == set(declared)
    for name, description in declared.items():
        assert len(description) > 20, name


def test_fastapi_default_shapes_are_gone(schema: dict[str, Any]) -> None:
    text = json.dumps(schema)
    assert "HTTPValidationError" not in text
    assert '"ValidationError"' not in text
    assert "Body_" not in text  # forms are named models


def test_each_operation_documents_the_problems_it_can_answer(schema: dict[str, Any]) -> None:
    for method, path, operation in operations(schema):
        where = (method, path)
        responses = operation["responses"]
        errors = {status for status in responses if int(status) >= 400}
        has_body = "requestBody" in operation
        has_input = has_body or bool(operation.get("parameters"))
        openai = path.startswith("/v1/")
        # OpenAI's API answers 400 where ours answers 422, and in its own error shape.
        assert ("422" in errors) == (has_input and not openai), where
        assert ("400" in errors) == (has_body or (openai and has_input)), where
        assert ("413" in errors) == has_body, where
        assert ("429" in errors) == (path not in UNLIMITED), where
        if "security" in operation:
            assert "401" in errors, where
        for status in errors - {"503"}:
            content = responses[status]["content"]
            media_type = "application/json" if openai else "application/problem+json"
            assert list(content) == [media_type], (*where, status)
            expected = "ValidationProblem" if status == "422" else "Problem"
            expected = "OpenAIErrorOut" if openai else expected
            assert content[media_type]["schema"]["$ref"].endswith("/" + expected), (
                *where,
                status,
            )
            assert responses[status]["description"], (*where, status)
        assert "Retry-After" in responses.get("429", {}).get("headers", {"Retry-After": 1})


def test_a_route_s_own_429_keeps_the_rate_limit_s(schema: dict[str, Any]) -> None:
    login = schema["paths"]["/api/v1/auth/login"]["post"]["responses"]["429"]["description"]
    assert "Retry-After" in login
    assert "failed logins" in login


def _unbounded(schema: dict[str, Any], node: dict[str, Any], where: str) -> Iterator[str]:
    node = resolve(schema, node)
    for branch in node.get("anyOf", []) + node.get("oneOf", []) + node.get("allOf", []):
        yield from _unbounded(schema, branch, where)
    kind = node.get("type")
    if kind == "string" and not (
        "maxLength" in node
        or "enum" in node
        or "const" in node
        # Parsed by a grammar that bounds them (RFC 3339 for a date-time).
        or node.get("format") in {"uuid", "date-time"}
    ):
        yield f"{where}: a string without maxLength"
    if kind == "integer" and not ("minimum" in node and "maximum" in node):
        yield f"{where}: an integer without both bounds"
    if kind == "array":
        if "maxItems" not in node:
            yield f"{where}: an array without maxItems"
        yield from _unbounded(schema, node.get("items", {}), f"{where}[]")
    if kind == "object":
        for name, prop in node.get("properties", {}).items():
            yield from _unbounded(schema, prop, f"{where}.{name}")


def test_every_input_is_bounded(schema: dict[str, Any]) -> None:
    problems: list[str] = []
    for method, path, operation in operations(schema):
        for parameter in operation.get("parameters", []):
            where = f"{method} {path} ?{parameter['name']}"
            problems += _unbounded(schema, parameter["schema"], where)
        if "requestBody" in operation:
            media_type, body = body_schema(schema, operation)
            problems += _unbounded(schema, body, f"{method} {path} body")
            if media_type == "application/json":
                assert body.get("additionalProperties") is False, (method, path)
    assert problems == []


def test_the_account_rules_are_stated(schema: dict[str, Any]) -> None:
    register = schema["components"]["schemas"]["RegisterIn"]["properties"]
    assert register["password"]["minLength"] == PASSWORD_MIN_LENGTH
    assert "username" in register["password"]["description"]
    assert register["username"]["pattern"] == USERNAME_PATTERN.pattern
    assert register["email"]["format"] == "email"
    for model, field in (("PasswordChangeIn", "new_password"), ("PasswordResetIn", "new_password")):
        prop = schema["components"]["schemas"][model]["properties"][field]
        assert prop["minLength"] == PASSWORD_MIN_LENGTH, model


def example(schema: dict[str, Any], operation: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The body Swagger UI fills in: the schema's first example, or for a form, each
    field's first example."""
    media_type, body = body_schema(schema, operation)
    if "examples" in body:
        return media_type, body["examples"][0]
    return media_type, {
        name: prop["examples"][0]
        for name, prop in body["properties"].items()
        if "examples" in prop and name in body.get("required", [])
    }


def test_every_request_body_has_an_example(schema: dict[str, Any]) -> None:
    for method, path, operation in operations(schema):
        if "requestBody" in operation:
            _, body = body_schema(schema, operation)
            _, filled = example(schema, operation)
            assert set(body.get("required", [])) <= set(filled), (method, path)


async def test_every_example_is_accepted_as_it_is(api: Api) -> None:
    """After `seed-demo`: the examples name the demo's products."""
    await api.container.shop.catalog.import_products(DEMO_PRODUCTS, ids=DEMO_PRODUCT_IDS)
    document = (await api.client.get("/openapi.json")).json()
    admin = await api.admin()
    target = await api.register()
    checked = 0
    for method, path, operation in operations(document):
        if "requestBody" not in operation:
            continue
        media_type, body = example(document, operation)
        url = re.sub(r"\{[a-z_]+\}", target.id if "users" in path else str(uuid.uuid4()), path)
        sent = {"json": body} if media_type == "application/json" else {"data": body}
        response = await api.client.request(method, url, headers=admin.headers, **sent)
        assert response.status_code < 500, (method, path, response.text)
        if response.status_code >= 400:
            answer = response.json()
            code = answer["error"]["code"] if path.startswith("/v1/") else answer["code"]
            assert code not in {"validation_error", "bad_request", "payload_too_large"}, (
                method,
                path,
                response.text,
            )
        checked += 1
    assert checked >= 10


async def test_the_first_try_it_out_succeeds(api: Api) -> None:
    """Register, log in and change the password with the documented examples, unedited."""
    document = (await api.client.get("/openapi.json")).json()
    paths = document["paths"]

    def body(path: str) -> dict[str, Any]:
        return example(document, paths[path]["post"])[1]

    registered = await api.client.post("/api/v1/auth/register", json=body("/api/v1/auth/register"))
    assert registered.status_code == 201, registered.text
    login = await api.client.post("/api/v1/auth/login", data=body("/api/v1/auth/login"))
    assert login.status_code == 200, login.text
    headers = {"Authorization": f"Bearer {login.json()['access_token']}"}
    change = body("/api/v1/users/me/password")
    changed = await api.client.post("/api/v1/users/me/password", json=change, headers=headers)
    assert changed.status_code == 204, changed.text
    again = {"username": body("/api/v1/auth/login")["username"], "password": change["new_password"]}
    assert (await api.client.post("/api/v1/auth/login", data=again)).status_code == 200
