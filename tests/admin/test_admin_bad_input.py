"""Bad input at the administration routes: the audit log and the event backbone's views
answer a malformed request with a 4xx problem document and change nothing."""

from __future__ import annotations

from tests.fixtures.bad_input import Authorization, Endpoint, Listing, Listings, PathIds, Scene

AUDIT_LOG = Endpoint("audit-log", "GET", "/admin/audit-log", "admin")
BACKLOG = Endpoint("backlog", "GET", "/admin/events/backlog", "admin")
PARKED = Endpoint("parked", "GET", "/admin/events/parked", "admin")
REPLAY = Endpoint("replay", "POST", "/admin/events/{event_id}/replay", "admin")


class TestAdminBadInput(PathIds, Listings, Authorization):
    endpoints = (AUDIT_LOG, BACKLOG, PARKED, REPLAY)
    listings = (
        Listing(
            "/admin/audit-log",
            "admin",
            (
                {"action": "User.Login"},
                {"action": "a" * 65},
                {"action": "a%"},
                {"action": "a\x00"},
                {"action": "user.😀"},
                {"actor_id": "nobody"},
                {"actor_id": "x" * 10_000},
                {"subject_id": "123"},
                {"subject_id": "%00"},
            ),
        ),
        Listing("/admin/events/parked", "admin"),
    )

    async def prepare(self, scene: Scene) -> None:
        # No event is parked: a replay of any id is a 404 once the id is well formed.
        scene.names["event_id"] = "00000000-0000-0000-0000-000000000000"
