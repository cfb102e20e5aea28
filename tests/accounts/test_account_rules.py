"""The rules every account obeys, wherever it is created."""

from __future__ import annotations

import pytest

from promptstack.accounts.models import Role
from promptstack.accounts.rules import (
    check_username,
    email_key,
    may_grant,
    may_manage,
    normalize_email,
    password_problem,
)

# Non-ASCII characters are written as escapes, so that no look-alike hides in this file.
ACCEPTED_EMAILS = [
    # (as typed, as stored, its uniqueness key)
    pytest.param("alice@example.com", "alice@example.com", "alice@example.com", id="plain"),
    pytest.param("Alice@EXAMPLE.com", "Alice@example.com", "alice@example.com", id="mixed-case"),
    pytest.param(
        "\uff41\uff4c\uff49\uff43\uff45@example.com",
        "alice@example.com",
        "alice@example.com",
        id="fullwidth-local-part",
    ),
    pytest.param(
        "alice\uff20\uff45\uff58\uff41\uff4d\uff50\uff4c\uff45\uff0ecom",
        "alice@example.com",
        "alice@example.com",
        id="fullwidth-at-sign-and-domain",
    ),
    pytest.param("\u017fam@example.com", "sam@example.com", "sam@example.com", id="long-s"),
    pytest.param("\u212aate@example.com", "Kate@example.com", "kate@example.com", id="kelvin-sign"),
    pytest.param("a@\u212aelvin.com", "a@kelvin.com", "a@kelvin.com", id="kelvin-sign-in-domain"),
    pytest.param(
        "a@\u043f\u0440\u0438\u043c\u0435\u0440.\u0440\u0444",
        "a@\u043f\u0440\u0438\u043c\u0435\u0440.\u0440\u0444",
        "a@xn--e1afmkfd.xn--p1ai",
        id="all-cyrillic-domain",
    ),
    pytest.param(
        "a@\u041f\u0420\u0418\u041c\u0415\u0420.\u0420\u0424",
        "a@\u043f\u0440\u0438\u043c\u0435\u0440.\u0440\u0444",
        "a@xn--e1afmkfd.xn--p1ai",
        id="all-cyrillic-domain-in-capitals",
    ),
    pytest.param(
        "a@xn--e1afmkfd.xn--p1ai",
        "a@\u043f\u0440\u0438\u043c\u0435\u0440.\u0440\u0444",
        "a@xn--e1afmkfd.xn--p1ai",
        id="all-cyrillic-domain-as-punycode",
    ),
    pytest.param(
        "a@stra\u00dfe.de", "a@stra\u00dfe.de", "a@xn--strae-oqa.de", id="sharp-s-in-domain"
    ),
    pytest.param(
        "a@STRA\u1e9eE.de", "a@stra\u00dfe.de", "a@xn--strae-oqa.de", id="capital-sharp-s"
    ),
    pytest.param(
        "a@\u65e5\u672c\u8a9e\u30c9\u30e1\u30a4\u30f3.jp",
        "a@\u65e5\u672c\u8a9e\u30c9\u30e1\u30a4\u30f3.jp",
        "a@xn--eckwd4c7c5976acvb2w6i.jp",
        id="japanese-domain-han-and-katakana",
    ),
    pytest.param(
        "a@\u043a\u043e\u0442-24.\u0440\u0444",
        "a@\u043a\u043e\u0442-24.\u0440\u0444",
        "a@xn---24-beduy.xn--p1ai",
        id="cyrillic-label-with-digits-and-hyphen",
    ),
]

