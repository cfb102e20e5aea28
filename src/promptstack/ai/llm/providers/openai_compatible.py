"""Any server that speaks OpenAI's chat completions (vLLM, Ollama, llama.cpp's server),
by its base URL and the models it serves, through the OpenAI adapter.

What differs from OpenAI itself: the base URL, not a key, makes it available (local
servers commonly want none); it is sent the older `max_tokens`, which such servers
read; and its models' sizes are assumed, as such servers do not say them.
"""

from __future__ import annotations

from promptstack.ai.llm.providers.base import ModelInfo
from promptstack.ai.llm.providers.openai import OpenAIChat
from promptstack.ai.llm.tokens import TokenCounter

NAME = "openai_compatible"
# Small enough for the models such servers usually run.
CONTEXT_WINDOW = 8_192
MAX_OUTPUT_TOKENS = 4_096


class OpenAICompatibleChat(OpenAIChat):
    limit_field = "max_tokens"

    def is_available(self) -> bool:
        return self._base_url is not None and bool(self._models)


def openai_compatible(
    *,
    base_url: str | None,
    api_key: str | None,
    models: list[str],
    tokens: TokenCounter,
    timeout_seconds: float,
) -> OpenAIChat:
    return OpenAICompatibleChat(
        NAME,
        api_key=api_key,
        base_url=base_url,
        models=tuple(
            ModelInfo(id=name, context_window=CONTEXT_WINDOW, max_output_tokens=MAX_OUTPUT_TOKENS)
            for name in models
        ),
        tokens=tokens,
        timeout_seconds=timeout_seconds,
    )
