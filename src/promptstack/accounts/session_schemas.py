"""Token exchanges and one-time-token requests."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

from promptstack.accounts.schemas import Email
from promptstack.http.schemas import Input, Password, Token


class TokenOut(BaseModel):
    access_token: str
    refresh_token: str
    token_type: Literal["bearer"] = "bearer"  # noqa: S105
    expires_in: int


class RefreshIn(Input):
    refresh_token: Token


class EmailIn(Input):
    email: Email


class PasswordResetIn(Input):
    token: Token
    new_password: Password


class TokenIn(Input):
    token: Token
