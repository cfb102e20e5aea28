"""Stored hashes follow the configured Argon2 parameters, upgraded on the next login."""

from __future__ import annotations

from pathlib import Path

from promptstack.accounts.repository import UserRepository
from promptstack.accounts.service import NewAccount
from promptstack.bootstrap import Container, bootstrap
from promptstack.core.unit_of_work import UnitOfWorkFactory
from tests.conftest import make_settings

PASSWORD = "correct horse battery"


async def _stored_hash(container: Container, name: str) -> str:
    async with UnitOfWorkFactory(container.database)(read_only=True) as uow:
        user = await UserRepository.of(uow).by_login(name)
        assert user is not None
        return user.password_hash


async def test_login_upgrades_a_hash_made_with_old_parameters(
    container: Container, database_url: str, tmp_path: Path
) -> None:
    await container.accounts.service.register(
        NewAccount(email="old@example.com", username="oldhash", password=PASSWORD)
    )
    before = await _stored_hash(container, "oldhash")
    assert "t=1" in before

    stronger = bootstrap(make_settings(database_url, tmp_path, password_hash_time_cost=2))
    try:
        await stronger.accounts.auth.login("oldhash", PASSWORD, "192.0.2.1")
        after = await _stored_hash(stronger, "oldhash")
        assert after.startswith("$argon2id$")
        assert "t=2" in after
        # The upgraded hash still verifies, with the new parameters.
        await stronger.accounts.auth.login("oldhash", PASSWORD, "192.0.2.1")
    finally:
        await stronger.aclose()
