"""Feature flags, evaluated for whoever asks."""

from __future__ import annotations

from fastapi import APIRouter

from promptstack.api.dependencies.auth import OptionalUser
from promptstack.api.dependencies.services import FeatureFlagsDep
from promptstack.api.problems import problem_responses
from promptstack.api.routes import API_V1
from promptstack.api.schemas.features import FeaturesOut
from promptstack.core.errors import Unauthorized

router = APIRouter(prefix=f"{API_V1}/features", tags=["features"])


@router.get("", response_model=FeaturesOut, responses=problem_responses(Unauthorized))
async def read_features(user: OptionalUser, features: FeatureFlagsDep) -> FeaturesOut:
    """Which features are on for the caller: for an anonymous visitor without a token, for
    the token's account with one. A token that does not work is a 401, never anonymous."""
    return FeaturesOut(flags=features.evaluate(user))
