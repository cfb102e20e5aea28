"""Account rules that hold wherever an account is created or changed (API, CLI, admin)."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from email_validator import EmailNotValidError, validate_email

from promptstack.accounts.models import ROLE_RANK, Role

USERNAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{2,31}$")
PASSWORD_MIN_LENGTH = 10
PASSWORD_MAX_LENGTH = 128
EMAIL_MAX_LENGTH = 254

# Python's unicodedata has no Script property, but a letter's Unicode name starts with
# its script ("LATIN SMALL LETTER A", "CYRILLIC SMALL LETTER A"); these first words name
# a script differently...
_SCRIPT_ALIASES = {
    "CJK": "HAN",
    "IDEOGRAPHIC": "HAN",
    "ARABIC-INDIC": "ARABIC",
    "EXTENDED": "ARABIC",  # EXTENDED ARABIC-INDIC DIGIT, the Persian and Urdu digits
    "KATAKANA-HIRAGANA": "KATAKANA",  # the prolonged sound mark
}
# ... and these name none: letters that every script shares, such as the modifier
# apostrophe that Ukrainian domains use.
_SHARED_LETTERS = frozenset({"MODIFIER", "CARON", "VERTICAL", "VEDIC", "MASU"})
# Writing systems that mix scripts by nature (Japanese, Chinese with Bopomofo, Korean),
# as UTS #39 allows them; Latin may not join them in one label.
_MIXED_WRITING_SYSTEMS = (
    frozenset({"HAN", "HIRAGANA", "KATAKANA"}),
    frozenset({"HAN", "BOPOMOFO"}),
    frozenset({"HAN", "HANGUL"}),
)


@dataclass(frozen=True, slots=True)
class _Email:
    normalized: str
    key: str


def normalize_email(value: str) -> str:
    """The form an address is stored and shown in; ValueError naming the rule it breaks.

    The address is NFKC-normalised first, so fullwidth letters, the long s (U+017F) and
    the Kelvin sign (U+212A) become the plain letters they stand for. Before the @ only
    ASCII may remain; the domain may be internationalised, but each of its labels must be
    written in one script, so google.com spelt with a Greek omicron is refused.
    """
    return _checked_email(value).normalized


def email_key(value: str) -> str:
    """What makes an address unique among accounts, and what every look-up by address
    compares; ValueError as for `normalize_email`.

    It is the address normalised as above and then casefolded, with the domain in its
    IDNA ASCII form ('xn--...'). Two addresses share a key only if they differ in letter
    case alone, so they reach the same mailbox: 'sam@' typed with a long s or in
    fullwidth letters shares the key of 'sam@', while 'strasse.de' and the same word
    spelt with a sharp s, two different domains, do not (casefolding the Unicode form
    would turn the sharp s into 'ss'). The key is ASCII, so no second NFKC is needed
    after casefolding, which leaves only non-ASCII text unnormalised (a dotted capital I
    folds to 'i' and a combining dot), and casefolding it again, as the login look-up
    does, changes nothing.
    """
    return _checked_email(value).key


def email_key_or_none(value: str) -> str | None:
    """The key of `value`, or None when it is no acceptable address (a look-up that
    must answer alike for an address that exists and one that cannot)."""
    try:
        return email_key(value)
    except ValueError:
        return None


def _checked_email(value: str) -> _Email:
    if len(value) > EMAIL_MAX_LENGTH:
        raise ValueError(f"must be at most {EMAIL_MAX_LENGTH} characters")
    try:
        checked = validate_email(unicodedata.normalize("NFKC", value), check_deliverability=False)
    except EmailNotValidError as exc:
        raise ValueError(str(exc)) from exc
    if checked.ascii_email is None:  # what is left before the @ is not ASCII
        strays = ", ".join(
            f"{char!r} ({unicodedata.name(char, f'U+{ord(char):04X}')})"
            for char in dict.fromkeys(checked.local_part)
            if not char.isascii()
        )
        raise ValueError(
            f"must have only ASCII letters, digits and punctuation before the @, not {strays}"
        )
    for label in checked.domain.split("."):
        problem = _mixed_script_problem(label)
        if problem:
            raise ValueError(problem)
    return _Email(normalized=checked.normalized, key=checked.ascii_email.casefold())


def _mixed_script_problem(label: str) -> str | None:
    """Why a domain label is a look-alike risk, or None when it is written in one script."""
    found: dict[str, list[str]] = {}
    for char in label:
        script = _script(char)
        if script is not None:
            found.setdefault(script, []).append(char)
    if len(found) <= 1 or any(found.keys() <= system for system in _MIXED_WRITING_SYSTEMS):
        return None
    main, *others = sorted(found, key=lambda script: -len(found[script]))
    strays = " and ".join(
        f"{script.title()} {''.join(dict.fromkeys(found[script]))!r}" for script in others
    )
    return (
        f"each part of an email domain must be written in one script, but {label!r} "
        f"mixes {main.title()} with {strays}"
    )


def _script(char: str) -> str | None:
    """The script of a character in a domain, or None for one that belongs to every
    script: ASCII digits, the hyphen, combining marks, punctuation and symbols. Other
    digits belong to their script, as a Bengali four passes for an 8."""
    if char in "-0123456789" or unicodedata.category(char)[0] in "MPS":
        return None
    word = unicodedata.name(char, "UNNAMED").split(" ", 1)[0]
    if word in _SHARED_LETTERS:
        return None
    return _SCRIPT_ALIASES.get(word, word)


def check_username(value: str) -> str:
    if not USERNAME_PATTERN.fullmatch(value):
        raise ValueError(
            "must be 3 to 32 characters: letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return value


def password_problem(password: str, *, email: str | None, username: str | None) -> str | None:
    """Why `password` is not acceptable for this account, or None when it is."""
    if len(password) < PASSWORD_MIN_LENGTH:
        return f"must be at least {PASSWORD_MIN_LENGTH} characters"
    if len(password) > PASSWORD_MAX_LENGTH:
        return f"must be at most {PASSWORD_MAX_LENGTH} characters"
    if not password.strip():
        return "must not be blank"
    folded = password.casefold()
    for name, value in (("email", email), ("username", username)):
        if value and folded in {value.casefold(), value.split("@")[0].casefold()}:
            return f"must not be the {name}"
    return None


def may_manage(actor: Role, target: Role) -> bool:
    """An administrator manages only accounts ranked below its own."""
    return ROLE_RANK[actor] > ROLE_RANK[target]


def may_grant(actor: Role, role: Role) -> bool:
    """Roles can be handed out up to one's own rank, and only super admins make admins."""
    if actor is Role.SUPER_ADMIN:
        return True
    return ROLE_RANK[role] < ROLE_RANK[actor]
