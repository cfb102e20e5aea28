"""The caller's own account, and the administration of others."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import AfterValidator

from promptstack.accounts.credit_models import ShownCreditEntry
from promptstack.accounts.dependencies import (
    AccountServiceDep,
    AdminUser,
    CreditLedgerDep,
    CurrentUser,
)
from promptstack.accounts.models import Role, ShownUser, User, UserSnapshot
from promptstack.accounts.schemas import (
    AdminUserIn,
    CreditEntryOut,
    PasswordChangeIn,
    ProfileIn,
    UserOut,
)
from promptstack.accounts.service import AdminChanges, ProfileChanges
from promptstack.core.errors import (
    Conflict,
    Forbidden,
    InvalidCredentials,
    NotFound,
    Unauthorized,
)
from promptstack.core.pagination import Page
from promptstack.http import API_V1
from promptstack.http.openapi import problem_responses
from promptstack.http.pagination import PageDep
from promptstack.http.schemas import PageOut, clean_text

router = APIRouter(
    prefix=f"{API_V1}/users",
    tags=["users"],
    responses=problem_responses(Unauthorized),
)


@router.get("/me", response_model=UserOut)
async def read_me(user: CurrentUser) -> UserSnapshot:
    return user


@router.patch("/me", response_model=UserOut, responses=problem_responses(Conflict))
async def update_me(
    body: ProfileIn, user: CurrentUser, accounts: AccountServiceDep
) -> User | ShownUser:
    """Change your profile. A new email address must be verified again."""
    sent = body.model_fields_set
    return await accounts.update_profile(
        user,
        ProfileChanges(
            email=body.email,
            username=body.username,
            full_name=body.full_name,
            clear_full_name="full_name" in sent and body.full_name is None,
            preferred_provider=body.preferred_provider,
            clear_preferred_provider="preferred_provider" in sent
            and body.preferred_provider is None,
        ),
    )


@router.post("/me/password", status_code=204, responses=problem_responses(InvalidCredentials))
async def change_password(
    body: PasswordChangeIn, user: CurrentUser, accounts: AccountServiceDep
) -> None:
    """Change your password. Every session ends, this one too: log in again."""
    await accounts.change_password(user, body.current_password, body.new_password)


@router.delete("/me", status_code=204)
async def delete_me(user: CurrentUser, accounts: AccountServiceDep) -> None:
    """Close your account: sessions end and personal data is removed."""
    await accounts.delete_self(user)


@router.get("/me/credit-ledger", response_model=PageOut[CreditEntryOut])
async def read_my_credit_ledger(
    user: CurrentUser, ledger: CreditLedgerDep, page: PageDep
) -> Page[ShownCreditEntry]:
    """Every change of your credit balance, newest first: purchases add, LLM calls spend.
    Your balance itself is `credits` in `GET /users/me`."""
    return await ledger.entries(user, page)


@router.get("", response_model=PageOut[UserOut], responses=problem_responses(Forbidden))
async def list_users(
    _admin: AdminUser,
    accounts: AccountServiceDep,
    page: PageDep,
    q: Annotated[
        str | None,
        Query(max_length=100, description="Part of the email, username or name"),
        AfterValidator(clean_text),
    ] = None,
    role: Role | None = None,
) -> Page[ShownUser]:
    text = q.strip() if q else None
    return await accounts.search(page, text=text or None, role=role)


@router.get("/{user_id}", response_model=UserOut, responses=problem_responses(Forbidden, NotFound))
async def read_user(user_id: uuid.UUID, user: CurrentUser, accounts: AccountServiceDep) -> User:
    return await accounts.get(user, user_id)


@router.patch(
    "/{user_id}", response_model=UserOut, responses=problem_responses(Forbidden, NotFound)
)
async def administer_user(
    user_id: uuid.UUID, body: AdminUserIn, admin: AdminUser, accounts: AccountServiceDep
) -> User:
    """Change another account's role, tier, beta testing or active flag (administrators
    only). Feature flags that target beta testers follow at once."""
    changes = AdminChanges(
        role=body.role, is_active=body.is_active, tier=body.tier, is_beta_tester=body.is_beta_tester
    )
    return await accounts.administer(admin, user_id, changes)
