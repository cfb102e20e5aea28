"""Refresh tokens, one-time action tokens and failed-login counts."""

from __future__ import annotations

import hashlib
import uuid
from datetime import datetime

from sqlalchemy import bindparam, delete, func, select, update

from promptstack.accounts.repository import changed_users
from promptstack.accounts.session_models import (
    ActionToken,
    LoginFailure,
    RefreshToken,
    TokenPurpose,
)
from promptstack.core.repository import Repository

# The sessions of a user ended since a moment: what authentication must refuse.
_REVOKED_FAMILIES = (
    select(RefreshToken.family_id)
    .where(
        RefreshToken.user_id == bindparam("user_id"),
        RefreshToken.revoked_at > bindparam("since"),
    )
    .distinct()
)


class RefreshTokenRepository(Repository[RefreshToken]):
    model = RefreshToken

    async def rotate(self, token_id: uuid.UUID, token_hash: str, now: datetime) -> bool:
        """Mark a live token as used, atomically; False if it was used, revoked or expired.

        The conditional update is what makes two concurrent refreshes with one token
        end with exactly one winner.
        """
        result = await self.session.execute(
            update(RefreshToken)
            .where(
                RefreshToken.id == token_id,
                RefreshToken.token_hash == token_hash,
                RefreshToken.rotated_at.is_(None),
                RefreshToken.revoked_at.is_(None),
                RefreshToken.expires_at > now,
            )
            .values(rotated_at=now)
        )
        return bool(result.rowcount)  # type: ignore[attr-defined]

    async def revoke_family(self, user_id: uuid.UUID, family_id: uuid.UUID, now: datetime) -> None:
        """End one session: its refresh tokens, and (through the user's snapshot, which
        lists the sessions ended lately) the access tokens issued with them."""
        await self.session.execute(
            update(RefreshToken)
            .where(
                RefreshToken.family_id == family_id,
                RefreshToken.user_id == user_id,
                RefreshToken.revoked_at.is_(None),
            )
            .values(revoked_at=now)
        )
        changed_users(self.session).add(user_id)

    async def families_revoked_since(
        self, user_id: uuid.UUID, since: datetime
    ) -> tuple[uuid.UUID, ...]:
        connection = await self.connection()
        found = await connection.scalars(_REVOKED_FAMILIES, {"user_id": user_id, "since": since})
        return tuple(sorted(found.all()))

    async def revoke_all_for(self, user_id: uuid.UUID, now: datetime) -> None:
        await self.session.execute(
            update(RefreshToken)
            .where(RefreshToken.user_id == user_id, RefreshToken.revoked_at.is_(None))
            .values(revoked_at=now)
        )


class ActionTokenRepository(Repository[ActionToken]):
    model = ActionToken

    async def consume(
        self, token_hash: str, purpose: TokenPurpose, now: datetime
    ) -> ActionToken | None:
        """Use a token once: the matching live token, now marked used, or None."""
        token = (
            await self.session.scalars(
                select(ActionToken).where(
                    ActionToken.token_hash == token_hash, ActionToken.purpose == purpose
                )
            )
        ).first()
        if token is None or token.used_at is not None or token.expires_at <= now:
            return None
        claimed = await self.session.execute(
            update(ActionToken)
            .where(ActionToken.id == token.id, ActionToken.used_at.is_(None))
            .values(used_at=now)
        )
        return token if claimed.rowcount else None  # type: ignore[attr-defined]

    async def invalidate(self, user_id: uuid.UUID, purpose: TokenPurpose, now: datetime) -> None:
        await self.session.execute(
            update(ActionToken)
            .where(
                ActionToken.user_id == user_id,
                ActionToken.purpose == purpose,
                ActionToken.used_at.is_(None),
            )
            .values(used_at=now)
        )


class LoginFailureRepository(Repository[LoginFailure]):
    model = LoginFailure

    async def lock(self, *keys: str) -> None:
        """Serialise the transactions that count and reserve guesses for these keys.

        Counting and then inserting is only atomic if no other transaction can do the
        same in between. SQLite already runs one writing transaction at a time (writers
        begin IMMEDIATE); PostgreSQL takes a transaction-scoped advisory lock per key, in
        sorted order so two logins sharing a key can never deadlock.
        """
        if self.session.get_bind().dialect.name != "postgresql":
            return
        for key in sorted(set(keys)):
            await self.session.execute(select(func.pg_advisory_xact_lock(_lock_id(key))))

    async def recent_for_account(self, account_key: str, since: datetime) -> list[datetime]:
        return await self._times(LoginFailure.account_key == account_key, since)

    async def recent_for_address(self, address: str, since: datetime) -> list[datetime]:
        return await self._times(LoginFailure.address == address, since)

    async def _times(self, condition: object, since: datetime) -> list[datetime]:
        query = (
            select(LoginFailure.at)
            .where(condition, LoginFailure.at > since)  # type: ignore[arg-type]
            .order_by(LoginFailure.at.desc())
        )
        return list((await self.session.scalars(query)).all())

    async def settle(self, attempt_id: uuid.UUID) -> None:
        """A reserved guess was wrong: it stays, now as a failure."""
        await self.session.execute(
            update(LoginFailure).where(LoginFailure.id == attempt_id).values(pending=False)
        )

    async def release(self, attempt_id: uuid.UUID) -> None:
        """A reserved guess was right: it no longer counts."""
        await self.session.execute(delete(LoginFailure).where(LoginFailure.id == attempt_id))

    async def purge_before(self, moment: datetime) -> None:
        await self.session.execute(delete(LoginFailure).where(LoginFailure.at <= moment))


def _lock_id(key: str) -> int:
    """A stable signed 64-bit lock number for a key (PostgreSQL's advisory lock space)."""
    digest = hashlib.blake2b(f"login:{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)
