"""The LLM endpoints' shapes."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Annotated

from pydantic import AfterValidator, ConfigDict, Field, StrictBool, StrictInt, StringConstraints

from promptstack.ai.llm.models import Outcome
from promptstack.ai.llm.providers.base import FinishReason, ModelInfo, TokenCount
from promptstack.ai.llm.reports import DayUse, EveryonesUsage, MyUsage, Sums
from promptstack.ai.llm.service import Answer, Ask, ProviderInfo
from promptstack.http.schemas import Input, Output, clean_text

# About 250,000 tokens of English: longer than any model's context, shorter than the
# request body limit.
TEXT_MAX_LENGTH = 1_000_000
MODEL_MAX_LENGTH = 128
PROVIDER_MAX_LENGTH = 32
MAX_TOKENS = 1_000_000

Text = Annotated[str, StringConstraints(max_length=TEXT_MAX_LENGTH), AfterValidator(clean_text)]
ModelId = Annotated[
    Annotated[
        str,
        StringConstraints(min_length=1, max_length=MODEL_MAX_LENGTH),
        AfterValidator(clean_text),
    ]
    | None,
    Field(description="A model id from GET /llm/providers; the provider's default if left out"),
]


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

    text: Text
    model: ModelId = None


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


class GenerateIn(Input):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"prompt": "What is event sourcing?", "max_tokens": 200}]}
    )

    prompt: Annotated[
        str,
        StringConstraints(min_length=1, max_length=TEXT_MAX_LENGTH),
        AfterValidator(clean_text),
        Field(description="The question"),
    ]
    provider: Annotated[
        Annotated[
            str, StringConstraints(pattern=r"^[a-z][a-z0-9_]*$", max_length=PROVIDER_MAX_LENGTH)
        ]
        | None,
        Field(description="Else your preferred_provider, else the deployment's default"),
    ] = None
    model: ModelId = None
    max_tokens: Annotated[
        StrictInt | None,
        Field(ge=1, le=MAX_TOKENS, description="At most the model's max_output_tokens"),
    ] = None
    temperature: Annotated[float | None, Field(ge=0, le=2)] = None
    stream: Annotated[
        StrictBool,
        Field(description="Answer with server-sent events: delta, then usage and done (or error)"),
    ] = False
    use_documents: Annotated[
        StrictBool,
        Field(
            description="Answer from your documents: the passages that best match the prompt "
            "are given to the model as numbered sources, and the answer has `citations`"
        ),
    ] = False

    def ask(self) -> Ask:
        return Ask(
            prompt=self.prompt,
            provider=self.provider,
            model=self.model,
            max_tokens=self.max_tokens,
            temperature=self.temperature,
            use_documents=self.use_documents,
        )


class CitationOut(Output):
    number: int = Field(description="The source's number, as the answer cites it: [1]")
    document_id: uuid.UUID
    title: str
    chunk_index: int
    score: float = Field(description="How well the passage matched the prompt (hybrid search)")
    cited: bool = Field(description="Whether the answer refers to this source")


class GenerateOut(Output):
    id: uuid.UUID = Field(description="The call's entry in the usage ledger")
    text: str
    provider: str
    model: str
    finish_reason: FinishReason
    prompt_tokens: int
    completion_tokens: int
    tokens_used: int
    usage_exact: bool = Field(description="False when the provider reported no usage")
    cost_micros: int = Field(description="What the call cost, in millionths of a credit")
    credits_charged: int = Field(
        description="Whole credits taken from the balance; parts of a credit carry over"
    )
    citations: list[CitationOut] | None = Field(
        default=None,
        description="With use_documents: every source the model was given, by its number",
    )

    @classmethod
    def of(cls, answer: Answer) -> GenerateOut:
        completion, usage = answer.completion, answer.completion.usage
        return cls(
            id=answer.call.id,
            text=completion.text,
            provider=answer.provider,
            model=completion.model,
            finish_reason=completion.finish_reason,
            prompt_tokens=usage.prompt_tokens,
            completion_tokens=usage.completion_tokens,
            tokens_used=usage.total_tokens,
            usage_exact=usage.exact,
            cost_micros=answer.call.cost_micros,
            credits_charged=answer.call.credits_charged,
            citations=None
            if answer.citations is None
            else [CitationOut.model_validate(citation) for citation in answer.citations],
        )


class SumsOut(Output):
    calls: int
    prompt_tokens: int
    completion_tokens: int
    cost_micros: int
    credits_charged: int

    @classmethod
    def of(cls, sums: Sums) -> SumsOut:
        return cls(
            calls=sums.calls,
            prompt_tokens=sums.prompt_tokens,
            completion_tokens=sums.completion_tokens,
            cost_micros=sums.cost_micros,
            credits_charged=sums.credits_charged,
        )


class DayUseOut(SumsOut):
    day: date
    provider: str
    model: str

    @classmethod
    def of_day(cls, use: DayUse) -> DayUseOut:
        return cls(day=use.day, provider=use.provider, model=use.model, **_sums(use.sums))


class CallOut(Output):
    id: uuid.UUID
    provider: str
    model: str
    streamed: bool
    outcome: Outcome
    error: str | None
    prompt_tokens: int
    completion_tokens: int
    usage_exact: bool
    cost_micros: int
    credits_held: int
    credits_charged: int
    latency_ms: int | None
    created_at: datetime
    finished_at: datetime | None


class UsageOut(Output):
    since: datetime
    until: datetime | None = Field(description="Null: up to now")
    totals: SumsOut = Field(description="Every call in [since, until)")
    by_day: list[DayUseOut] = Field(description="Per UTC day, provider and model, oldest first")
    items: list[CallOut] = Field(description="Your calls, newest first, a page at a time")
    next_cursor: str | None

    @classmethod
    def of(cls, usage: MyUsage) -> UsageOut:
        return cls(
            since=usage.since,
            until=usage.until,
            totals=SumsOut.of(usage.totals),
            by_day=[DayUseOut.of_day(day) for day in usage.by_day],
            items=[CallOut.model_validate(call) for call in usage.calls.items],
            next_cursor=usage.calls.next_cursor,
        )


class UserUseOut(SumsOut):
    user_id: uuid.UUID


class ModelUseOut(SumsOut):
    provider: str
    model: str


class EveryonesUsageOut(Output):
    since: datetime
    until: datetime | None = Field(description="Null: up to now")
    totals: SumsOut
    by_user: list[UserUseOut] = Field(description="The 100 users who spent most, dearest first")
    by_model: list[ModelUseOut]

    @classmethod
    def of(cls, usage: EveryonesUsage) -> EveryonesUsageOut:
        return cls(
            since=usage.since,
            until=usage.until,
            totals=SumsOut.of(usage.totals),
            by_user=[UserUseOut(user_id=use.user_id, **_sums(use.sums)) for use in usage.by_user],
            by_model=[
                ModelUseOut(provider=use.provider, model=use.model, **_sums(use.sums))
                for use in usage.by_model
            ],
        )


def _sums(sums: Sums) -> dict[str, int]:
    return SumsOut.of(sums).model_dump()
