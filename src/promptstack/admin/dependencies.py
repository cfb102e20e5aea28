"""The services this domain's routes take."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from promptstack.admin.service import EventAdmin
from promptstack.http.dependencies import provider

EventAdminDep = Annotated[EventAdmin, Depends(provider(EventAdmin))]
