"""The pages an account email's links open: confirm an address, choose a new password.

Opening a link changes nothing, because mail scanners open links too: the page asks
for a button press, and its form posts the token back here, where the services the API
uses do the work.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Query
from fastapi.responses import HTMLResponse

from promptstack.accounts.dependencies import RecoveryDep
from promptstack.accounts.mail import RESET_PAGE, VERIFY_PAGE
from promptstack.accounts.rules import PASSWORD_MAX_LENGTH, PASSWORD_MIN_LENGTH
from promptstack.core.errors import InvalidToken, ValidationFailed
from promptstack.http import pages
from promptstack.http.schemas import TOKEN_MAX_LENGTH, Password

PAGES = (VERIFY_PAGE, RESET_PAGE)

router = APIRouter(include_in_schema=False)

LinkToken = Annotated[str, Query(max_length=TOKEN_MAX_LENGTH)]
FormToken = Annotated[str, Form(max_length=TOKEN_MAX_LENGTH)]
FormPassword = Annotated[Password, Form()]

_NEW_PASSWORD = (
    pages.Input(
        "new_password",
        "New password",
        kind="password",
        autocomplete="new-password",
        min_length=PASSWORD_MIN_LENGTH,
        max_length=PASSWORD_MAX_LENGTH,
    ),
    pages.Input(
        "repeat_password",
        "The same password again",
        kind="password",
        autocomplete="new-password",
        max_length=PASSWORD_MAX_LENGTH,
    ),
)


def _incomplete(link: str) -> HTMLResponse:
    return pages.page(
        "This link is incomplete",
        f"Open the {link} link from the email as it is, or copy all of it into the address bar.",
        problem="The link carries no token.",
        status=400,
    )


def _spent(link: str, remedy: str) -> HTMLResponse:
    return pages.page(
        "This link no longer works",
        remedy,
        problem=f"The {link} link has expired, was used already, or was replaced by a newer one.",
        status=400,
    )


@router.get(VERIFY_PAGE)
async def verify_email_page(token: LinkToken = "") -> HTMLResponse:
    if not token:
        return _incomplete("confirmation")
    return pages.page(
        "Confirm your email address",
        "Press the button to confirm that this address is yours.",
        form=pages.Form(VERIFY_PAGE, "Confirm my address", hidden=(("token", token),)),
    )


@router.post(VERIFY_PAGE)
async def verify_email(recovery: RecoveryDep, token: FormToken = "") -> HTMLResponse:
    if not token:
        return _incomplete("confirmation")
    try:
        await recovery.verify_email(token)
    except InvalidToken:
        return _spent("confirmation", "Log in and ask for a new confirmation email.")
    return pages.page("Your address is confirmed", "Thank you. You can close this page.")


@router.get(RESET_PAGE)
async def reset_password_page(token: LinkToken = "") -> HTMLResponse:
    if not token:
        return _incomplete("password reset")
    return _reset_form(token)


def _reset_form(token: str, problem: str | None = None) -> HTMLResponse:
    return pages.page(
        "Choose a new password",
        f"{PASSWORD_MIN_LENGTH} to {PASSWORD_MAX_LENGTH} characters, neither your username "
        "nor your email address. Every session of the account ends: you log in again "
        "everywhere with the new password.",
        problem=problem,
        status=422 if problem else 200,
        form=pages.Form(RESET_PAGE, "Change my password", _NEW_PASSWORD, (("token", token),)),
    )


@router.post(RESET_PAGE)
async def reset_password(
    recovery: RecoveryDep,
    new_password: FormPassword,
    repeat_password: FormPassword,
    token: FormToken = "",
) -> HTMLResponse:
    if not token:
        return _incomplete("password reset")
    if new_password != repeat_password:
        return _reset_form(token, "The two passwords differ: type the same one twice.")
    try:
        await recovery.reset_password(token, new_password)
    except InvalidToken:
        return _spent("password reset", "Ask for a new password reset email.")
    except ValidationFailed as exc:
        return _reset_form(token, f"The new password {exc.rule}.")
    return pages.page(
        "Your password is changed",
        "Log in with the new password. Every session of the account has ended.",
    )
