"""What every provider is to the gateway: a Protocol, the values it takes and gives, and
the failures it may raise.

Adapters translate between these and their SDK's own types, so nothing above them knows
which provider answered; the errors say whether trying again (or another provider) can
help, which is what the gateway's retry, breaker and fallback decide on.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Literal, Protocol

Role = Literal["system", "user", "assistant"]
FinishReason = Literal["stop", "length", "cancelled", "error"]


@dataclass(frozen=True, slots=True)
class Message:
    role: Role
    content: str


@dataclass(frozen=True, slots=True)
class Source:
    """A passage the answer should draw on, numbered in the order given (1, 2, ...)."""

    title: str
    text: str


@dataclass(frozen=True, slots=True)
class CompletionRequest:
    model: str
    messages: tuple[Message, ...]
    max_tokens: int
    temperature: float | None = None
    sources: tuple[Source, ...] = ()


def with_sources(request: CompletionRequest) -> tuple[Message, ...]:
    """The request's messages for a model that reads only messages: its sources, if
    any, numbered in a system message ahead of them, with how to cite them."""
    if not request.sources:
        return request.messages
    numbered = "\n\n".join(
        f"[{n}] {source.title}\n{source.text}" for n, source in enumerate(request.sources, 1)
    )
    instruction = (
        "Answer from the numbered sources below, citing each one you use as [n]. "
        "If they do not hold the answer, say so.\n\n" + numbered
    )
    return (Message("system", instruction), *request.messages)


@dataclass(frozen=True, slots=True)
class Usage:
    """Tokens as the provider reported them (`exact`), or as counted here when it did not."""

    prompt_tokens: int
    completion_tokens: int
    exact: bool = True

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True, slots=True)
class Completion:
    text: str
    model: str
    usage: Usage
    finish_reason: FinishReason = "stop"


@dataclass(frozen=True, slots=True)
class Chunk:
    """A piece of a streamed answer. The last one carries the usage and why it ended."""

    text: str = ""
    usage: Usage | None = None
    finish_reason: FinishReason | None = None


@dataclass(frozen=True, slots=True)
class TokenCount:
    tokens: int
    exact: bool
    encoding: str


@dataclass(frozen=True, slots=True)
class ModelInfo:
    id: str
    context_window: int
    max_output_tokens: int


class Provider(Protocol):
    """A source of completions. Adapters import their SDK on first use, never at start."""

    name: str

    def is_available(self) -> bool:
        """Configured well enough to try (a key, a base URL); says nothing of the network."""
        ...

    def models(self) -> tuple[ModelInfo, ...]: ...

    @property
    def default_model(self) -> str: ...

    def count_tokens(self, text: str, model: str) -> TokenCount: ...

    async def generate(self, request: CompletionRequest) -> Completion: ...

    def stream(self, request: CompletionRequest) -> AsyncIterator[Chunk]: ...


@dataclass
class ProviderError(Exception):
    """A provider's call went wrong; `transient` says whether another try may succeed."""

    provider: str
    detail: str
    transient: bool = False
    retry_after: float | None = field(default=None, kw_only=True)

    def __str__(self) -> str:
        return f"{self.provider}: {self.detail}"


class ProviderRateLimited(ProviderError):
    """The provider refused for load or quota (HTTP 429)."""


class ProviderTimeout(ProviderError):
    """No answer in time."""


class ProviderUnreachable(ProviderError):
    """No connection, or a server error (5xx): another try, or another provider, may do."""


class ProviderRejected(ProviderError):
    """The provider refused the request itself (a bad model, a prompt too long): trying
    elsewhere with the same request is pointless."""
