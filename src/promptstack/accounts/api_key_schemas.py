"""What the API-key endpoints take and give; the secret appears in one answer only."""

from __future__ import annotations

import uuid
from typing import Annotated

from pydantic import AfterValidator, ConfigDict, Field, StringConstraints

from promptstack.http.schemas import Input, Moment, Output, clean_text, one_line

MAX_LIFETIME_DAYS = 3650

KeyName = Annotated[
    str,
    StringConstraints(min_length=1, max_length=100, strip_whitespace=True),
    AfterValidator(clean_text),
    AfterValidator(one_line),
]


class ApiKeyIn(Input):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"name": "notebook", "expires_in_days": 90}]}
    )

    name: KeyName = Field(description="To tell your keys apart: where or what uses it")
    expires_in_days: Annotated[int, Field(strict=True, ge=1, le=MAX_LIFETIME_DAYS)] | None = Field(
        default=None, description="Unset: the key lasts until it is deleted"
    )


class ApiKeyOut(Output):
    id: uuid.UUID
    name: str
    prefix: str = Field(description="The key's first characters, to recognise it by")
    created_at: Moment
    last_used_at: Moment | None = Field(description="To the minute")
    expires_at: Moment | None


class NewApiKeyOut(ApiKeyOut):
    key: str = Field(
        description="The key itself, shown this once: send it as `Authorization: Bearer <key>`"
    )


class ApiKeysOut(Output):
    items: list[ApiKeyOut]
