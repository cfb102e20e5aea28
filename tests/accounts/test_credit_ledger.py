"""The credit ledger: one entry per change of a balance, each cause applied once."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from sqlalchemy import func, select

from promptstack.accounts.credit_models import CreditEntry, CreditReason
from promptstack.accounts.models import User
from tests.fixtures.support import PASSWORD, Account, Api, assert_problem

LEDGER = "/api/v1/users/me/credit-ledger"


async def grant(api: Api, user_id: str, amount: int, reference: str) -> int | None:
    async with api.container.uow() as uow:
        return await api.container.accounts.credits.grant(
            uow, uuid.UUID(user_id), amount, CreditReason.PURCHASE, reference
        )


async def balance_and_sum(api: Api, user_id: str) -> tuple[int, int]:
    user = uuid.UUID(user_id)
    async with api.container.uow(read_only=True) as uow:
        balance = await uow.session.scalar(select(User.credits).where(User.id == user))
        total = await uow.session.scalar(
            select(func.coalesce(func.sum(CreditEntry.delta), 0)).where(CreditEntry.user_id == user)
        )
    return int(balance or 0), int(total or 0)


async def test_a_grant_changes_the_balance_and_writes_its_entry(api: Api) -> None:
    buyer = await api.user()
    assert (await api.client.get("/api/v1/users/me", headers=buyer.headers)).json()["credits"] == 0

    assert await grant(api, buyer.id, 1000, "order:a") == 1000
    assert await grant(api, buyer.id, 250, "order:b") == 1250

    me = await api.client.get("/api/v1/users/me", headers=buyer.headers)
    assert me.json()["credits"] == 1250
    ledger = (await api.client.get(LEDGER, headers=buyer.headers)).json()
    assert [(e["delta"], e["balance"], e["reason"], e["reference"]) for e in ledger["items"]] == [
        (250, 1250, "purchase", "order:b"),
        (1000, 1000, "purchase", "order:a"),
    ]
    assert await balance_and_sum(api, buyer.id) == (1250, 1250)


async def test_the_same_cause_applies_once(api: Api) -> None:
    buyer = await api.user()
    assert await grant(api, buyer.id, 500, "order:same") == 500
    assert await grant(api, buyer.id, 500, "order:same") is None
    assert await balance_and_sum(api, buyer.id) == (500, 500)


async def test_concurrent_grants_of_one_cause_apply_once_and_of_many_add_up(api: Api) -> None:
    buyer = await api.user()
    same = await asyncio.gather(*(grant(api, buyer.id, 100, "order:race") for _ in range(8)))
    assert sorted(same, key=lambda b: b or 0) == [None] * 7 + [100]
    many = await asyncio.gather(*(grant(api, buyer.id, 10, f"order:{n}") for n in range(8)))
    assert sorted(b for b in many if b is not None) == list(range(110, 190, 10))
    assert await balance_and_sum(api, buyer.id) == (180, 180)


async def test_a_grant_needs_a_positive_amount(api: Api) -> None:
    buyer = await api.user()
    for amount in (0, -5):
        with pytest.raises(ValueError, match="at least one credit"):
            await grant(api, buyer.id, amount, f"order:{amount}")


async def test_each_user_reads_only_their_own_ledger(api: Api) -> None:
    one, other = await api.user(), await api.user()
    await grant(api, one.id, 70, "order:mine")
    assert (await api.client.get(LEDGER, headers=other.headers)).json()["items"] == []
    assert_problem(await api.client.get(LEDGER), 401)


class TestSignupCredits:
    @pytest.fixture
    def settings_overrides(self) -> dict[str, object]:
        return {"signup_credits": 250}

    async def test_a_new_account_starts_with_them_once_through_the_ledger(self, api: Api) -> None:
        registered = await api.client.post(
            "/api/v1/auth/register",
            json={"email": "new@example.com", "username": "newcomer", "password": PASSWORD},
        )
        assert registered.status_code == 201, registered.text
        assert registered.json()["credits"] == 250
        user = await api.login(
            Account(registered.json()["id"], "new@example.com", "newcomer", PASSWORD)
        )

        ledger = (await api.client.get(LEDGER, headers=user.headers)).json()

        assert [
            (e["delta"], e["balance"], e["reason"], e["reference"]) for e in ledger["items"]
        ] == [(250, 250, "signup", user.id)]
        assert await balance_and_sum(api, user.id) == (250, 250)
