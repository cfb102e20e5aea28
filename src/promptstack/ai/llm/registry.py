"""The providers this process knows, by name, filled from `bootstrap()`.

Adding a provider is its adapter's file and one `register` line in the composition root;
nothing else names a concrete provider.
"""

from __future__ import annotations

from promptstack.ai.llm.providers.base import Provider
from promptstack.core.errors import ValidationFailed


class ProviderNotAvailable(ValidationFailed):
    """Asked for a provider that does not exist here, or that lacks its configuration."""

    code = "provider_not_available"
    title = "The provider is not available"


class ProviderRegistry:
    def __init__(self) -> None:
        self._providers: dict[str, Provider] = {}

    def register(self, provider: Provider) -> None:
        if provider.name in self._providers:
            raise ValueError(f"a provider named {provider.name!r} is registered already")
        self._providers[provider.name] = provider

    def get(self, name: str) -> Provider | None:
        return self._providers.get(name)

    def all(self) -> tuple[Provider, ...]:
        return tuple(self._providers.values())

    def available(self) -> tuple[str, ...]:
        return tuple(p.name for p in self._providers.values() if p.is_available())

    def usable(self, name: str, *, loc: tuple[str | int, ...]) -> Provider:
        """The provider called `name`, if it can be called; else a 422 at `loc` naming
        the ones that can."""
        provider = self._providers.get(name)
        if provider is not None and provider.is_available():
            return provider
        state = "is not configured here" if provider is not None else "is not one of ours"
        offered = ", ".join(self.available()) or "none"
        raise ProviderNotAvailable(f"this provider {state}; available: {offered}", loc=loc)
