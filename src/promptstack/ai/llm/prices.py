"""What a call costs: prices per model, in micro-credits per token.

A credit is what the shop's credit packs sell and `users.credits` counts; the table
below prices models as if a credit were one US cent (OpenAI's $2.50 per million prompt
tokens is 250 micro-credits a token). `LLM_PRICES` overrides or adds entries. Costs are
integers of micro-credits, so a call's cost is exact; the credit ledger charges them in
whole credits as they add up (see `accounts/credits.py`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from promptstack.accounts.credits import MICROS_PER_CREDIT
from promptstack.ai.llm.providers.base import Usage


@dataclass(frozen=True, slots=True)
class Price:
    """Micro-credits per prompt token and per completion token."""

    prompt: int
    completion: int

    def cost(self, usage: Usage) -> int:
        return usage.prompt_tokens * self.prompt + usage.completion_tokens * self.completion

    def most(self, prompt_tokens: int, max_tokens: int) -> int:
        """The dearest a call can be: its prompt, and every token it may produce."""
        return prompt_tokens * self.prompt + max_tokens * self.completion


FREE = Price(0, 0)

# Keyed "provider/model". The demo runs on this machine and costs nothing.
PRICES: Mapping[str, Price] = MappingProxyType(
    {
        "demo/demo": FREE,
        "openai/gpt-4o": Price(250, 1_000),
        "openai/gpt-4o-mini": Price(15, 60),
        "openai/gpt-4.1": Price(200, 800),
        "openai/gpt-4.1-mini": Price(40, 160),
        "anthropic/claude-sonnet-4-5": Price(300, 1_500),
        "anthropic/claude-haiku-4-5": Price(100, 500),
        "gemini/gemini-2.5-pro": Price(125, 1_000),
        "gemini/gemini-2.5-flash": Price(30, 250),
    }
)


# What a model missing from the table costs: the dearest in it, so none is free by mistake.
DEAREST = Price(
    max(price.prompt for price in PRICES.values()),
    max(price.completion for price in PRICES.values()),
)


class PriceBook:
    """The table in code with the deployment's overrides on top. A model in neither is
    priced by `fallback`, never free by accident."""

    def __init__(self, overrides: Mapping[str, Price], *, fallback: Price) -> None:
        self._prices = {**PRICES, **overrides}
        self._fallback = fallback

    def of(self, provider: str, model: str) -> Price:
        return self._prices.get(f"{provider}/{model}", self._fallback)


def credits_to_hold(micros: int) -> int:
    """Whole credits that cover `micros` micro-credits."""
    return -(-micros // MICROS_PER_CREDIT)
