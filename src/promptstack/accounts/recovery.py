"""Getting back into an account and proving an address: password resets and email
verification, each by a single-use token sent by email."""

from __future__ import annotations

import uuid

from promptstack.accounts.events import PasswordResetRequested, VerificationRequested
from promptstack.accounts.mail import AccountMail
from promptstack.accounts.repository import UserRepository
from promptstack.accounts.rules import email_key_or_none, password_problem
from promptstack.accounts.session_models import TokenPurpose
from promptstack.accounts.session_repository import ActionTokenRepository, RefreshTokenRepository
from promptstack.audit.service import Auditor
from promptstack.core.clock import Clock
from promptstack.core.errors import InvalidToken, ValidationFailed
from promptstack.core.ids import IdSource
from promptstack.core.security import PasswordHasher, hash_token
from promptstack.core.unit_of_work import UnitOfWork, UnitOfWorkFactory


class AccountRecovery:
    def __init__(
        self,
        uow: UnitOfWorkFactory,
        hasher: PasswordHasher,
        mail: AccountMail,
        auditor: Auditor,
        clock: Clock,
        ids: IdSource,
    ) -> None:
        self.uow = uow
        self.hasher = hasher
        self.mail = mail
        self.audit = auditor
        self.clock = clock
        self.ids = ids

    async def request_password_reset(self, email: str, address: str) -> None:
        """Record the request whatever the address: the look-up and the email happen in
        a handler, so neither the answer nor its timing tells whether an account exists."""
        if email_key_or_none(email) is None:
            return
        async with self.uow() as uow:
            uow.record(
                PasswordResetRequested(email=email, address=address), aggregate_id=self.ids.new()
            )

    async def send_password_reset(self, uow: UnitOfWork, event: PasswordResetRequested) -> None:
        """Handles a reset request: issue a token and email it, if the account exists."""
        key = email_key_or_none(event.email)
        user = await UserRepository.of(uow).by_email(key) if key else None
        if user is None or not user.is_active or user.deleted_at is not None:
            return
        await self.mail.password_reset(uow, user)
        self.audit.record(
            uow,
            "auth.password_reset_requested",
            actor_id=None,
            subject_id=user.id,
            address=event.address,
        )

    async def reset_password(self, token: str, new_password: str) -> None:
        new_hash = await self.hasher.hash(new_password)
        now = self.clock.now()
        async with self.uow() as uow:
            used = await ActionTokenRepository.of(uow).consume(
                hash_token(token), TokenPurpose.PASSWORD_RESET, now
            )
            user = await UserRepository.of(uow).get(used.user_id) if used else None
            if user is None or not user.is_active or user.deleted_at is not None:
                raise InvalidToken("The reset token is invalid, used or expired.")
            problem = password_problem(new_password, email=user.email, username=user.username)
            if problem:
                raise ValidationFailed(problem, loc=("body", "new_password"))
            user.password_hash = new_hash
            user.is_verified = True
            user.session_version += 1
            user.updated_at = now
            await RefreshTokenRepository.of(uow).revoke_all_for(user.id, now)
            self.audit.record(uow, "auth.password_reset", actor_id=user.id, subject_id=user.id)

    async def request_verification(self, email: str) -> None:
        if email_key_or_none(email) is None:
            return
        async with self.uow() as uow:
            uow.record(VerificationRequested(email=email), aggregate_id=self.ids.new())

    async def send_verification(
        self, uow: UnitOfWork, user_id: uuid.UUID | None = None, *, email: str | None = None
    ) -> None:
        """Handles the events that call for a verification email: issue a token and email
        it, unless the address is confirmed already."""
        if user_id is not None:
            user = await UserRepository.of(uow).get(user_id)
        else:
            key = email_key_or_none(email or "")
            user = await UserRepository.of(uow).by_email(key) if key else None
        if user is None or user.is_verified or not user.is_active or user.deleted_at is not None:
            return
        await self.mail.verification(uow, user)

    async def verify_email(self, token: str) -> None:
        now = self.clock.now()
        async with self.uow() as uow:
            used = await ActionTokenRepository.of(uow).consume(
                hash_token(token), TokenPurpose.EMAIL_VERIFICATION, now
            )
            user = await UserRepository.of(uow).get(used.user_id) if used else None
            if user is None or user.deleted_at is not None:
                raise InvalidToken("The verification token is invalid, used or expired.")
            user.is_verified = True
            user.updated_at = now
            self.audit.record(uow, "user.email_verified", actor_id=user.id, subject_id=user.id)
