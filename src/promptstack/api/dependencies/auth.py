"""Who is calling: the bearer token's account, and whether it may administer."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends
from fastapi.security import OAuth2PasswordBearer

from promptstack.api.dependencies.services import AuthServiceDep
from promptstack.core.errors import Forbidden, Unauthorized
from promptstack.models.user import Role, User

# auto_error is off so a missing token gets our problem document, not FastAPI's default.
bearer = OAuth2PasswordBearer(tokenUrl="/api/v1/auth/login", auto_error=False)


async def get_current_user(
    token: Annotated[str | None, Depends(bearer)], auth: AuthServiceDep
) -> User:
    if not token:
        raise Unauthorized("Send a bearer access token in the Authorization header.")
    if len(token) > 4096:
        raise Unauthorized("The token is invalid.")
    return await auth.authenticate(token)


CurrentUser = Annotated[User, Depends(get_current_user)]


async def get_admin(user: CurrentUser) -> User:
    if user.role is Role.USER:
        raise Forbidden("This needs an administrator.")
    return user


AdminUser = Annotated[User, Depends(get_admin)]
