"""The emails an account receives.

Event handlers call these inside their transaction: the token an email carries is
issued in it and the email is sent before it commits, so a failure repeats the email
with a fresh token rather than losing it.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from urllib.parse import urlencode

from promptstack.accounts.models import User
from promptstack.accounts.repository import UserRepository
from promptstack.accounts.session_models import ActionToken, TokenPurpose
from promptstack.accounts.session_repository import ActionTokenRepository
from promptstack.core.clock import Clock
from promptstack.core.email import Email, Mailer
from promptstack.core.ids import IdSource
from promptstack.core.security import hash_token, new_secret_token
from promptstack.core.settings import Settings
from promptstack.core.unit_of_work import UnitOfWork


class AccountMail:
    def __init__(
        self,
        settings: Settings,
        mailer: Mailer,
        clock: Clock,
        ids: IdSource,
    ) -> None:
        self.settings = settings
        self.mailer = mailer
        self.clock = clock
        self.ids = ids

    async def welcome_new_account(self, uow: UnitOfWork, user_id: uuid.UUID) -> None:
        """Handles a registration: welcome the account, if it is still there."""
        user = await UserRepository.of(uow).get(user_id)
        if user is None or not user.is_active or user.deleted_at is not None:
            return
        await self.welcome(user)

    async def welcome(self, user: User) -> None:
        await self.mailer.send(
            Email(
                to=user.email,
                subject=f"Welcome to {self.settings.app_name}",
                body=(
                    f"Hello {user.full_name or user.username},\n\n"
                    f"your {self.settings.app_name} account '{user.username}' is ready.\n"
                ),
            ),
        )

    async def verification(self, uow: UnitOfWork, user: User) -> None:
        lifetime = timedelta(hours=self.settings.email_verification_expire_hours)
        token = await self._issue(uow, user, TokenPurpose.EMAIL_VERIFICATION, lifetime)
        link = self._link("verify-email", token)
        await self.mailer.send(
            Email(
                to=user.email,
                subject="Confirm your email address",
                body=(
                    "Confirm this address by opening\n\n"
                    f"  {link}\n\nor by sending this token to POST /api/v1/auth/verify-email:\n\n"
                    f"  {token}\n\nIt is valid for {self.settings.email_verification_expire_hours}"
                    " hours.\n"
                ),
            ),
        )

    async def password_reset(self, uow: UnitOfWork, user: User) -> None:
        lifetime = timedelta(minutes=self.settings.password_reset_expire_minutes)
        token = await self._issue(uow, user, TokenPurpose.PASSWORD_RESET, lifetime)
        link = self._link("reset-password", token)
        await self.mailer.send(
            Email(
                to=user.email,
                subject="Reset your password",
                body=(
                    "Someone asked to reset the password of this account. If it was you, open\n\n"
                    f"  {link}\n\nor send this token with a new password to "
                    f"POST /api/v1/auth/password-reset/confirm:\n\n  {token}\n\n"
                    f"It works once, for {self.settings.password_reset_expire_minutes} minutes. "
                    "If it was not you, ignore this message.\n"
                ),
            ),
        )

    async def _issue(
        self, uow: UnitOfWork, user: User, purpose: TokenPurpose, lifetime: timedelta
    ) -> str:
        """A fresh single-use token; older unused ones of the same purpose stop working."""
        now = self.clock.now()
        await ActionTokenRepository.of(uow).invalidate(user.id, purpose, now)
        token = new_secret_token()
        ActionTokenRepository.of(uow).add(
            ActionToken(
                id=self.ids.new(),
                user_id=user.id,
                purpose=purpose,
                token_hash=hash_token(token),
                created_at=now,
                expires_at=now + lifetime,
            )
        )
        return token

    def _link(self, page: str, token: str) -> str:
        return f"{self.settings.public_base_url.rstrip('/')}/{page}?{urlencode({'token': token})}"
