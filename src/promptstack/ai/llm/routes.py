"""The LLM endpoints under /api/v1/llm."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse

from promptstack.accounts.credits import InsufficientCredits
from promptstack.ai.llm.dependencies import AiUser, LlmGatewayDep, UsageReportsDep
from promptstack.ai.llm.registry import ProviderNotAvailable
from promptstack.ai.llm.schemas import (
    CountTokensIn,
    GenerateIn,
    GenerateOut,
    ProviderOut,
    ProvidersOut,
    TokenCountOut,
    UsageOut,
)
from promptstack.ai.llm.service import (
    Answer,
    Delta,
    Failed,
    FeatureDisabled,
    ProviderFailed,
    ProviderRateLimit,
    ProviderTimedOut,
    StreamEvent,
    UnknownModel,
)
from promptstack.core.errors import Unauthorized
from promptstack.http import API_V1
from promptstack.http.openapi import problem_responses
from promptstack.http.pagination import PageDep
from promptstack.http.problems import problem_of, request_id_of
from promptstack.http.schemas import Moment
from promptstack.http.sse import MEDIA_TYPE, event_stream, sse_event

# One event of a `stream: true` answer, as OpenAPI 3.1 describes a text/event-stream
# (the schema of each event, not of the whole stream).
STREAM_EVENT = {
    "type": "object",
    "required": ["event", "data"],
    "properties": {
        "event": {"type": "string", "enum": ["delta", "usage", "error", "done"]},
        "data": {
            "type": "string",
            "contentMediaType": "application/json",
            "description": "delta: {text}; usage: the JSON answer without text; error: a "
            "problem document; done: {}",
        },
    },
}

router = APIRouter(
    prefix=f"{API_V1}/llm",
    tags=["llm"],
    responses=problem_responses(Unauthorized, FeatureDisabled),
)


@router.get("/providers", response_model=ProvidersOut)
async def list_providers(user: AiUser, gateway: LlmGatewayDep) -> ProvidersOut:
    """Every provider this deployment knows, its models, and whether it is configured;
    the default serves callers who name none and have no `preferred_provider`."""
    return ProvidersOut(providers=[ProviderOut.of(info) for info in gateway.providers()])


@router.post(
    "/count-tokens",
    response_model=TokenCountOut,
    responses=problem_responses(UnknownModel, ProviderNotAvailable),
)
async def count_tokens(body: CountTokensIn, user: AiUser, gateway: LlmGatewayDep) -> TokenCountOut:
    """Count tokens offline. `exact` is true where the model's own tokenizer is used;
    other models' counts are estimates, for sizing a prompt, never for billing."""
    model, count = gateway.count_tokens(user, body.text, body.model)
    return TokenCountOut.of(model, count)


@router.post(
    "/generate",
    response_model=GenerateOut,
    responses={
        200: {"content": {MEDIA_TYPE: {"schema": STREAM_EVENT}}},
        **problem_responses(
            UnknownModel,
            ProviderNotAvailable,
            InsufficientCredits,
            ProviderRateLimit,
            ProviderFailed,
            ProviderTimedOut,
        ),
    },
)
async def generate(
    body: GenerateIn, user: AiUser, gateway: LlmGatewayDep, request: Request
) -> GenerateOut | StreamingResponse:
    """Answer a prompt. The most the call can cost (its prompt and `max_tokens`) is held
    from your credits first, and what it did not cost is given back; a call the
    balance cannot cover is a 402. Every call, answered or failed, is in the usage
    ledger.

    With `stream: true` the answer is `text/event-stream`: `delta` events with the
    text as it comes, then `usage` (this endpoint's JSON answer, without the text) and
    `done`; a provider failing mid-stream sends an `error` event with the problem
    document instead. Anything refused before the call starts is a plain problem."""
    if not body.stream:
        return GenerateOut.of(await gateway.generate(user, body.ask()))
    events = await gateway.stream(user, body.ask())
    return event_stream(_server_sent(events, request_id_of(request)))


async def _server_sent(
    events: AsyncIterator[StreamEvent], request_id: str | None
) -> AsyncIterator[bytes]:
    async for event in events:
        match event:
            case Delta(text=text):
                yield sse_event("delta", {"text": text})
            case Failed(problem=problem):
                yield sse_event("error", problem_of(request_id, problem))
            case Answer():
                usage = GenerateOut.of(event).model_dump(mode="json", exclude={"text"})
                yield sse_event("usage", usage)
                yield sse_event("done", {})


@router.get("/usage", response_model=UsageOut)
async def my_usage(
    user: AiUser,
    reports: UsageReportsDep,
    page: PageDep,
    since: Annotated[
        Moment | None, Query(description="From this moment (RFC 3339); 30 days before until")
    ] = None,
    until: Annotated[Moment | None, Query(description="Up to this moment; now")] = None,
) -> UsageOut:
    """Your calls' totals over a window (at most 366 days), by UTC day and model, and your
    calls themselves, newest first, a page at a time (`cursor`, `limit`)."""
    return UsageOut.of(await reports.mine(user, since, until, page))
