"""Cursor pagination: opaque cursors over a stable (time, id) order.

A cursor names the last row a client has seen, so rows added meanwhile never cause a
duplicate or a gap, which offsets cannot promise.
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Generic, TypeVar

from promptstack.core.errors import ValidationFailed

T = TypeVar("T")

DEFAULT_LIMIT = 20
MAX_LIMIT = 100


@dataclass(frozen=True, slots=True)
class Cursor:
    """The position after which the next page starts."""

    at: datetime
    id: uuid.UUID

    def encode(self) -> str:
        raw = json.dumps([self.at.isoformat(), str(self.id)], separators=(",", ":"))
        return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")

    @classmethod
    def decode(cls, token: str) -> Cursor:
        try:
            padded = token + "=" * (-len(token) % 4)
            at, id_ = json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
            if not isinstance(at, str) or not isinstance(id_, str):
                raise TypeError("cursor parts must be strings")
            moment = datetime.fromisoformat(at)
            if moment.tzinfo is None:
                raise ValueError("cursor time without zone")
            # In UTC, as stored; a time near year 1 or 9999 may not survive the move.
            return cls(at=moment.astimezone(UTC), id=uuid.UUID(id_))
        except (ValueError, TypeError, OverflowError, binascii.Error, UnicodeError) as exc:
            raise ValidationFailed(
                "The cursor is not one this service issued.", loc=("query", "cursor")
            ) from exc


@dataclass(frozen=True, slots=True)
class PageRequest:
    limit: int = DEFAULT_LIMIT
    after: Cursor | None = None


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    items: list[T]
    next_cursor: str | None
