"""Account rules that hold wherever an account is created or changed (API, CLI, admin)."""

from __future__ import annotations

import re

from email_validator import EmailNotValidError, validate_email

from promptstack.models.user import ROLE_RANK, Role

USERNAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{2,31}$")
PASSWORD_MIN_LENGTH = 10
PASSWORD_MAX_LENGTH = 128
EMAIL_MAX_LENGTH = 254


def normalize_email(value: str) -> str:
    """The canonical form of a deliverable-looking address; ValueError if it is not one."""
    if len(value) > EMAIL_MAX_LENGTH:
        raise ValueError("email address is too long")
    try:
        return validate_email(value, check_deliverability=False).normalized
    except EmailNotValidError as exc:
        raise ValueError(str(exc)) from exc


def check_username(value: str) -> str:
    if not USERNAME_PATTERN.fullmatch(value):
        raise ValueError(
            "username must be 3 to 32 characters: letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return value


def password_problem(password: str, *, email: str | None, username: str | None) -> str | None:
    """Why `password` is not acceptable for this account, or None when it is."""
    if len(password) < PASSWORD_MIN_LENGTH:
        return f"password must be at least {PASSWORD_MIN_LENGTH} characters"
    if len(password) > PASSWORD_MAX_LENGTH:
        return f"password must be at most {PASSWORD_MAX_LENGTH} characters"
    if not password.strip():
        return "password must not be blank"
    folded = password.casefold()
    for name, value in (("email", email), ("username", username)):
        if value and folded in {value.casefold(), value.split("@")[0].casefold()}:
            return f"password must not be the {name}"
    return None


def may_manage(actor: Role, target: Role) -> bool:
    """An administrator manages only accounts ranked below its own."""
    return ROLE_RANK[actor] > ROLE_RANK[target]


def may_grant(actor: Role, role: Role) -> bool:
    """Roles can be handed out up to one's own rank, and only super admins make admins."""
    if actor is Role.SUPER_ADMIN:
        return True
    return ROLE_RANK[role] < ROLE_RANK[actor]
