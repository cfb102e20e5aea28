"""Who is calling: the bearer token's account (or, on the AI endpoints, the API key's),
and whether it may administer."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer, OAuth2PasswordBearer

from promptstack.accounts.api_keys import ApiKeys, is_api_key
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
ApiKeysDep = Annotated[ApiKeys, Depends(provider(ApiKeys))]

# auto_error is off so a missing token gets our problem document, not FastAPI's default.
bearer = OAuth2PasswordBearer(tokenUrl="/api/v1/auth/login", auto_error=False)
# The same header, described to /docs as a second way in for the AI endpoints, so a key
# can be pasted into its Authorize dialog.
api_key_bearer = HTTPBearer(
    auto_error=False,
    scheme_name="PersonalApiKey",
    description="A personal API key (psk_...) from POST /api/v1/api-keys: AI endpoints only",
)


async def get_current_user(
    token: Annotated[str | None, Depends(bearer)], auth: AuthServiceDep
) -> UserSnapshot:
    if not token:
        raise Unauthorized("Send a bearer access token in the Authorization header.")
    if len(token) > TOKEN_MAX_LENGTH:
        raise Unauthorized("The token is invalid.")
    if is_api_key(token):
        # A key stays in scripts and servers for months: it may call models, never
        # manage the account (its password, its keys).
        raise Unauthorized("An API key serves the AI endpoints only; sign in for this one.")
    return await auth.authenticate(token)


CurrentUser = Annotated[UserSnapshot, Depends(get_current_user)]


async def get_key_or_token_user(
    token: Annotated[str | None, Depends(bearer)],
    _documented: Annotated[HTTPAuthorizationCredentials | None, Depends(api_key_bearer)],
    auth: AuthServiceDep,
    keys: ApiKeysDep,
) -> UserSnapshot:
    """For the AI endpoints: the account of a personal API key or of an access token."""
    if token and len(token) <= TOKEN_MAX_LENGTH and is_api_key(token):
        return await keys.authenticate(token)
    return await get_current_user(token, auth)


KeyOrTokenUser = Annotated[UserSnapshot, Depends(get_key_or_token_user)]


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
