"""Registration, login, tokens, password reset and email verification."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Response

from promptstack.accounts.dependencies import (
    AccountServiceDep,
    AuthServiceDep,
    CurrentUser,
    RecoveryDep,
)
from promptstack.accounts.models import User
from promptstack.accounts.schemas import RegisterIn, UserOut
from promptstack.accounts.service import NewAccount
from promptstack.accounts.session_schemas import (
    EmailIn,
    LoginForm,
    PasswordResetIn,
    RefreshIn,
    TokenIn,
    TokenOut,
)
from promptstack.accounts.sessions import TokenPair
from promptstack.core.errors import (
    AppError,
    Conflict,
    InvalidCredentials,
    InvalidToken,
    TooManyRequests,
    Unauthorized,
)
from promptstack.http import API_V1
from promptstack.http.dependencies import ClientAddress
from promptstack.http.openapi import problem_response, problem_responses
from promptstack.http.problems import OAuth2TokenRoute
from promptstack.http.schemas import Accepted

router = APIRouter(prefix=f"{API_V1}/auth", tags=["auth"])
# The token endpoint's own router, since its route class speaks OAuth2.
token_router = APIRouter(route_class=OAuth2TokenRoute)

NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


def _tokens(pair: TokenPair, response: Response) -> TokenOut:
    response.headers.update(NO_STORE)
    return TokenOut(
        access_token=pair.access_token, refresh_token=pair.refresh_token, expires_in=pair.expires_in
    )


@router.post(
    "/register",
    status_code=201,
    response_model=UserOut,
    responses=problem_responses(Conflict),
)
async def register(body: RegisterIn, accounts: AccountServiceDep, address: ClientAddress) -> User:
    """Create an account. A welcome email and an email-verification link follow."""
    return await accounts.register(
        NewAccount(
            email=body.email,
            username=body.username,
            password=body.password,
            full_name=body.full_name,
        ),
        address=address,
    )


@token_router.post(
    "/login",
    response_model=TokenOut,
    responses={
        **problem_responses(InvalidCredentials),
        429: problem_response("Too many failed logins for this account: it is locked a while"),
    },
)
async def login(
    form: Annotated[LoginForm, Form()],
    auth: AuthServiceDep,
    address: ClientAddress,
    response: Response,
) -> TokenOut:
    """OAuth2 password flow: the form's `username` may be the email or the username.

    A refusal is a problem document that also carries OAuth2's `error` and
    `error_description` (RFC 6749, section 5.2), which OAuth2 clients such as the
    docs' "Authorize" dialog show."""
    try:
        pair = await auth.login(form.username, form.password, address)
    except InvalidCredentials as exc:
        raise _oauth2(exc, "invalid_grant") from None
    except TooManyRequests as exc:
        raise _oauth2(exc, "temporarily_unavailable") from None
    return _tokens(pair, response)


def _oauth2(error: AppError, code: str) -> AppError:
    error.extra.update(error=code, error_description=error.detail)
    return error


@router.post("/refresh", response_model=TokenOut, responses=problem_responses(Unauthorized))
async def refresh(body: RefreshIn, auth: AuthServiceDep, response: Response) -> TokenOut:
    """Trade a refresh token for a new pair. Each refresh token works once."""
    return _tokens(await auth.refresh(body.refresh_token), response)


@router.post("/logout", status_code=204, responses=problem_responses(Unauthorized))
async def logout(body: RefreshIn, user: CurrentUser, auth: AuthServiceDep) -> None:
    await auth.logout(user, body.refresh_token)


@router.post("/password-reset/request", status_code=202, response_model=Accepted)
async def request_password_reset(
    body: EmailIn, recovery: RecoveryDep, address: ClientAddress
) -> Accepted:
    """Always 202: whether the address has an account is not revealed."""
    await recovery.request_password_reset(body.email, address)
    return Accepted()


@router.post(
    "/password-reset/confirm",
    status_code=204,
    responses=problem_responses(InvalidToken),
)
async def confirm_password_reset(body: PasswordResetIn, recovery: RecoveryDep) -> None:
    await recovery.reset_password(body.token, body.new_password)


@router.post("/verify-email", status_code=204, responses=problem_responses(InvalidToken))
async def verify_email(body: TokenIn, recovery: RecoveryDep) -> None:
    await recovery.verify_email(body.token)


@router.post("/verify-email/request", status_code=202, response_model=Accepted)
async def request_verification(body: EmailIn, recovery: RecoveryDep) -> Accepted:
    """Send a new verification link. Always 202, like the password reset request."""
    await recovery.request_verification(body.email)
    return Accepted()


router.include_router(token_router)
