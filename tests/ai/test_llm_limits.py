"""The gateway's per-user limits: calls and tokens a minute, tokens a day by tier, held
under concurrency, in one process and shared through Redis."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from promptstack.ai.llm.quotas import Limits, MemoryLimitStore, RedisLimitStore
from promptstack.core.cache import redis_client
from promptstack.core.clock import FrozenClock
from tests.fixtures.support import Account, Api, assert_problem

GENERATE = "/api/v1/llm/generate"


async def call(api: Api, user: Account, max_tokens: int = 20) -> Any:
    return await api.client.post(
        GENERATE, json={"prompt": "Hi", "max_tokens": max_tokens}, headers=user.headers
    )


class TestCallsPerMinute:
    @pytest.fixture
    def settings_overrides(self) -> dict[str, Any]:
        return {"llm_requests_per_minute": 4}

    async def test_concurrent_calls_past_the_limit_are_refused_with_retry_after(
        self, api: Api
    ) -> None:
        user, other = await api.user(), await api.user()

        answers = await asyncio.gather(*(call(api, user) for _ in range(10)))
        theirs = await call(api, other)

        assert sorted(a.status_code for a in answers) == [200] * 4 + [429] * 6
        refused = next(a for a in answers if a.status_code == 429)
        assert_problem(refused, 429, "rate_limited")
        assert int(refused.headers["Retry-After"]) >= 1
        assert theirs.status_code == 200  # limits are per caller


class TestTokensPerMinute:
    @pytest.fixture
    def settings_overrides(self) -> dict[str, Any]:
        return {"llm_tokens_per_minute": 300}

    async def test_what_a_call_did_not_use_is_given_back(self, api: Api) -> None:
        user = await api.user()

        answers = [await call(api, user, max_tokens=250) for _ in range(5)]

        # Each holds about 250 of the minute's 300 tokens and gives back all but ~10.
        assert [a.status_code for a in answers] == [200] * 5

    async def test_concurrent_takes_never_hold_more_than_the_minutes_tokens(self) -> None:
        store = MemoryLimitStore(clock=FrozenClock().monotonic)
        limits = Limits(requests_per_minute=100, tokens_per_minute=300, daily_tokens={})
        today = date(2026, 6, 1)

        taken = await asyncio.gather(
            *(store.take("user", today, 121, 10**6, limits) for _ in range(6))
        )

        # Nothing is given back meanwhile: two holds of 121 fit in 300, a third does not.
        assert sum(refusal is None for refusal in taken) == 2
        assert {r.verdict for r in taken if r is not None} == {"rate_limited"}

    async def test_a_call_larger_than_a_minute_allows_is_a_422(self, api: Api) -> None:
        user = await api.user()

        response = await call(api, user, max_tokens=400)

        assert assert_problem(response, 422)["errors"][0]["loc"] == ["body", "max_tokens"]


class TestDailyQuota:
    @pytest.fixture
    def settings_overrides(self) -> dict[str, Any]:
        return {"llm_daily_tokens_free": 100, "llm_daily_tokens_premium": 10_000}

    async def test_a_spent_day_is_refused_until_midnight_and_premium_has_more(
        self, api: Api, clock: FrozenClock
    ) -> None:
        user = await api.user()
        admin = await api.admin()

        refused = await call(api, user, max_tokens=200)

        body = assert_problem(refused, 429, "quota_exceeded")
        now = clock.now()
        midnight = datetime.combine(now.date() + timedelta(days=1), datetime.min.time(), UTC)
        assert abs(int(refused.headers["Retry-After"]) - (midnight - now).total_seconds()) <= 2
        assert "midnight UTC" in body["detail"]

        promoted = await api.client.patch(
            f"/api/v1/users/{user.id}", json={"tier": "premium"}, headers=admin.headers
        )
        assert promoted.status_code == 200, promoted.text
        await api.login(user)
        assert (await call(api, user, max_tokens=200)).status_code == 200

    async def test_the_day_counts_what_calls_used(self, api: Api) -> None:
        user = await api.user()
        used: list[int] = []
        for _ in range(40):
            answer = await call(api, user, max_tokens=20)
            if answer.status_code != 200:
                break
            used.append(answer.json()["tokens_used"])

        assert_problem(answer, 429, "quota_exceeded")
        # The day holds what the calls used, not what they held (prompt + 20 each).
        assert len(used) > 100 // 21
        assert sum(used) <= 100 < sum(used) + 21


async def test_processes_share_the_limits_through_redis(
    shared_redis_url: str, cache_namespace: str
) -> None:
    limits = Limits(requests_per_minute=5, tokens_per_minute=1000, daily_tokens={"free": 10**6})
    clients = [redis_client(shared_redis_url, 5.0) for _ in range(2)]
    stores = [RedisLimitStore(client, cache_namespace) for client in clients]
    today = date(2026, 6, 1)
    try:
        verdicts = await asyncio.gather(
            *(stores[n % 2].take("user-1", today, 10, 10**6, limits) for n in range(20))
        )
        tokens = await asyncio.gather(
            *(stores[n % 2].take("user-2", today, 300, 10**6, limits) for n in range(6))
        )
        await stores[0].give_back("user-2", today, 300, limits)
        after_return = await stores[1].take("user-2", today, 300, 10**6, limits)
        spent = await stores[0].take("user-3", today, 60, 100, limits)
        over = await stores[1].take("user-3", today, 60, 100, limits)
    finally:
        for client in clients:
            await client.aclose()

    assert sum(v is None for v in verdicts) == 5
    assert all(v.verdict == "rate_limited" and v.retry_after >= 1 for v in verdicts if v)
    assert sum(v is None for v in tokens) == 3
    assert after_return is None
    assert spent is None
    assert over is not None
    assert over.verdict == "quota_exceeded"
