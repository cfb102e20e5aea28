"""The events of accounts and sessions.

Each is recorded in the outbox by the service whose transaction makes it true; the
handlers in `handlers.py` react to them. Payloads carry ids rather than secrets: a token
for an email is issued by the handler that sends it.
"""

from __future__ import annotations

import uuid

from pydantic import Field

from promptstack.core.envelope import Event


class UserRegistered(Event):
    type = "user.registered"

    user_id: uuid.UUID


class EmailChanged(Event):
    """The address needs confirming again."""

    type = "user.email_changed"

    user_id: uuid.UUID


class VerificationRequested(Event):
    """Someone asked for a new verification email for `email` (maybe no account's)."""

    type = "auth.verification_requested"

    email: str = Field(max_length=320)


class PasswordResetRequested(Event):
    """Someone asked to reset the password of `email` (maybe no account's)."""

    type = "auth.password_reset_requested"

    email: str = Field(max_length=320)
    address: str | None = Field(default=None, max_length=64)
