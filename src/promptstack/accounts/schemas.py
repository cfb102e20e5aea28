"""Accounts as the API shows and accepts them."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, StrictBool, StringConstraints, ValidationInfo, field_validator

from promptstack.accounts.models import Role, Tier
from promptstack.accounts.rules import (
    EMAIL_MAX_LENGTH,
    check_username,
    normalize_email,
    password_problem,
)
from promptstack.http.schemas import Input, Output, Password, clean_text, not_null, one_line

Email = Annotated[
    str, StringConstraints(max_length=EMAIL_MAX_LENGTH), AfterValidator(normalize_email)
]
Username = Annotated[str, StringConstraints(max_length=32), AfterValidator(check_username)]
FullName = Annotated[
    str,
    StringConstraints(min_length=1, max_length=100, strip_whitespace=True),
    AfterValidator(clean_text),
    AfterValidator(one_line),
]
Provider = Literal["demo", "openai", "anthropic", "gemini", "openai_compatible"]


class UserOut(Output):
    id: uuid.UUID
    email: str
    username: str
    full_name: str | None
    role: Role
    tier: Tier
    is_active: bool
    is_verified: bool
    is_beta_tester: bool
    credits: int
    preferred_provider: str | None
    created_at: datetime


class RegisterIn(Input):
    email: Email
    username: Username
    password: Password
    full_name: FullName | None = None

    @field_validator("password")
    @classmethod
    def _password_policy(cls, password: str, info: ValidationInfo) -> str:
        # The fields above it are validated first; one that failed is simply absent.
        problem = password_problem(
            password, email=info.data.get("email"), username=info.data.get("username")
        )
        if problem:
            raise ValueError(problem)
        return password


class ProfileIn(Input):
    """Changes to one's own account; a field left out stays as it is, `null` clears it."""

    email: Annotated[Email | None, not_null("cannot be removed")] = None
    username: Annotated[Username | None, not_null("cannot be removed")] = None
    full_name: FullName | None = None
    preferred_provider: Provider | None = None


class PasswordChangeIn(Input):
    current_password: Password
    new_password: Password


class AdminUserIn(Input):
    """Changes an administrator makes; a field left out stays as it is."""

    role: Annotated[Role | None, not_null()] = None
    is_active: Annotated[StrictBool | None, not_null()] = None
    tier: Annotated[Tier | None, not_null()] = None
    is_beta_tester: Annotated[StrictBool | None, not_null()] = None
