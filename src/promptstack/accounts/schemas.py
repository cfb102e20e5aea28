"""Accounts as the API shows and accepts them."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    ConfigDict,
    Field,
    StrictBool,
    StringConstraints,
    ValidationInfo,
    field_validator,
)

from promptstack.accounts.credit_models import CreditReason
from promptstack.accounts.models import Role, Tier
from promptstack.accounts.rules import (
    EMAIL_MAX_LENGTH,
    PASSWORD_MAX_LENGTH,
    PASSWORD_MIN_LENGTH,
    USERNAME_PATTERN,
    check_username,
    normalize_email,
    password_problem,
)
from promptstack.http.schemas import Input, Output, Password, clean_text, not_null, one_line

# The rules below are checked by the validators; `json_schema_extra` states them in the
# OpenAPI document, which a validator function cannot.
Email = Annotated[
    str,
    StringConstraints(max_length=EMAIL_MAX_LENGTH),
    AfterValidator(normalize_email),
    Field(
        json_schema_extra={"format": "email"},
        description="Stored normalised; unique regardless of letter case. Only ASCII before "
        "the @; an internationalised domain must write each label in one script.",
    ),
]
Username = Annotated[
    str,
    StringConstraints(max_length=32),
    AfterValidator(check_username),
    Field(
        json_schema_extra={"minLength": 3, "pattern": USERNAME_PATTERN.pattern},
        description="3 to 32 letters, digits, '.', '_' or '-', starting with a letter or digit.",
    ),
]
NewPassword = Annotated[
    Password,
    Field(
        json_schema_extra={"minLength": PASSWORD_MIN_LENGTH, "maxLength": PASSWORD_MAX_LENGTH},
        description=f"{PASSWORD_MIN_LENGTH} to {PASSWORD_MAX_LENGTH} characters, not blank, "
        "and neither the username nor the email address (nor the part before its @).",
    ),
]
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
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "email": "ada@example.com",
                    "username": "ada",
                    "password": "analytical-engine-1843",
                    "full_name": "Ada Lovelace",
                }
            ]
        }
    )

    email: Email
    username: Username
    password: NewPassword
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

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"full_name": "Augusta Ada King", "preferred_provider": "demo"}]
        }
    )

    email: Annotated[Email | None, not_null("cannot be removed")] = None
    username: Annotated[Username | None, not_null("cannot be removed")] = None
    full_name: FullName | None = None
    preferred_provider: Provider | None = None


class PasswordChangeIn(Input):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "current_password": "analytical-engine-1843",
                    "new_password": "difference-engine-1822",
                }
            ]
        }
    )

    current_password: Password
    new_password: NewPassword


class AdminUserIn(Input):
    """Changes an administrator makes; a field left out stays as it is."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"tier": "premium", "is_beta_tester": True}]}
    )

    role: Annotated[Role | None, not_null()] = None
    is_active: Annotated[StrictBool | None, not_null()] = None
    tier: Annotated[Tier | None, not_null()] = None
    is_beta_tester: Annotated[StrictBool | None, not_null()] = None


class CreditEntryOut(Output):
    """One change of the caller's credit balance."""

    id: uuid.UUID
    delta: int = Field(description="Credits added (positive) or spent (negative).")
    balance: int = Field(description="The balance right after this change.")
    reason: CreditReason
    reference: str = Field(description="What caused it, such as `order:<id>`.")
    created_at: datetime
