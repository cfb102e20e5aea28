"""OpenAI's request and answer shapes for chat completions, embeddings and models, as
its client libraries send and read them.

Only what the gateway can honour is accepted: a parameter it would silently ignore
(`tools`, `n` above 1, `logprobs`, ...) is refused, as OpenAI refuses an unknown one, so
a client never believes it got what it did not.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, ConfigDict, Field, StrictBool, StrictInt, StringConstraints

from promptstack.ai.llm.providers.base import FinishReason, Message
from promptstack.ai.llm.schemas import (
    MAX_TOKENS,
    MODEL_MAX_LENGTH,
    PROVIDER_MAX_LENGTH,
    TEXT_MAX_LENGTH,
)
from promptstack.http.schemas import Input, Output, clean_text

MAX_MESSAGES = 1_000

Content = Annotated[str, StringConstraints(max_length=TEXT_MAX_LENGTH), AfterValidator(clean_text)]


class TextPart(Input):
    type: Literal["text"]
    text: Content


class ChatMessageIn(Input):
    # "developer" is what OpenAI's newer models call the system's instructions.
    role: Literal["system", "developer", "user", "assistant"]
    content: Content | Annotated[list[TextPart], Field(min_length=1, max_length=100)]
    name: Annotated[str, StringConstraints(max_length=64), AfterValidator(clean_text)] | None = None

    def message(self) -> Message:
        text = (
            self.content
            if isinstance(self.content, str)
            else "".join(part.text for part in self.content)
        )
        return Message("system" if self.role == "developer" else self.role, text)


class StreamOptionsIn(Input):
    include_usage: StrictBool = False


class ChatCompletionIn(Input):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "model": "demo",
                    "messages": [
                        {"role": "system", "content": "Answer in one sentence."},
                        {"role": "user", "content": "What is a saga?"},
                    ],
                    "max_tokens": 100,
                }
            ]
        }
    )

    model: Annotated[
        str,
        StringConstraints(min_length=1, max_length=PROVIDER_MAX_LENGTH + 1 + MODEL_MAX_LENGTH),
        AfterValidator(clean_text),
        Field(description="`provider/model` as `GET /v1/models` lists them, or `demo`"),
    ]
    messages: Annotated[list[ChatMessageIn], Field(min_length=1, max_length=MAX_MESSAGES)]
    max_tokens: Annotated[StrictInt | None, Field(ge=1, le=MAX_TOKENS)] = None
    max_completion_tokens: Annotated[StrictInt | None, Field(ge=1, le=MAX_TOKENS)] = None
    temperature: Annotated[float | None, Field(ge=0, le=2)] = None
    stream: StrictBool = False
    stream_options: StreamOptionsIn | None = None
    n: Annotated[StrictInt | None, Field(ge=1, le=1, description="One answer per call")] = None
    user: Annotated[str, StringConstraints(max_length=256), AfterValidator(clean_text)] | None = (
        None
    )


class AssistantMessageOut(Output):
    role: Literal["assistant"] = "assistant"
    content: str


class ChoiceOut(Output):
    index: int = 0
    message: AssistantMessageOut
    finish_reason: FinishReason


class UsageOut(Output):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class ChatCompletionOut(Output):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str = Field(description="The provider/model that answered (a fallback, maybe)")
    choices: list[ChoiceOut]
    usage: UsageOut


# Texts embedded per request at most (OpenAI takes 2048; each is a forward pass on a CPU).
MAX_INPUTS = 256
EmbeddingText = Annotated[
    str, StringConstraints(min_length=1, max_length=TEXT_MAX_LENGTH), AfterValidator(clean_text)
]


class EmbeddingsIn(Input):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"model": "all-MiniLM-L6-v2-int8", "input": ["How do refunds work?"]}]
        }
    )

    model: Annotated[str, StringConstraints(min_length=1, max_length=MODEL_MAX_LENGTH)]
    input: (
        EmbeddingText | Annotated[list[EmbeddingText], Field(min_length=1, max_length=MAX_INPUTS)]
    )
    encoding_format: Literal["float", "base64"] = Field(
        default="float", description="base64: each vector as little-endian float32 bytes"
    )
    dimensions: Annotated[StrictInt, Field(ge=1, le=100_000)] | None = Field(
        default=None, description="The model's own dimension, or left out"
    )
    user: Annotated[str, StringConstraints(max_length=256), AfterValidator(clean_text)] | None = (
        None
    )


class EmbeddingOut(Output):
    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float] | str


class EmbeddingUsageOut(Output):
    prompt_tokens: int
    total_tokens: int


class EmbeddingsOut(Output):
    object: Literal["list"] = "list"
    data: list[EmbeddingOut]
    model: str
    usage: EmbeddingUsageOut


class ModelOut(Output):
    id: str
    object: Literal["model"] = "model"
    created: int = 0
    owned_by: str


class ModelsOut(Output):
    object: Literal["list"] = "list"
    data: list[ModelOut]


class OpenAIErrorDetailOut(Output):
    message: str
    type: str = Field(description="invalid_request_error, authentication_error, ...")
    param: str | None = Field(description="The request's field at fault, if one is")
    code: str | None = Field(description="The problem's code, as on the rest of this API")


class OpenAIErrorOut(Output):
    """OpenAI's error shape, which its client libraries turn into their exceptions."""

    error: OpenAIErrorDetailOut
