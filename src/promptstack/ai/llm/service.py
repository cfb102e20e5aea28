"""The gateway's front: which provider serves a caller, what it offers, and token counts.

Calls (generate, stream) with their credits, quotas, usage, breaker and fallback join
this service; choosing the provider is the first step of each, so it lives here.
"""

from __future__ import annotations

from dataclasses import dataclass

from promptstack.accounts.models import UserSnapshot
from promptstack.ai.llm.providers.base import ModelInfo, Provider, TokenCount
from promptstack.ai.llm.registry import ProviderRegistry
from promptstack.core.errors import Forbidden, ValidationFailed
from promptstack.features.service import FeatureFlags

FEATURE = "ai_chat"


class FeatureDisabled(Forbidden):
    code = "feature_disabled"
    title = "This feature is not enabled for you"


class UnknownModel(ValidationFailed):
    code = "unknown_model"
    title = "No provider here offers this model"


@dataclass(frozen=True, slots=True)
class ProviderInfo:
    name: str
    available: bool
    default: bool
    models: tuple[ModelInfo, ...]


class LlmGateway:
    def __init__(self, registry: ProviderRegistry, flags: FeatureFlags, default: str) -> None:
        self._registry = registry
        self._flags = flags
        self._default = default

    def admit(self, user: UserSnapshot) -> None:
        """The `ai_chat` flag gates every AI endpoint."""
        if not self._flags.is_enabled(FEATURE, user):
            raise FeatureDisabled(f"the {FEATURE} feature is off for this account")

    def providers(self) -> tuple[ProviderInfo, ...]:
        return tuple(
            ProviderInfo(p.name, p.is_available(), p.name == self._default, p.models())
            for p in self._registry.all()
        )

    def choose(self, user: UserSnapshot, requested: str | None) -> Provider:
        """The request's provider, else the caller's preference, else the default. A
        preference that cannot be served is refused like a request's, rather than
        quietly answered by another provider's model."""
        if requested is not None:
            return self._registry.usable(requested, loc=("body", "provider"))
        if user.preferred_provider is not None:
            return self._registry.usable(
                user.preferred_provider, loc=("user", "preferred_provider")
            )
        return self._registry.usable(self._default, loc=("settings", "DEFAULT_LLM_PROVIDER"))

    def count_tokens(
        self, user: UserSnapshot, text: str, model: str | None
    ) -> tuple[str, TokenCount]:
        """The count for `model` (by default the chosen provider's default model), with
        whether it is exact for that model."""
        if model is None:
            provider = self.choose(user, None)
            model = provider.default_model
        else:
            provider = self._offering(model)
        return model, provider.count_tokens(text, model)

    def _offering(self, model: str) -> Provider:
        for provider in self._registry.all():
            if any(info.id == model for info in provider.models()):
                return provider
        raise UnknownModel(
            f"no provider here offers {model!r}; GET /api/v1/llm/providers lists the models",
            loc=("body", "model"),
        )
