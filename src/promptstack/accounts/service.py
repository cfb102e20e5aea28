"""Accounts: registration, self-service profile, and administration of other users."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from promptstack.accounts.credit_models import CreditReason
from promptstack.accounts.credits import CreditLedger
from promptstack.accounts.events import EmailChanged, UserRegistered
from promptstack.accounts.models import Role, ShownUser, Tier, User, UserSnapshot, search_key
from promptstack.accounts.repository import UserRepository
from promptstack.accounts.rules import (
    check_username,
    email_key,
    may_grant,
    may_manage,
    normalize_email,
    password_problem,
)
from promptstack.accounts.session_repository import RefreshTokenRepository
from promptstack.audit.service import Auditor
from promptstack.core.clock import Clock
from promptstack.core.errors import (
    Conflict,
    Forbidden,
    InvalidCredentials,
    NotFound,
    ValidationFailed,
)
from promptstack.core.ids import IdSource
from promptstack.core.pagination import Page, PageRequest
from promptstack.core.security import PasswordHasher
from promptstack.core.unit_of_work import UnitOfWork, UnitOfWorkFactory


@dataclass(frozen=True, slots=True)
class NewAccount:
    email: str
    username: str
    password: str
    full_name: str | None = None


@dataclass(frozen=True, slots=True)
class ProfileChanges:
    """Fields a user may change on itself; None means 'leave as is'."""

    email: str | None = None
    username: str | None = None
    full_name: str | None = None
    clear_full_name: bool = False
    preferred_provider: str | None = None
    clear_preferred_provider: bool = False


@dataclass(frozen=True, slots=True)
class AdminChanges:
    role: Role | None = None
    is_active: bool | None = None
    tier: Tier | None = None
    is_beta_tester: bool | None = None


class AccountService:
    def __init__(
        self,
        uow: UnitOfWorkFactory,
        hasher: PasswordHasher,
        auditor: Auditor,
        clock: Clock,
        ids: IdSource,
        credits: CreditLedger,
        *,
        signup_credits: int,
    ) -> None:
        self.uow = uow
        self.hasher = hasher
        self.audit = auditor
        self.clock = clock
        self.ids = ids
        self.credits = credits
        self.signup_credits = signup_credits

    async def register(
        self, account: NewAccount, *, role: Role = Role.USER, address: str | None = None
    ) -> User:
        """Create an account; a welcome and a verification email follow once it is stored."""
        email = _valid(normalize_email, account.email, "email")
        username = _valid(check_username, account.username, "username")
        problem = password_problem(account.password, email=email, username=username)
        if problem:
            raise ValidationFailed(problem, loc=("body", "password"))
        password_hash = await self.hasher.hash(account.password)
        now = self.clock.now()
        async with self.uow() as uow:
            await self._ensure_free(uow, email=email, username=username)
            user = User(
                id=self.ids.new(),
                email=email,
                email_key=email_key(email),
                username=username,
                username_key=username.casefold(),
                full_name=account.full_name,
                password_hash=password_hash,
                role=role,
                tier=Tier.FREE,
                is_active=True,
                is_verified=False,
                is_beta_tester=False,
                credits=0,
                session_version=0,
                created_at=now,
                updated_at=now,
            )
            user.refresh_search_key()
            await UserRepository.of(uow).insert(user)
            await UserRepository.of(uow).flush()
            if self.signup_credits:
                await self.credits.grant(
                    uow, user.id, self.signup_credits, CreditReason.SIGNUP, str(user.id)
                )
                await UserRepository.of(uow).reload_credits(user)
            self.audit.record(
                uow,
                "user.registered",
                actor_id=user.id,
                subject_id=user.id,
                address=address,
                role=role.value,
            )
            uow.record(UserRegistered(user_id=user.id), aggregate_id=user.id)
        return user

    async def get(self, actor: UserSnapshot, user_id: uuid.UUID) -> User:
        """A user may read itself; administrators may read anyone."""
        if actor.id != user_id and actor.role is Role.USER:
            raise Forbidden("You may only read your own account.")
        async with self.uow(read_only=True) as uow:
            user = await UserRepository.of(uow).get(user_id)
        if user is None or (user.deleted_at is not None and actor.role is Role.USER):
            raise NotFound("No such user.")
        return user

    async def search(
        self, page: PageRequest, *, text: str | None, role: Role | None
    ) -> Page[ShownUser]:
        async with self.uow(read_only=True) as uow:
            return await UserRepository.of(uow).search(page, text=text, role=role)

    async def update_profile(
        self, actor: UserSnapshot, changes: ProfileChanges
    ) -> User | ShownUser:
        """Apply the caller's own changes. A change of name or provider alone is written
        in one statement from the caller's snapshot; anything else, or a snapshot the
        account no longer matches, loads the account and checks it first."""
        now = self.clock.now()
        async with self.uow() as uow:
            plain = _plain_changes(actor, changes, now)
            if plain is not None:
                shown = await UserRepository.of(uow).update_seen(actor, plain)
                if shown is not None:
                    fields = [name for name in _PLAIN_FIELDS if name in plain]
                    self.audit.record(
                        uow, "user.updated", actor_id=actor.id, subject_id=actor.id, fields=fields
                    )
                    return shown
            user = await self._live(uow, actor.id)
            email = _valid(normalize_email, changes.email, "email") if changes.email else None
            username = (
                _valid(check_username, changes.username, "username") if changes.username else None
            )
            await self._ensure_free(
                uow,
                email=email if email and email_key(email) != user.email_key else None,
                username=username
                if username and username.casefold() != user.username_key
                else None,
            )
            changed: list[str] = []
            if username is not None and username != user.username:
                user.username, user.username_key = username, username.casefold()
                changed.append("username")
            if changes.full_name is not None or changes.clear_full_name:
                user.full_name = None if changes.clear_full_name else changes.full_name
                changed.append("full_name")
            if changes.preferred_provider is not None or changes.clear_preferred_provider:
                user.preferred_provider = (
                    None if changes.clear_preferred_provider else changes.preferred_provider
                )
                changed.append("preferred_provider")
            if email is not None and email_key(email) != user.email_key:
                user.email, user.email_key, user.is_verified = email, email_key(email), False
                changed.append("email")
                uow.record(EmailChanged(user_id=user.id), aggregate_id=user.id)
            if "email" in changed or "username" in changed:
                await UserRepository.of(uow).save()  # taken meanwhile: AccountTaken
            if changed:
                user.refresh_search_key()
                user.updated_at = now
                self.audit.record(
                    uow, "user.updated", actor_id=user.id, subject_id=user.id, fields=changed
                )
        return user

    async def change_password(self, actor: UserSnapshot, current: str, new: str) -> None:
        """Replace the password and end every session, this one included."""
        async with self.uow(read_only=True) as uow:
            stored = await self._live(uow, actor.id)
        valid, _ = await self.hasher.verify(current, stored.password_hash)
        if not valid:
            raise InvalidCredentials("The current password is not correct.")
        problem = password_problem(new, email=actor.email, username=actor.username)
        if problem:
            raise ValidationFailed(problem, loc=("body", "new_password"))
        new_hash = await self.hasher.hash(new)
        now = self.clock.now()
        async with self.uow() as uow:
            user = await self._live(uow, actor.id)
            user.password_hash = new_hash
            user.session_version += 1
            user.updated_at = now
            await RefreshTokenRepository.of(uow).revoke_all_for(user.id, now)
            self.audit.record(uow, "user.password_changed", actor_id=user.id, subject_id=user.id)

    async def delete_self(self, actor: UserSnapshot) -> None:
        """Close the account: sessions end and personal data is scrubbed; the row stays so
        that the audit log and, later, orders keep pointing at something."""
        now = self.clock.now()
        async with self.uow() as uow:
            user = await self._live(uow, actor.id)
            placeholder = f"deleted-{user.id.hex}"
            user.email = user.email_key = f"{placeholder}@deleted.invalid"
            user.username = user.username_key = placeholder[:32]
            user.full_name = None
            user.password_hash = "!"  # noqa: S105  (matches no password)
            user.is_active = False
            user.deleted_at = now
            user.updated_at = now
            user.session_version += 1
            user.refresh_search_key()
            await RefreshTokenRepository.of(uow).revoke_all_for(user.id, now)
            self.audit.record(uow, "user.deleted", actor_id=user.id, subject_id=user.id)

    async def administer(
        self, actor: UserSnapshot, user_id: uuid.UUID, changes: AdminChanges
    ) -> User:
        """Change another account's role, tier, beta testing or active flag, within the
        actor's rank."""
        if actor.id == user_id:
            raise Forbidden("Administrators cannot change their own role or status.")
        now = self.clock.now()
        async with self.uow() as uow:
            user = await UserRepository.of(uow).get(user_id)
            if user is None or user.deleted_at is not None:
                raise NotFound("No such user.")
            if not may_manage(actor.role, user.role):
                raise Forbidden("You may only manage accounts ranked below your own.")
            if changes.role is not None and changes.role is not user.role:
                if not may_grant(actor.role, changes.role):
                    raise Forbidden(f"You may not grant the role {changes.role.value!r}.")
                self.audit.record(
                    uow,
                    "user.role_changed",
                    actor_id=actor.id,
                    subject_id=user.id,
                    before=user.role.value,
                    after=changes.role.value,
                )
                user.role = changes.role
            if changes.tier is not None and changes.tier is not user.tier:
                self.audit.record(
                    uow,
                    "user.tier_changed",
                    actor_id=actor.id,
                    subject_id=user.id,
                    before=user.tier.value,
                    after=changes.tier.value,
                )
                user.tier = changes.tier
            if changes.is_beta_tester is not None and changes.is_beta_tester != user.is_beta_tester:
                self.audit.record(
                    uow,
                    "user.beta_tester_changed",
                    actor_id=actor.id,
                    subject_id=user.id,
                    before=user.is_beta_tester,
                    after=changes.is_beta_tester,
                )
                user.is_beta_tester = changes.is_beta_tester
            if changes.is_active is not None and changes.is_active != user.is_active:
                user.is_active = changes.is_active
                if not changes.is_active:
                    user.session_version += 1
                    await RefreshTokenRepository.of(uow).revoke_all_for(user.id, now)
                self.audit.record(
                    uow,
                    "user.activated" if changes.is_active else "user.deactivated",
                    actor_id=actor.id,
                    subject_id=user.id,
                )
            user.updated_at = now
        return user

    async def _live(self, uow: UnitOfWork, user_id: uuid.UUID) -> User:
        user = await UserRepository.of(uow).get(user_id)
        if user is None or user.deleted_at is not None or not user.is_active:
            raise NotFound("No such user.")
        return user

    async def _ensure_free(
        self,
        uow: UnitOfWork,
        *,
        email: str | None,
        username: str | None,
    ) -> None:
        taken = await UserRepository.of(uow).taken(
            email_key=email_key(email) if email else None,
            username_key=username.casefold() if username else None,
        )
        if taken:
            fields = sorted(taken)
            raise Conflict(
                f"An account with this {' and '.join(fields)} already exists.",
                extra={"fields": fields},
            )


def _valid(check: Callable[[str], str], value: str, field: str) -> str:
    try:
        return check(value)
    except ValueError as exc:
        raise ValidationFailed(str(exc), loc=("body", field)) from exc


_PLAIN_FIELDS = ("full_name", "preferred_provider")


def _plain_changes(
    actor: UserSnapshot, changes: ProfileChanges, now: datetime
) -> dict[str, Any] | None:
    """The column values of a change that needs no check against other accounts (no new
    email or username), computed from `actor`; None for any other change, or none.

    `UserRepository.update_seen` writes them only if the account's email and username
    are still `actor`'s, which keeps the search key built from them right.
    """
    if changes.email is not None or changes.username is not None:
        return None
    values: dict[str, Any] = {}
    if changes.full_name is not None or changes.clear_full_name:
        full_name = None if changes.clear_full_name else changes.full_name
        values["full_name"] = full_name
        values["search_key"] = search_key(actor.email, actor.username, full_name)
    if changes.preferred_provider is not None or changes.clear_preferred_provider:
        values["preferred_provider"] = (
            None if changes.clear_preferred_provider else changes.preferred_provider
        )
    if not values:
        return None
    values["updated_at"] = now
    return values
