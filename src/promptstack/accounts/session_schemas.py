"""Token exchanges and one-time-token requests."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from promptstack.accounts.schemas import Email, NewPassword
from promptstack.http.schemas import Input, Password, Token, clean_text


class LoginForm(BaseModel):
    """OAuth2's password grant (RFC 6749, 4.3.2) as a form. The other members OAuth2
    clients send (`grant_type`, `scope`, `client_id`) are accepted and not needed."""

    username: Annotated[
        str,
        StringConstraints(min_length=1, max_length=320),
        AfterValidator(clean_text),
        Field(description="Email or username", examples=["ada@example.com"]),
    ]
    password: Annotated[Password, Field(examples=["analytical-engine-1843"])]


class TokenOut(BaseModel):
    access_token: str
    refresh_token: str
    token_type: Literal["bearer"] = "bearer"  # noqa: S105
    expires_in: int


# Tokens are not guessable, so their examples only show the shape.
_JWT_SHAPE = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIuLi4ifQ.c2lnbmF0dXJl"


class RefreshIn(Input):
    model_config = ConfigDict(json_schema_extra={"examples": [{"refresh_token": _JWT_SHAPE}]})

    refresh_token: Token


class EmailIn(Input):
    model_config = ConfigDict(json_schema_extra={"examples": [{"email": "ada@example.com"}]})

    email: Email


class PasswordResetIn(Input):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"token": _JWT_SHAPE, "new_password": "difference-engine-1822"}]
        }
    )

    token: Token
    new_password: NewPassword


class TokenIn(Input):
    """The token from the link in the email."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"token": _JWT_SHAPE}]})

    token: Token
