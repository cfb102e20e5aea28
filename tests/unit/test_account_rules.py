"""The rules every account obeys, wherever it is created."""

from __future__ import annotations

import pytest

from promptstack.models.rules import (
    check_username,
    may_grant,
    may_manage,
    normalize_email,
    password_problem,
)
from promptstack.models.user import Role


def test_email_is_normalised() -> None:
    assert normalize_email("Someone@EXAMPLE.com") == "Someone@example.com"


@pytest.mark.parametrize(
    "email", ["plain", "a@b", "@example.com", "a@@example.com", "x" * 250 + "@e.co"]
)
def test_bad_emails_are_refused(email: str) -> None:
    with pytest.raises(ValueError, match=r".+"):
        normalize_email(email)


@pytest.mark.parametrize("name", ["abc", "a.b-c_d", "A" * 32, "user123"])
def test_good_usernames(name: str) -> None:
    assert check_username(name) == name


@pytest.mark.parametrize("name", ["ab", "A" * 33, "-start", "has space", "émile", "a/b", ""])
def test_bad_usernames(name: str) -> None:
    with pytest.raises(ValueError, match="username"):
        check_username(name)


@pytest.mark.parametrize(
    ("password", "reason"),
    [
        ("short", "at least 10"),
        ("x" * 129, "at most 128"),
        (" " * 12, "blank"),
        ("alice@example.com", "email"),
        ("ALICE@example.com", "email"),
        ("wonderland", "username"),
    ],
)
def test_password_policy(password: str, reason: str) -> None:
    problem = password_problem(password, email="alice@example.com", username="wonderland")
    assert problem is not None
    assert reason in problem


def test_a_good_password_passes() -> None:
    assert password_problem("a long passphrase", email="a@example.com", username="abc") is None


@pytest.mark.parametrize(
    ("actor", "target", "allowed"),
    [
        (Role.USER, Role.USER, False),
        (Role.ADMIN, Role.USER, True),
        (Role.ADMIN, Role.ADMIN, False),
        (Role.ADMIN, Role.SUPER_ADMIN, False),
        (Role.SUPER_ADMIN, Role.ADMIN, True),
        (Role.SUPER_ADMIN, Role.SUPER_ADMIN, False),
    ],
)
def test_who_manages_whom(actor: Role, target: Role, allowed: bool) -> None:
    assert may_manage(actor, target) is allowed


@pytest.mark.parametrize(
    ("actor", "role", "allowed"),
    [
        (Role.ADMIN, Role.USER, True),
        (Role.ADMIN, Role.ADMIN, False),
        (Role.SUPER_ADMIN, Role.ADMIN, True),
        (Role.SUPER_ADMIN, Role.SUPER_ADMIN, True),
    ],
)
def test_who_grants_what(actor: Role, role: Role, allowed: bool) -> None:
    assert may_grant(actor, role) is allowed
