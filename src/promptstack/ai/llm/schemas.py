"""The LLM endpoints' shapes."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, ConfigDict, Field, StringConstraints

from promptstack.ai.llm.providers.base import ModelInfo, TokenCount
from promptstack.ai.llm.service import ProviderInfo
from promptstack.http.schemas import Input, Output, clean_text

# About 250,000 tokens of English: longer than any model's context, shorter than the
# request body limit.
TEXT_MAX_LENGTH = 1_000_000
MODEL_MAX_LENGTH = 128


class ModelOut(Output):
    id: str
    context_window: int
    max_output_tokens: int

    @classmethod
    def of(cls, model: ModelInfo) -> ModelOut:
        return cls(
            id=model.id,
            context_window=model.context_window,
            max_output_tokens=model.max_output_tokens,
        )


class ProviderOut(Output):
    name: str
    available: bool = Field(description="Configured here (a key, a base URL); not a health check")
    default: bool = Field(description="Serves callers who name no provider and have no preference")
    models: list[ModelOut]

    @classmethod
    def of(cls, info: ProviderInfo) -> ProviderOut:
        return cls(
            name=info.name,
            available=info.available,
            default=info.default,
            models=[ModelOut.of(model) for model in info.models],
        )


class ProvidersOut(Output):
    providers: list[ProviderOut]


class CountTokensIn(Input):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"text": "How many tokens is this?"}]}
    )

    text: Annotated[str, StringConstraints(max_length=TEXT_MAX_LENGTH), AfterValidator(clean_text)]
    model: Annotated[
        str | None,
        StringConstraints(min_length=1, max_length=MODEL_MAX_LENGTH),
        Field(description="A model id from GET /llm/providers; the default model if left out"),
    ] = None


class TokenCountOut(Output):
    tokens: int
    exact: bool = Field(
        description="Whether this is the model's own tokenizer; if not, an estimate "
        "(the provider's reported usage is what is billed)"
    )
    encoding: str
    model: str

    @classmethod
    def of(cls, model: str, count: TokenCount) -> TokenCountOut:
        return cls(tokens=count.tokens, exact=count.exact, encoding=count.encoding, model=model)
