"""Sessions: login, token refresh with reuse detection, logout, and authentication."""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from promptstack.accounts.models import User, UserSnapshot
from promptstack.accounts.repository import UserRepository
from promptstack.accounts.rules import email_key_or_none
from promptstack.accounts.session_models import LoginFailure, RefreshToken
from promptstack.accounts.session_repository import (
    LoginFailureRepository,
    RefreshTokenRepository,
)
from promptstack.accounts.snapshots import UserSnapshots
from promptstack.audit.service import Auditor
from promptstack.core.clock import Clock
from promptstack.core.errors import (
    InvalidCredentials,
    TooManyRequests,
    Unauthorized,
)
from promptstack.core.ids import IdSource
from promptstack.core.logging import get_logger
from promptstack.core.security import PasswordHasher, TokenCodec, hash_token
from promptstack.core.settings import Settings
from promptstack.core.unit_of_work import UnitOfWork, UnitOfWorkFactory

log = get_logger(__name__)


@dataclass(frozen=True, slots=True)
class TokenPair:
    access_token: str
    refresh_token: str
    expires_in: int


class AccountInactive(InvalidCredentials):
    code = "account_inactive"
    title = "This account is deactivated"


class LoginLocked(TooManyRequests):
    code = "login_locked"
    title = "Too many failed logins; try again later"


