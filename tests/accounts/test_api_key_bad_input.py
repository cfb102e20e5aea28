"""Bad input at the API-key endpoints: a 4xx problem document, never a 500, nothing
written."""

from __future__ import annotations

from tests.fixtures.bad_input import MEGABYTE, Authorization, Endpoint, JsonBodies, PathIds, Scene

CREATE = Endpoint(
    "create",
    "POST",
    "/api-keys",
    "user",
    lambda s: {"name": "notebook", "expires_in_days": 30},
    required=("name",),
    text=("name",),
    nullable=("expires_in_days",),
    bad_values=[
        ("name", ""),
        ("name", "   "),
        ("name", "n" * 101),
        ("name", "two\nlines"),
        ("name", MEGABYTE),
        ("expires_in_days", 0),
        ("expires_in_days", -1),
        ("expires_in_days", 3651),
        ("expires_in_days", 10**30),
        ("expires_in_days", 1.5),
        ("expires_in_days", "30"),
        ("expires_in_days", True),
    ],
)
LIST = Endpoint("list", "GET", "/api-keys", "user")
DELETE = Endpoint("delete", "DELETE", "/api-keys/{key_id}", "user")


class TestApiKeysBadInput(JsonBodies, PathIds, Authorization):
    endpoints = (CREATE, LIST, DELETE)

    async def prepare(self, scene: Scene) -> None:
        """A key of the caller's to aim at; the target's key, by the other-user tests."""
        made = await scene.api.client.post(
            "/api/v1/api-keys", json={"name": "kept"}, headers=scene.caller.headers
        )
        assert made.status_code == 201, made.text
        scene.names["key_id"] = made.json()["id"]
