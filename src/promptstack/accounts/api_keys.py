"""Personal API keys: made, listed, deleted, and accepted in place of an access token.

A key is 256 random bits behind a recognisable prefix (`psk_`), so a leaked one is easy
to spot in a log or a repository scan. It is shown once; only its SHA-256 is kept, which
is enough for a secret this random (a slow password hash protects guessable secrets, and
would cost every request). A key speaks for its account only while the account may act:
deactivated, deleted or expired, it stops at once.
"""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass
from datetime import timedelta

from promptstack.accounts.api_key_models import ApiKey
from promptstack.accounts.api_key_repository import ApiKeyRepository
from promptstack.accounts.models import UserSnapshot
from promptstack.accounts.snapshots import UserSnapshots
from promptstack.audit.service import Auditor
from promptstack.core.clock import Clock
from promptstack.core.errors import Conflict, NotFound, Unauthorized
from promptstack.core.ids import IdSource
from promptstack.core.security import hash_token
from promptstack.core.unit_of_work import UnitOfWorkFactory

KEY_PREFIX = "psk_"
# What is shown of a key after it is made: the prefix and 8 of its random characters.
SHOWN_LENGTH = len(KEY_PREFIX) + 8
MAX_KEYS_PER_ACCOUNT = 25
# A key's last use is written at most this often: a busy key must not write per request.
LAST_USED_PRECISION = timedelta(minutes=1)


def is_api_key(credential: str) -> bool:
    return credential.startswith(KEY_PREFIX)


class TooManyApiKeys(Conflict):
    code = "api_key_limit"
    title = "This account has as many API keys as it may"


@dataclass(frozen=True, slots=True)
class NewApiKey:
    key: ApiKey
    secret: str


class ApiKeys:
    def __init__(
        self,
        uow: UnitOfWorkFactory,
        snapshots: UserSnapshots,
        auditor: Auditor,
        clock: Clock,
        ids: IdSource,
    ) -> None:
        self.uow = uow
        self.snapshots = snapshots
        self.auditor = auditor
        self.clock = clock
        self.ids = ids

    async def create(
        self,
        user: UserSnapshot,
        name: str,
        *,
        expires_in_days: int | None = None,
        address: str | None = None,
    ) -> NewApiKey:
        secret = KEY_PREFIX + secrets.token_urlsafe(32)
        now = self.clock.now()
        key = ApiKey(
            id=self.ids.new(),
            user_id=user.id,
            name=name,
            prefix=secret[:SHOWN_LENGTH],
            key_hash=hash_token(secret),
            created_at=now,
            last_used_at=None,
            expires_at=None if expires_in_days is None else now + timedelta(days=expires_in_days),
        )
        async with self.uow() as uow:
            keys = ApiKeyRepository.of(uow)
            if await keys.count_locked(user.id) >= MAX_KEYS_PER_ACCOUNT:
                raise TooManyApiKeys(
                    f"an account may hold {MAX_KEYS_PER_ACCOUNT} keys; delete one first"
                )
            keys.add(key)
            self.auditor.record(
                uow,
                "api_key.created",
                actor_id=user.id,
                subject_id=user.id,
                address=address,
                key_id=str(key.id),
                prefix=key.prefix,
                name=name,
            )
        return NewApiKey(key, secret)

    async def list(self, user: UserSnapshot) -> list[ApiKey]:
        async with self.uow(read_only=True) as uow:
            return await ApiKeyRepository.of(uow).of_user(user.id)

    async def delete(
        self, user: UserSnapshot, key_id: uuid.UUID, *, address: str | None = None
    ) -> None:
        """Delete one of the caller's keys; anyone else's is not found, as if it did not
        exist."""
        async with self.uow() as uow:
            removed = await ApiKeyRepository.of(uow).remove(key_id, user.id)
            if removed is None:
                raise NotFound("You have no API key with this id.")
            self.auditor.record(
                uow,
                "api_key.deleted",
                actor_id=user.id,
                subject_id=user.id,
                address=address,
                key_id=str(key_id),
                prefix=removed.prefix,
            )

    async def authenticate(self, secret: str) -> UserSnapshot:
        """The live account a key speaks for."""
        now = self.clock.now()
        async with self.uow(read_only=True) as uow:
            key = await ApiKeyRepository.of(uow).by_hash(hash_token(secret))
        if key is None or (key.expires_at is not None and key.expires_at <= now):
            raise Unauthorized("The API key is invalid or has expired.")
        user = await self.snapshots.get(key.user_id)
        if user is None or not user.is_active or user.deleted_at is not None:
            raise Unauthorized("The API key no longer grants access.")
        if key.last_used_at is None or key.last_used_at < now - LAST_USED_PRECISION:
            async with self.uow() as uow:
                await ApiKeyRepository.of(uow).touch(key.id, now, now - LAST_USED_PRECISION)
        return user
