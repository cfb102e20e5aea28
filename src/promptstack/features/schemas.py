"""Feature flags as the API shows them."""

from __future__ import annotations

from pydantic import BaseModel, Field


class FeaturesOut(BaseModel):
    # An object around the map, so the answer can grow beside the flags without breaking
    # clients that read them.
    flags: dict[str, bool] = Field(
        description="Every flag by name: whether it is on for the caller",
        examples=[{"advanced_analytics": False, "ai_chat": True, "new_dashboard": False}],
    )
