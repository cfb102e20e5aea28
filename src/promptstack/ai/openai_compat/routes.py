"""The OpenAI-compatible API at /v1: chat completions (whole or streamed), the models,
and embeddings, so any OpenAI client library can use this gateway by its base URL.

Calls go through the same gateway as /api/v1/llm: the same credits, quotas, usage
ledger, fallbacks and feature flag; a personal API key or an access token admits them.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Path
from fastapi.responses import StreamingResponse

from promptstack.accounts.credits import InsufficientCredits
from promptstack.ai.documents.dependencies import DocumentsDep
from promptstack.ai.documents.service import Documents
from promptstack.ai.llm.dependencies import AiUser, LlmGatewayDep
from promptstack.ai.llm.providers.base import Usage
from promptstack.ai.llm.registry import ProviderNotAvailable
from promptstack.ai.llm.schemas import MODEL_MAX_LENGTH, PROVIDER_MAX_LENGTH
from promptstack.ai.llm.service import (
    Answer,
    Ask,
    CallsRateLimited,
    Delta,
    Failed,
    FeatureDisabled,
    LlmGateway,
    ProviderFailed,
    ProviderTimedOut,
    ProviderUnavailable,
    QuotaExceeded,
    StreamEvent,
    UnknownModel,
)
from promptstack.ai.openai_compat.errors import openai_error
from promptstack.ai.openai_compat.schemas import (
    AssistantMessageOut,
    ChatCompletionIn,
    ChatCompletionOut,
    ChoiceOut,
    EmbeddingOut,
    EmbeddingsIn,
    EmbeddingsOut,
    EmbeddingUsageOut,
    ModelOut,
    ModelsOut,
    UsageOut,
)
from promptstack.core.errors import NotFound, Unauthorized, ValidationFailed
from promptstack.http.openapi import problem_responses
from promptstack.http.problems import problem_of
from promptstack.http.sse import MEDIA_TYPE, event_stream

# Who /v1/models says the embedding model belongs to: it runs here, not at a provider.
EMBEDDINGS_OWNER = "promptstack"

router = APIRouter(
    prefix="/v1",
    tags=["openai"],
    responses=problem_responses(Unauthorized, FeatureDisabled),
)

DEMO = "demo"
# One event of a `stream: true` answer (OpenAPI 3.1 describes a stream by its events).
CHUNK_EVENT = {
    "type": "object",
    "required": ["data"],
    "properties": {
        "data": {
            "type": "string",
            "description": "A chat.completion.chunk as JSON, an {error} object, or [DONE] last",
        },
    },
}


class ModelNotFound(NotFound):
    code = "model_not_found"
    title = "No such model"


def _model_ids(gateway: LlmGateway) -> list[tuple[str, str, str]]:
    """(id as this API names it, provider, model) for every model that can be called."""
    found = []
    for info in gateway.providers():
        if info.available:
            for model in info.models:
                shown = DEMO if info.name == DEMO else f"{info.name}/{model.id}"
                found.append((shown, info.name, model.id))
    return found


def _resolve(model: str) -> tuple[str, str]:
    provider, slash, name = model.partition("/")
    if slash:
        return provider, name
    if model == DEMO:
        return DEMO, DEMO
    raise ModelNotFound(
        f"models are named provider/model here (such as {DEMO} or openai/gpt-4o-mini); "
        "GET /v1/models lists them"
    )


def _ask(body: ChatCompletionIn, provider: str, model: str) -> Ask:
    *history, last = [message.message() for message in body.messages]
    if last.role != "user":
        raise ValidationFailed("the last message must be the user's", loc=("body", "messages"))
    return Ask(
        prompt=last.content,
        provider=provider,
        model=model,
        max_tokens=body.max_completion_tokens or body.max_tokens,
        temperature=body.temperature,
        history=tuple(history),
    )


def _usage(usage: Usage) -> UsageOut:
    return UsageOut(
        prompt_tokens=usage.prompt_tokens,
        completion_tokens=usage.completion_tokens,
        total_tokens=usage.total_tokens,
    )


def _served(answer: Answer) -> str:
    return DEMO if answer.provider == DEMO else f"{answer.provider}/{answer.completion.model}"


@router.get("/models", response_model=ModelsOut)
async def list_models(user: AiUser, gateway: LlmGatewayDep, documents: DocumentsDep) -> ModelsOut:
    """The models that can be called here, by the ids `model` takes: the chat models,
    and the embedding model."""
    return ModelsOut(data=_models(gateway, documents))


@router.get(
    "/models/{model_id:path}", response_model=ModelOut, responses=problem_responses(ModelNotFound)
)
async def read_model(
    model_id: Annotated[str, Path(max_length=PROVIDER_MAX_LENGTH + 1 + MODEL_MAX_LENGTH)],
    user: AiUser,
    gateway: LlmGatewayDep,
    documents: DocumentsDep,
) -> ModelOut:
    for model in _models(gateway, documents):
        if model.id == model_id:
            return model
    raise ModelNotFound("no model by this id here; GET /v1/models lists them")


def _models(gateway: LlmGateway, documents: Documents) -> list[ModelOut]:
    chat = [ModelOut(id=shown, owned_by=provider) for shown, provider, _ in _model_ids(gateway)]
    return [*chat, ModelOut(id=documents.model, owned_by=EMBEDDINGS_OWNER)]


@router.post(
    "/chat/completions",
    response_model=ChatCompletionOut,
    responses={
        200: {"content": {MEDIA_TYPE: {"schema": CHUNK_EVENT}}},
        **problem_responses(
            ModelNotFound,
            InsufficientCredits,
            CallsRateLimited,
            QuotaExceeded,
            ProviderFailed,
            ProviderUnavailable,
            ProviderTimedOut,
        ),
    },
)
async def create_chat_completion(
    body: ChatCompletionIn, user: AiUser, gateway: LlmGatewayDep
) -> ChatCompletionOut | StreamingResponse:
    """A chat completion, as OpenAI's API answers it; with `stream: true`, its chunks as
    server-sent events, the usage last when `stream_options.include_usage` asks."""
    provider, model = _resolve(body.model)
    ask = _ask(body, provider, model)
    try:
        if body.stream:
            events = await gateway.stream(user, ask)
        else:
            answer = await gateway.generate(user, ask)
    except (ProviderNotAvailable, UnknownModel) as error:
        raise ModelNotFound(
            "no model by this id can be called here; GET /v1/models lists them"
        ) from error
    if body.stream:
        wants_usage = body.stream_options is not None and body.stream_options.include_usage
        return event_stream(_chunks(events, body.model, wants_usage))
    return ChatCompletionOut(
        id=f"chatcmpl-{answer.call.id.hex}",
        created=int(answer.call.created_at.timestamp()),
        model=_served(answer),
        choices=[
            ChoiceOut(
                message=AssistantMessageOut(content=answer.completion.text),
                finish_reason=answer.completion.finish_reason,
            )
        ],
        usage=_usage(answer.completion.usage),
    )


def _data(payload: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(payload, separators=(",", ":")).encode() + b"\n\n"


async def _chunks(
    events: AsyncIterator[StreamEvent], model: str, wants_usage: bool
) -> AsyncIterator[bytes]:
    head = {
        "id": f"chatcmpl-{uuid.uuid4().hex}",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
    }

    def chunk(delta: dict[str, str], finish: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "finish_reason": finish}
        return _data({**head, "model": model, "choices": [choice]})

    yield chunk({"role": "assistant", "content": ""})
    async for event in events:
        match event:
            case Delta(text=text):
                yield chunk({"content": text})
            case Failed(problem=problem):
                yield _data(openai_error(problem_of(None, problem))[1])
                return
            case Answer():
                model = _served(event)
                yield chunk({}, event.completion.finish_reason)
                if wants_usage:
                    usage = _usage(event.completion.usage).model_dump()
                    yield _data({**head, "model": model, "choices": [], "usage": usage})
    yield b"data: [DONE]\n\n"


@router.post(
    "/embeddings",
    response_model=EmbeddingsOut,
    responses=problem_responses(ValidationFailed, ModelNotFound),
)
async def create_embeddings(
    body: EmbeddingsIn, user: AiUser, documents: DocumentsDep
) -> EmbeddingsOut:
    """Embed text with the model the document pipeline uses (GET /v1/models lists it):
    unit vectors, so a dot product is the cosine. A text longer than the model reads is
    refused rather than cut."""
    if body.model != documents.model:
        raise ModelNotFound(f"the embedding model here is {documents.model}")
    if body.dimensions is not None and body.dimensions != documents.dimension:
        raise ValidationFailed(
            f"{documents.model} has {documents.dimension} dimensions", loc=("body", "dimensions")
        )
    texts = [body.input] if isinstance(body.input, str) else body.input
    vectors, tokens = await documents.embed(texts)
    data = [
        EmbeddingOut(index=index, embedding=_encoded(vector, body.encoding_format))
        for index, vector in enumerate(vectors)
    ]
    return EmbeddingsOut(
        data=data,
        model=documents.model,
        usage=EmbeddingUsageOut(prompt_tokens=tokens, total_tokens=tokens),
    )


def _encoded(vector: Any, encoding: str) -> list[float] | str:
    if encoding == "base64":
        return base64.b64encode(vector.astype("<f4").tobytes()).decode("ascii")
    return [float(value) for value in vector]