class AuthService:
    def __init__(
        self,
        settings: Settings,
        uow: UnitOfWorkFactory,
        snapshots: UserSnapshots,
        hasher: PasswordHasher,
        tokens: TokenCodec,
        auditor: Auditor,
        clock: Clock,
        ids: IdSource,
    ) -> None:
        self.uow = uow
        self.snapshots = snapshots
        self.hasher = hasher
        self.tokens = tokens
        self.audit = auditor
        self.clock = clock
        self.ids = ids
        self.lockout = timedelta(minutes=settings.login_lockout_minutes)
        self.max_per_account = settings.login_max_failures_per_account
        self.max_per_address = settings.login_max_failures_per_address

    async def login(self, identifier: str, password: str, address: str) -> TokenPair:
        """Check credentials, throttling guesses per account and per client address.

        A guess is reserved (counted as a failure) in one transaction before the password
        is verified, and that transaction first locks the account's and the address's
        counts: however many logins arrive at once, in however many processes, at most
        the limit of them are ever verified per window. The password is verified outside
        any transaction, since Argon2 is slow by design and must not hold a lock. A right
        password releases its own reservation only; earlier failures age out with the
        window, so logging in does not hand a guesser a fresh allowance.
        """
        now = self.clock.now()
        async with self.uow() as uow:
            user = await UserRepository.of(uow).by_login(_login_key(identifier))
            account_key = _account_key(user, identifier)
            await LoginFailureRepository.of(uow).lock(account_key, f"address:{address}")
            retry_after = await self._locked_for(uow, account_key, address, now)
            if retry_after is None:
                attempt = LoginFailure(
                    id=self.ids.new(),
                    account_key=account_key,
                    address=address,
                    at=now,
                    pending=True,
                )
                LoginFailureRepository.of(uow).add(attempt)
        if retry_after is not None:
            raise LoginLocked(
                "Too many failed logins for this account or address.", retry_after=retry_after
            )

        if user is None or user.deleted_at is not None:
            await self.hasher.verify_decoy(password)
            valid, new_hash = False, None
        else:
            valid, new_hash = await self.hasher.verify(password, user.password_hash)

        async with self.uow() as uow:
            if not valid or user is None:
                await LoginFailureRepository.of(uow).settle(attempt.id)
                await LoginFailureRepository.of(uow).purge_before(now - self.lockout)
                self.audit.record(
                    uow,
                    "auth.login_failed",
                    actor_id=None,
                    subject_id=user.id if user else None,
                    address=address,
                )
                fresh = None
            else:
                await LoginFailureRepository.of(uow).release(attempt.id)
                fresh = await UserRepository.of(uow).get(user.id)
                if fresh is not None and fresh.is_active and fresh.deleted_at is None:
                    if new_hash is not None:
                        fresh.password_hash = new_hash
                    self.audit.record(
                        uow, "auth.login", actor_id=fresh.id, subject_id=fresh.id, address=address
                    )
                    return await self._issue_pair(uow, fresh, family_id=self.ids.new())
        if fresh is not None:
            raise AccountInactive("This account is deactivated.")
        raise InvalidCredentials("Incorrect username or password.")

    async def _locked_for(
        self, uow: UnitOfWork, account_key: str, address: str, now: datetime
    ) -> int | None:
        """Seconds until a login may be tried again, or None when it may be tried now."""
        since = now - self.lockout
        waits = []
        for failures, limit in (
            (
                await LoginFailureRepository.of(uow).recent_for_account(account_key, since),
                self.max_per_account,
            ),
            (
                await LoginFailureRepository.of(uow).recent_for_address(address, since),
                self.max_per_address,
            ),
        ):
            if len(failures) >= limit:
                # Failures are newest first; the lock lifts when the limit-th newest ages out.
                unlocks_at = failures[limit - 1] + self.lockout
                waits.append(math.ceil((unlocks_at - now).total_seconds()))
        return max(waits) if waits else None

    async def refresh(self, refresh_token: str) -> TokenPair:
        """Rotate a refresh token. A token used twice means it leaked: end its family."""
        claims = self.tokens.read_refresh(refresh_token)
        now = self.clock.now()
        token_hash = hash_token(refresh_token)
        async with self.uow() as uow:
            if await RefreshTokenRepository.of(uow).rotate(claims.token_id, token_hash, now):
                user = await UserRepository.of(uow).get(claims.user_id)
                if user is not None and user.is_active and user.deleted_at is None:
                    return await self._issue_pair(uow, user, family_id=claims.family_id)
                await RefreshTokenRepository.of(uow).revoke_family(
                    claims.user_id, claims.family_id, now
                )
                reused = False
            else:
                stored = await RefreshTokenRepository.of(uow).get(claims.token_id)
                reused = (
                    stored is not None
                    and stored.token_hash == token_hash
                    and stored.rotated_at is not None
                )
                if reused and stored is not None:
                    await RefreshTokenRepository.of(uow).revoke_family(
                        stored.user_id, stored.family_id, now
                    )
                    self.audit.record(
                        uow,
                        "auth.refresh_token_reused",
                        actor_id=None,
                        subject_id=stored.user_id,
                        family_id=str(stored.family_id),
                    )
        if reused:
            log.warning("refresh_token_reused", user_id=str(claims.user_id))
            raise Unauthorized("This refresh token was already used; all its sessions are ended.")
        raise Unauthorized("The refresh token is no longer valid.")

    async def logout(self, user: UserSnapshot, refresh_token: str) -> None:
        """End the session the refresh token belongs to."""
        claims = self.tokens.read_refresh(refresh_token)
        if claims.user_id != user.id:
            raise Unauthorized("The refresh token does not belong to this account.")
        now = self.clock.now()
        async with self.uow() as uow:
            stored = await RefreshTokenRepository.of(uow).get(claims.token_id)
            if stored is None or stored.token_hash != hash_token(refresh_token):
                raise Unauthorized("The refresh token is not known.")
            await RefreshTokenRepository.of(uow).revoke_family(user.id, stored.family_id, now)
            self.audit.record(uow, "auth.logout", actor_id=user.id, subject_id=user.id)

    async def authenticate(self, access_token: str) -> UserSnapshot:
        """The live account an access token speaks for (from the cache when it can be)."""
        claims = self.tokens.read_access(access_token)
        user = await self.snapshots.get(claims.user_id)
        if (
            user is None
            or not user.is_active
            or user.deleted_at is not None
            or user.session_version != claims.session_version
            or claims.family_id in user.ended_sessions
        ):
            raise Unauthorized("The token no longer grants access.")
        return user

    async def _issue_pair(self, uow: UnitOfWork, user: User, *, family_id: uuid.UUID) -> TokenPair:
        access = self.tokens.issue_access(user.id, user.session_version, family_id)
        refresh = self.tokens.issue_refresh(user.id, family_id)
        RefreshTokenRepository.of(uow).add(
            RefreshToken(
                id=refresh.token_id,
                family_id=family_id,
                user_id=user.id,
                token_hash=hash_token(refresh.token),
                issued_at=refresh.issued_at,
                expires_at=refresh.expires_at,
            )
        )
        return TokenPair(
            access_token=access.token,
            refresh_token=refresh.token,
            expires_in=int(self.tokens.access_lifetime.total_seconds()),
        )


def _account_key(user: User | None, identifier: str) -> str:
    """Failures count against the account when it exists, else against the name tried."""
    if user is not None:
        return f"user:{user.id}"
    return f"name:{identifier.strip().casefold()[:300]}"


def _login_key(identifier: str) -> str:
    """What a login name is looked up by: an address by its key (so any form of it finds
    its account), anything else as a username. An address the rules refuse finds none."""
    if "@" not in identifier:
        return identifier
    return email_key_or_none(identifier) or ""
