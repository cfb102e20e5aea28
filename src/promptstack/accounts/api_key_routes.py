"""Personal API keys, made and managed with an access token (never with a key)."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Response

from promptstack.accounts.api_key_schemas import ApiKeyIn, ApiKeyOut, ApiKeysOut, NewApiKeyOut
from promptstack.accounts.api_keys import TooManyApiKeys
from promptstack.accounts.dependencies import ApiKeysDep, CurrentUser
from promptstack.core.errors import NotFound, Unauthorized
from promptstack.http import API_V1
from promptstack.http.dependencies import ClientAddress
from promptstack.http.openapi import problem_responses

router = APIRouter(
    prefix=f"{API_V1}/api-keys", tags=["api-keys"], responses=problem_responses(Unauthorized)
)


@router.post(
    "", status_code=201, response_model=NewApiKeyOut, responses=problem_responses(TooManyApiKeys)
)
async def create_api_key(
    body: ApiKeyIn,
    user: CurrentUser,
    keys: ApiKeysDep,
    address: ClientAddress,
    response: Response,
) -> NewApiKeyOut:
    """Make a key for the AI endpoints (`/api/v1/llm/*` and the OpenAI-compatible `/v1/*`).
    The answer holds the key itself, which is not shown again."""
    made = await keys.create(user, body.name, expires_in_days=body.expires_in_days, address=address)
    response.headers["Cache-Control"] = "no-store"
    shown = ApiKeyOut.model_validate(made.key)
    return NewApiKeyOut(**shown.model_dump(), key=made.secret)


@router.get("", response_model=ApiKeysOut)
async def list_api_keys(user: CurrentUser, keys: ApiKeysDep) -> ApiKeysOut:
    """Your keys, newest first, without their secrets."""
    return ApiKeysOut(items=[ApiKeyOut.model_validate(key) for key in await keys.list(user)])


@router.delete("/{key_id}", status_code=204, responses=problem_responses(NotFound))
async def delete_api_key(
    key_id: uuid.UUID, user: CurrentUser, keys: ApiKeysDep, address: ClientAddress
) -> None:
    """Delete a key: it stops working at once."""
    await keys.delete(user, key_id, address=address)
