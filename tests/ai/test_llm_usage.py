"""GET /llm/usage and GET /admin/llm/usage: what the usage ledger says, to whom."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from promptstack.accounts.credits import MICROS_PER_CREDIT
from promptstack.core.clock import FrozenClock
from tests.ai.test_llm_generate import funded
from tests.fixtures.support import Account, Api, assert_problem

USAGE = "/api/v1/llm/usage"
ADMIN_USAGE = "/api/v1/admin/llm/usage"
GENERATE = "/api/v1/llm/generate"


async def ask(api: Api, user: Account, prompt: str) -> dict[str, Any]:
    response = await api.client.post(
        GENERATE, json={"prompt": prompt, "max_tokens": 5}, headers=user.headers
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


class TestUsage:
    @pytest.fixture
    def settings_overrides(self) -> dict[str, Any]:
        return {"llm_prices": {"demo/demo": {"prompt": 1_000, "completion": 3_000}}}

    async def test_a_user_sees_their_calls_by_day_and_model_and_page_by_page(
        self, api: Api, clock: FrozenClock
    ) -> None:
        user = await funded(api, 100)
        other = await funded(api, 100)
        first = [await ask(api, user, f"Day one, call {n}") for n in range(2)]
        await ask(api, other, "Someone else's")
        clock.advance(timedelta(days=1))
        await api.login(user)
        second = await ask(api, user, "Day two")

        report = await api.client.get(USAGE, params={"limit": 2}, headers=user.headers)

        assert report.status_code == 200, report.text
        body = report.json()
        days = body["by_day"]
        assert [(d["provider"], d["model"], d["calls"]) for d in days] == [
            ("demo", "demo", 2),
            ("demo", "demo", 1),
        ]
        assert days[0]["day"] < days[1]["day"]
        assert days[0]["cost_micros"] == sum(call["cost_micros"] for call in first)
        assert body["totals"]["calls"] == 3
        assert body["totals"]["prompt_tokens"] == sum(c["prompt_tokens"] for c in [*first, second])
        assert body["totals"]["cost_micros"] == sum(c["cost_micros"] for c in [*first, second])
        assert [item["id"] for item in body["items"]] == [second["id"], first[1]["id"]]
        assert body["next_cursor"]

        rest = await api.client.get(
            USAGE, params={"limit": 2, "cursor": body["next_cursor"]}, headers=user.headers
        )
        assert [item["id"] for item in rest.json()["items"]] == [first[0]["id"]]
        assert rest.json()["next_cursor"] is None

    async def test_the_window_bounds_the_totals(self, api: Api, clock: FrozenClock) -> None:
        user = await funded(api, 100)
        await ask(api, user, "Old call")
        start = clock.now()
        clock.advance(timedelta(hours=2))
        await api.login(user)
        await ask(api, user, "New call")

        report = await api.client.get(
            USAGE, params={"since": (start + timedelta(hours=1)).isoformat()}, headers=user.headers
        )

        assert report.json()["totals"]["calls"] == 1
        assert len(report.json()["items"]) == 2  # the calls themselves are not windowed

    async def test_administrators_see_everyone_dearest_first(self, api: Api) -> None:
        light, heavy = await funded(api, 100), await funded(api, 100)
        await ask(api, light, "Hi")
        for n in range(3):
            await ask(api, heavy, f"A longer question, number {n}, about everything")
        admin = await api.admin()

        report = await api.client.get(ADMIN_USAGE, headers=admin.headers)

        assert report.status_code == 200, report.text
        body = report.json()
        assert [(u["user_id"], u["calls"]) for u in body["by_user"]] == [
            (heavy.id, 3),
            (light.id, 1),
        ]
        assert [(m["provider"], m["model"], m["calls"]) for m in body["by_model"]] == [
            ("demo", "demo", 4)
        ]
        spent = sum(u["cost_micros"] for u in body["by_user"])
        assert body["totals"]["cost_micros"] == spent > 0
        assert body["totals"]["credits_charged"] <= spent // MICROS_PER_CREDIT + 1


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"since": "2026-02-01T00:00:00Z", "until": "2026-01-01T00:00:00Z"}, "since"),
        ({"since": "2024-01-01T00:00:00Z", "until": "2026-01-01T00:00:00Z"}, "since"),
        ({"since": "yesterday"}, "since"),
        ({"until": "1767225600"}, "until"),
        ({"since": "2026-01-01T00:00:00"}, "since"),
    ],
)
async def test_a_window_that_cannot_be_is_a_422(
    api: Api, params: dict[str, str], field: str
) -> None:
    user = await api.user()
    admin = await api.admin()

    mine = await api.client.get(USAGE, params=params, headers=user.headers)
    everyone = await api.client.get(ADMIN_USAGE, params=params, headers=admin.headers)

    for response in (mine, everyone):
        assert assert_problem(response, 422)["errors"][0]["loc"] == ["query", field]


async def test_only_administrators_see_everyone(api: Api) -> None:
    user = await api.user()

    assert_problem(await api.client.get(ADMIN_USAGE, headers=user.headers), 403)
    assert_problem(await api.client.get(ADMIN_USAGE), 401)
    assert_problem(await api.client.get(USAGE), 401)
