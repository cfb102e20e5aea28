"""The LLM endpoints under /api/v1/llm."""

from __future__ import annotations

from fastapi import APIRouter

from promptstack.accounts.credits import InsufficientCredits
from promptstack.ai.llm.dependencies import AiUser, LlmGatewayDep
from promptstack.ai.llm.registry import ProviderNotAvailable
from promptstack.ai.llm.schemas import (
    CountTokensIn,
    GenerateIn,
    GenerateOut,
    ProviderOut,
    ProvidersOut,
    TokenCountOut,
)
from promptstack.ai.llm.service import (
    FeatureDisabled,
    ProviderFailed,
    ProviderRateLimit,
    ProviderTimedOut,
    UnknownModel,
)
from promptstack.core.errors import Unauthorized
from promptstack.http import API_V1
from promptstack.http.openapi import problem_responses

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
    responses=problem_responses(
        UnknownModel,
        ProviderNotAvailable,
        InsufficientCredits,
        ProviderRateLimit,
        ProviderFailed,
        ProviderTimedOut,
    ),
)
async def generate(body: GenerateIn, user: AiUser, gateway: LlmGatewayDep) -> GenerateOut:
    """Answer a prompt. The most the call can cost (its prompt and `max_tokens`) is held
    from your credits first, and what it did not cost is given back; a call the
    balance cannot cover is a 402. Every call, answered or failed, is in the usage
    ledger."""
    return GenerateOut.of(await gateway.generate(user, body.ask()))
