"""Shapes and checks shared by every resource's schemas."""

from __future__ import annotations

import re
import unicodedata
from typing import Annotated, Any, Generic, TypeVar

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    StringConstraints,
)

T = TypeVar("T")

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def clean_text(value: str) -> str:
    """Refuse text no database column should hold: NUL, control characters, lone surrogates."""
    if _CONTROL.search(value):
        raise ValueError("must not contain control characters")
    return _valid_unicode(value)


def one_line(value: str) -> str:
    """Refuse line breaks and tabs as well: a name is shown on one line (emails quote it)."""
    if any(unicodedata.category(char) in {"Cc", "Zl", "Zp"} for char in value):
        raise ValueError("must be a single line of text")
    return value


def not_null(message: str = "cannot be null") -> BeforeValidator:
    """For an optional field where leaving it out means "unchanged" and `null` means
    nothing at all: an explicit null is refused, and the error names the field."""

    def refuse(value: Any) -> Any:
        if value is None:
            raise ValueError(message)
        return value

    return BeforeValidator(refuse)


def _valid_unicode(value: str) -> str:
    """Lone surrogates parse from JSON escapes but no database (or UTF-8) can store them."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError("must be valid Unicode text") from exc
    return value


def _no_surrogates(value: str) -> str:
    """A secret may hold any character a database never sees, except NUL and surrogates."""
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return _valid_unicode(value)


Password = Annotated[
    str, StringConstraints(min_length=1, max_length=128), AfterValidator(_no_surrogates)
]
# Anything longer is no token this service issued.
TOKEN_MAX_LENGTH = 4096
Token = Annotated[
    str, StringConstraints(min_length=1, max_length=TOKEN_MAX_LENGTH), AfterValidator(clean_text)
]


class Input(BaseModel):
    """Request bodies: unknown fields are an error.

    Numbers are never taken for strings; fields where lax parsing would surprise
    (booleans from "yes") declare strict types themselves.
    """

    model_config = ConfigDict(extra="forbid")


class Output(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class PageOut(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None


class Accepted(BaseModel):
    status: str = "accepted"


_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}")


def _written_as_rfc3339(value: object) -> object:
    """pydantic would also take a number of seconds since 1970 for a moment; a client
    that sends one has most likely confused two parameters, so it is refused."""
    if isinstance(value, str) and not _RFC3339.match(value):
        raise ValueError(
            "must be a date and time with its time zone (RFC 3339), such as 2026-06-01T12:00:00Z"
        )
    return value


Moment = Annotated[AwareDatetime, BeforeValidator(_written_as_rfc3339)]
"""A moment in a query or body: RFC 3339 with its time zone, nothing else."""
