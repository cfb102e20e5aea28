"""Notifications as the API shows and accepts them."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from pydantic import AfterValidator, StringConstraints

from promptstack.http.schemas import Accepted, Input, Output, clean_text, one_line

Subject = Annotated[
    str,
    StringConstraints(min_length=1, max_length=200, strip_whitespace=True),
    AfterValidator(clean_text),
    AfterValidator(one_line),
]
# Line breaks and tabs are welcome in a message; other control characters are not.
Message = Annotated[
    str,
    StringConstraints(min_length=1, max_length=10_000, strip_whitespace=True),
    AfterValidator(clean_text),
]


class NotificationIn(Input):
    user_id: uuid.UUID
    subject: Subject
    message: Message


class NotificationQueued(Accepted):
    status: str = "queued"
    id: uuid.UUID


class NotificationOut(Output):
    id: uuid.UUID
    subject: str
    message: str
    sender_id: uuid.UUID | None
    created_at: datetime
    read_at: datetime | None


class MarkedRead(Output):
    marked_read: int