REFUSED_EMAILS = [
    # (as typed, what the message must say)
    pytest.param(
        "p\u0430ypal@example.com",
        r"only ASCII .* before the @, not '\u0430' \(CYRILLIC SMALL LETTER A\)",
        id="cyrillic-a-in-local-part",
    ),
    pytest.param(
        "stra\u00dfe@example.com",
        r"only ASCII .* not '\u00df' \(LATIN SMALL LETTER SHARP S\)",
        id="sharp-s-in-local-part",
    ),
    pytest.param(
        "a@\u0440\u0430\u0443\u0440\u0430l.com",
        r"one script, but '\u0440\u0430\u0443\u0440\u0430l' mixes Cyrillic with Latin 'l'",
        id="cyrillic-look-alike-with-a-latin-letter",
    ),
    pytest.param(
        "a@g\u03bfogle.com",
        r"one script, but 'g\u03bfogle' mixes Latin with Greek '\u03bf'",
        id="greek-omicron-in-latin-label",
    ),
    pytest.param(
        "a@xn--gogle-rce.com",
        r"one script, but 'g\u03bfogle' mixes Latin with Greek",
        id="greek-omicron-as-punycode",
    ),
    pytest.param(
        "a@pay\u0440al.com", r"mixes Latin with Cyrillic '\u0440'", id="cyrillic-er-in-latin-label"
    ),
    pytest.param("a@g\u09ea.com", r"mixes Latin with Bengali", id="bengali-digit-in-latin-label"),
    pytest.param("a@abc\u4e2d\u6587.cn", r"mixes Latin with Han", id="latin-and-han-in-one-label"),
]


@pytest.mark.parametrize(("typed", "stored", "key"), ACCEPTED_EMAILS)
def test_accepted_emails_are_stored_and_keyed_in_their_plain_form(
    typed: str, stored: str, key: str
) -> None:
    assert normalize_email(typed) == stored
    assert email_key(typed) == key


@pytest.mark.parametrize(("typed", "stored", "key"), ACCEPTED_EMAILS)
def test_normalising_again_changes_nothing(typed: str, stored: str, key: str) -> None:
    assert normalize_email(stored) == stored
    assert email_key(stored) == key
    assert key.isascii()
    assert key.casefold() == key  # the login look-up casefolds what it is given


@pytest.mark.parametrize(("typed", "reason"), REFUSED_EMAILS)
def test_look_alike_emails_are_refused_with_the_rule_they_break(typed: str, reason: str) -> None:
    for check in (normalize_email, email_key):
        with pytest.raises(ValueError, match=reason):
            check(typed)


@pytest.mark.parametrize(
    ("one", "other"),
    [
        pytest.param("sam@example.com", "\u017fam@example.com", id="long-s"),
        pytest.param("sam@example.com", "\uff53\uff41\uff4d@example.com", id="fullwidth"),
        pytest.param("sam@example.com", "SAM@Example.COM", id="case"),
        pytest.param("kate@example.com", "\u212aate@example.com", id="kelvin-sign"),
    ],
)
def test_variants_of_one_mailbox_share_a_key(one: str, other: str) -> None:
    assert email_key(one) == email_key(other)


@pytest.mark.parametrize(
    ("one", "other"),
    [
        pytest.param("a@strasse.de", "a@stra\u00dfe.de", id="sharp-s-is-not-ss"),
        pytest.param(
            "a@\u03c3\u03bf\u03c6\u03bf\u03c2.gr",
            "a@\u03c3\u03bf\u03c6\u03bf\u03c3.gr",
            id="final-sigma-is-not-sigma",
        ),
    ],
)
def test_different_domains_never_share_a_key(one: str, other: str) -> None:
    """Casefolding would merge these, but IDNA names two domains, with two owners."""
    assert email_key(one) != email_key(other)


@pytest.mark.parametrize(
    "email", ["plain", "a@b", "@example.com", "a@@example.com", "x" * 250 + "@e.co"]
)
def test_bad_emails_are_refused(email: str) -> None:
    for check in (normalize_email, email_key):
        with pytest.raises(ValueError, match=r".+"):
            check(email)


@pytest.mark.parametrize("name", ["abc", "a.b-c_d", "A" * 32, "user123"])
def test_good_usernames(name: str) -> None:
    assert check_username(name) == name


@pytest.mark.parametrize("name", ["ab", "A" * 33, "-start", "has space", "émile", "a/b", ""])
def test_bad_usernames(name: str) -> None:
    with pytest.raises(ValueError, match="3 to 32 characters"):
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
