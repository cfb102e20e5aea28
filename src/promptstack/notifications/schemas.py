"""Notifications as the API shows and accepts them."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from pydantic import AfterValidator, ConfigDict, StringConstraints

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
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "user_id": "0b9f4c1e-2d3a-4e5f-8a7b-6c5d4e3f2a1b",
                    "subject": "Your export is ready",
                    "message": "Download it from your account page within seven days.",
                }
            ]
        }
    )

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
