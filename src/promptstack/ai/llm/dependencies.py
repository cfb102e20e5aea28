"""The services this domain's routes take, and the caller the `ai_chat` flag admits."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from promptstack.accounts.dependencies import KeyOrTokenUser
from promptstack.accounts.models import UserSnapshot
from promptstack.ai.llm.reports import UsageReports
from promptstack.ai.llm.service import LlmGateway
from promptstack.http.dependencies import provider

LlmGatewayDep = Annotated[LlmGateway, Depends(provider(LlmGateway))]
UsageReportsDep = Annotated[UsageReports, Depends(provider(UsageReports))]


async def get_ai_user(user: KeyOrTokenUser, gateway: LlmGatewayDep) -> UserSnapshot:
    gateway.admit(user)
    return user


AiUser = Annotated[UserSnapshot, Depends(get_ai_user)]
