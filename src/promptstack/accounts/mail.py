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
from promptstack.core.email import Link, Mailer, compose
from promptstack.core.ids import IdSource
from promptstack.core.security import hash_token, new_secret_token
from promptstack.core.settings import Settings
from promptstack.core.unit_of_work import UnitOfWork

# The paths the links open, on this app (`page_routes`) or on FRONTEND_URL's client.
VERIFY_PAGE = "/verify-email"
RESET_PAGE = "/reset-password"


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
        app = self.settings.app_name
        await self.mailer.send(
            compose(
                user.email,
                f"Welcome to {app}",
                [
                    f"Hello {user.full_name or user.username},",
                    f"your {app} account '{user.username}' is ready. A second email asks "
                    "you to confirm this address.",
                ],
            )
        )

    async def verification(self, uow: UnitOfWork, user: User) -> None:
        hours = self.settings.email_verification_expire_hours
        token = await self._issue(
            uow, user, TokenPurpose.EMAIL_VERIFICATION, timedelta(hours=hours)
        )
        await self.mailer.send(
            compose(
                user.email,
                "Confirm your email address",
                [
                    f"Confirm this address ({user.email}) for your {self.settings.app_name} "
                    f"account '{user.username}':",
                    Link("Confirm my address", self._link(VERIFY_PAGE, token)),
                    f"The link works for {hours} hours. A program can send the token to "
                    f"POST /api/v1/auth/verify-email instead:\n{token}",
                ],
            )
        )

    async def password_reset(self, uow: UnitOfWork, user: User) -> None:
        minutes = self.settings.password_reset_expire_minutes
        token = await self._issue(
            uow, user, TokenPurpose.PASSWORD_RESET, timedelta(minutes=minutes)
        )
        await self.mailer.send(
            compose(
                user.email,
                "Reset your password",
                [
                    "Someone asked to reset the password of your "
                    f"{self.settings.app_name} account '{user.username}'. If it was you, "
                    "choose a new one:",
                    Link("Choose a new password", self._link(RESET_PAGE, token)),
                    f"The link works once, for {minutes} minutes. A program can send the "
                    "token with the new password to POST /api/v1/auth/password-reset/confirm "
                    f"instead:\n{token}",
                    "If it was not you, ignore this message: the password stays as it is.",
                ],
            )
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
        """A link to this app's page (`accounts.page_routes`) or to the client's."""
        base = self.settings.frontend_url or self.settings.public_base_url
        return f"{base.rstrip('/')}{page}?{urlencode({'token': token})}"
