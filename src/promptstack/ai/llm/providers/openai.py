"""OpenAI's chat completions through the official `openai` SDK; the adapter also serves
any server that speaks the same API (`openai_compatible.py`).

The SDK is imported on the first call, and its own retries are off: the gateway retries
inside the provider's breaker, and two layers of retries would multiply each other.
Streams ask for usage (`include_usage`); a server that sends none leaves the gateway to
count what was produced, flagged as an estimate.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any, NoReturn

from promptstack.ai.llm.providers import failures
from promptstack.ai.llm.providers.base import (
    Chunk,
    Completion,
    CompletionRequest,
    FinishReason,
    ModelInfo,
    Usage,
    with_sources,
)
from promptstack.ai.llm.providers.hosted import HostedProvider
from promptstack.ai.llm.tokens import TokenCounter

if TYPE_CHECKING:
    from openai import AsyncOpenAI
    from openai.types.chat import ChatCompletionChunk

MODELS = (
    ModelInfo(id="gpt-4o-mini", context_window=128_000, max_output_tokens=16_384),
    ModelInfo(id="gpt-4o", context_window=128_000, max_output_tokens=16_384),
    ModelInfo(id="gpt-4.1-mini", context_window=1_047_576, max_output_tokens=32_768),
    ModelInfo(id="gpt-4.1", context_window=1_047_576, max_output_tokens=32_768),
)
# Local servers commonly ignore the key, but the SDK insists on one.
NO_KEY = "unused"


def _finish(reason: str | None) -> FinishReason:
    return "length" if reason == "length" else "stop"


class OpenAIChat(HostedProvider):
    """OpenAI's own chat completions; `openai_compatible.py` points it elsewhere."""

    # OpenAI's own API wants max_completion_tokens (compatible servers, max_tokens).
    limit_field = "max_completion_tokens"

    def __init__(
        self,
        name: str,
        *,
        api_key: str | None,
        base_url: str | None,
        models: tuple[ModelInfo, ...],
        tokens: TokenCounter,
        timeout_seconds: float,
    ) -> None:
        super().__init__(
            api_key=api_key,
            base_url=base_url,
            models=models,
            tokens=tokens,
            timeout_seconds=timeout_seconds,
        )
        self.name = name
        self._client: AsyncOpenAI | None = None

    def _sdk(self) -> AsyncOpenAI:
        if self._client is None:
            from openai import AsyncOpenAI  # noqa: PLC0415 - on first use, not at start

            self._client = AsyncOpenAI(
                api_key=self._api_key or NO_KEY,
                base_url=self._base_url,
                timeout=self._timeout,
                max_retries=0,
            )
        return self._client

    def _arguments(self, request: CompletionRequest) -> dict[str, Any]:
        arguments: dict[str, Any] = {
            "model": request.model,
            "messages": [{"role": m.role, "content": m.content} for m in with_sources(request)],
            self.limit_field: request.max_tokens,
        }
        if request.temperature is not None:
            arguments["temperature"] = request.temperature
        return arguments

    async def generate(self, request: CompletionRequest) -> Completion:
        try:
            response = await self._sdk().chat.completions.create(**self._arguments(request))
        except Exception as error:
            self._fail(error)
        if not response.choices:
            raise failures.malformed(self.name)
        choice = response.choices[0]
        text = choice.message.content or ""
        if response.usage is not None:
            usage = Usage(response.usage.prompt_tokens, response.usage.completion_tokens)
        else:
            usage = self._tokens.estimated_usage(request, text)
        return Completion(text, request.model, usage, finish_reason=_finish(choice.finish_reason))

    async def stream(self, request: CompletionRequest) -> AsyncIterator[Chunk]:
        try:
            chunks = await self._sdk().chat.completions.create(
                **self._arguments(request), stream=True, stream_options={"include_usage": True}
            )
        except Exception as error:
            self._fail(error)
        usage: Usage | None = None
        finish: FinishReason = "stop"
        try:
            async for chunk in chunks:
                text, reason, reported = self._read(chunk)
                if reported is not None:
                    usage = reported
                if reason is not None:
                    finish = reason
                if text:
                    yield Chunk(text=text)
        except Exception as error:
            self._fail(error)
        finally:
            # Closing the response is what stops the upstream generation when our
            # caller has gone away.
            await chunks.close()
        yield Chunk(usage=usage, finish_reason=finish)

    @staticmethod
    def _read(chunk: ChatCompletionChunk) -> tuple[str, FinishReason | None, Usage | None]:
        usage = None
        if chunk.usage is not None:
            usage = Usage(chunk.usage.prompt_tokens, chunk.usage.completion_tokens)
        if not chunk.choices:
            return "", None, usage
        choice = chunk.choices[0]
        reason = _finish(choice.finish_reason) if choice.finish_reason else None
        return choice.delta.content or "", reason, usage

    def _fail(self, error: Exception) -> NoReturn:
        import openai  # noqa: PLC0415 - loaded already by the call that failed

        if isinstance(error, openai.APITimeoutError):
            raise failures.timed_out(self.name) from error
        if isinstance(error, openai.APIConnectionError):
            raise failures.broken_off(self.name) from error
        if isinstance(error, openai.APIStatusError):
            raise failures.of_status(
                self.name, error.status_code, error.response.headers
            ) from error
        if isinstance(error, openai.APIResponseValidationError | ValueError):
            raise failures.malformed(self.name) from error
        raise failures.broken_off(self.name) from error
