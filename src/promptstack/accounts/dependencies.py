"""Who is calling: the bearer token's account, and whether it may administer."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import OAuth2PasswordBearer

from promptstack.accounts.credits import CreditLedger
from promptstack.accounts.models import Role, UserSnapshot
from promptstack.accounts.recovery import AccountRecovery
from promptstack.accounts.service import AccountService
from promptstack.accounts.sessions import AuthService
from promptstack.core.errors import Forbidden, Unauthorized
from promptstack.http.dependencies import provider
from promptstack.http.schemas import TOKEN_MAX_LENGTH

AuthServiceDep = Annotated[AuthService, Depends(provider(AuthService))]
AccountServiceDep = Annotated[AccountService, Depends(provider(AccountService))]
RecoveryDep = Annotated[AccountRecovery, Depends(provider(AccountRecovery))]
CreditLedgerDep = Annotated[CreditLedger, Depends(provider(CreditLedger))]

# auto_error is off so a missing token gets our problem document, not FastAPI's default.
bearer = OAuth2PasswordBearer(tokenUrl="/api/v1/auth/login", auto_error=False)


async def get_current_user(
    token: Annotated[str | None, Depends(bearer)], auth: AuthServiceDep
) -> UserSnapshot:
    if not token:
        raise Unauthorized("Send a bearer access token in the Authorization header.")
    if len(token) > TOKEN_MAX_LENGTH:
        raise Unauthorized("The token is invalid.")
    return await auth.authenticate(token)


CurrentUser = Annotated[UserSnapshot, Depends(get_current_user)]


async def get_optional_user(
    request: Request, token: Annotated[str | None, Depends(bearer)], auth: AuthServiceDep
) -> UserSnapshot | None:
    """The caller's account, or None for a request without an Authorization header.

    A header that is sent is held to the same checks as for `CurrentUser`: a client whose
    token expired or was revoked must learn so (401), not be served as anonymous.
    """
    if "authorization" not in request.headers:
        return None
    return await get_current_user(token, auth)


OptionalUser = Annotated[UserSnapshot | None, Depends(get_optional_user)]


async def get_admin(user: CurrentUser) -> UserSnapshot:
    if user.role is Role.USER:
        raise Forbidden("This needs an administrator.")
    return user


AdminUser = Annotated[UserSnapshot, Depends(get_admin)]
