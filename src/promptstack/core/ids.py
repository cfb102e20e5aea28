"""Typed identifiers and the injectable source of new ones."""

from __future__ import annotations

import uuid
from typing import Protocol


class IdSource(Protocol):
    def new(self) -> uuid.UUID: ...


class RandomIds:
    def new(self) -> uuid.UUID:
        return uuid.uuid4()
