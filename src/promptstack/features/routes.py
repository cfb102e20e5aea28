"""Feature flags, evaluated for whoever asks."""

from __future__ import annotations

from fastapi import APIRouter

from promptstack.accounts.dependencies import OptionalUser
from promptstack.core.errors import Unauthorized
from promptstack.features.dependencies import FeatureFlagsDep
from promptstack.features.schemas import FeaturesOut
from promptstack.http import API_V1
from promptstack.http.openapi import problem_responses

router = APIRouter(prefix=f"{API_V1}/features", tags=["features"])


@router.get("", response_model=FeaturesOut, responses=problem_responses(Unauthorized))
async def read_features(user: OptionalUser, features: FeatureFlagsDep) -> FeaturesOut:
    """Which features are on for the caller: for an anonymous visitor without a token, for
    the token's account with one. A token that does not work is a 401, never anonymous."""
    return FeaturesOut(flags=features.evaluate(user))
