"""The services this domain's routes take."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from promptstack.features.service import FeatureFlags
from promptstack.http.dependencies import provider

FeatureFlagsDep = Annotated[FeatureFlags, Depends(provider(FeatureFlags))]
