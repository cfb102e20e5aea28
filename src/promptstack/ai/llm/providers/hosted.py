"""What every adapter of a provider's HTTP API holds alike: its configuration (a key, a
base URL, a timeout), its models, and offline token counts; the SDK and its wire are the
adapter's own."""

from __future__ import annotations

from promptstack.ai.llm.providers.base import ModelInfo, TokenCount
from promptstack.ai.llm.tokens import TokenCounter


class HostedProvider:
    name: str

    def __init__(
        self,
        *,
        api_key: str | None,
        base_url: str | None,
        models: tuple[ModelInfo, ...],
        tokens: TokenCounter,
        timeout_seconds: float,
    ) -> None:
        self._api_key = api_key
        self._base_url = base_url
        self._models = models
        self._tokens = tokens
        self._timeout = timeout_seconds

    def is_available(self) -> bool:
        """A key, and a model to call: configuration only, nothing is asked."""
        return self._api_key is not None and bool(self._models)

    def models(self) -> tuple[ModelInfo, ...]:
        return self._models

    @property
    def default_model(self) -> str:
        return self._models[0].id if self._models else ""

    def count_tokens(self, text: str, model: str) -> TokenCount:
        return self._tokens.count(text, model)
