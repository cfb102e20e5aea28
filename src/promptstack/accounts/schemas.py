"""Accounts as the API shows and accepts them."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal, Self

from pydantic import AfterValidator, StrictBool, StringConstraints, model_validator

from promptstack.accounts.models import Role, Tier
from promptstack.accounts.rules import (
    EMAIL_MAX_LENGTH,
    check_username,
    normalize_email,
    password_problem,
)
from promptstack.http.schemas import Input, Output, Password, clean_text, one_line

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

    @model_validator(mode="after")
    def _password_policy(self) -> Self:
        problem = password_problem(self.password, email=self.email, username=self.username)
        if problem:
            raise ValueError(problem)
        return self


class ProfileIn(Input):
    """Changes to one's own account; a field left out stays as it is, `null` clears it."""

    email: Email | None = None
    username: Username | None = None
    full_name: FullName | None = None
    preferred_provider: Provider | None = None

    @model_validator(mode="after")
    def _not_null_identity(self) -> Self:
        for field in ("email", "username"):
            if field in self.model_fields_set and getattr(self, field) is None:
                raise ValueError(f"{field} cannot be removed")
        return self


class PasswordChangeIn(Input):
    current_password: Password
    new_password: Password


class AdminUserIn(Input):
    role: Role | None = None
    is_active: StrictBool | None = None
    tier: Tier | None = None
    is_beta_tester: StrictBool | None = None

    @model_validator(mode="before")
    @classmethod
    def _no_nulls(cls, data: Any) -> Any:
        if isinstance(data, dict):
            nulls = [key for key, value in data.items() if value is None]
            if nulls:
                raise ValueError(f"{', '.join(nulls)} cannot be null")
        return data
