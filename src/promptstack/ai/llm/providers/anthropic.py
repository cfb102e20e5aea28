"""Anthropic's Messages API through the official `anthropic` SDK.

The SDK is imported on the first call and its own retries are off, for the same reason
as OpenAI's: the gateway retries inside the provider's breaker. Anthropic takes the
system prompt as a parameter of its own, not as a message, so system messages (the
sources' among them) are lifted out of the conversation. A stream reports its usage in
two halves, the prompt's when it starts and the answer's when it ends; only both make
an exact count.

This SDK's `messages.create` takes no `temperature`, so a request's temperature is not
sent: Anthropic's models answer at their own.
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
    from anthropic import AsyncAnthropic

MODELS = (
    ModelInfo(id="claude-haiku-4-5", context_window=200_000, max_output_tokens=64_000),
    ModelInfo(id="claude-sonnet-4-5", context_window=200_000, max_output_tokens=64_000),
)

_CUT_SHORT = frozenset({"max_tokens", "model_context_window_exceeded"})
# An error event inside a stream comes with the stream's own 200; its type names the
# status the same error carries when it refuses a request outright.
_STATUS_OF_TYPE = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "overloaded_error": 529,
}


def _finish(reason: str | None) -> FinishReason:
    return "length" if reason in _CUT_SHORT else "stop"


class AnthropicMessages(HostedProvider):
    name = "anthropic"

    def __init__(
        self,
        *,
        api_key: str | None,
        base_url: str | None,
        tokens: TokenCounter,
        timeout_seconds: float,
    ) -> None:
        super().__init__(
            api_key=api_key,
            base_url=base_url,
            models=MODELS,
            tokens=tokens,
            timeout_seconds=timeout_seconds,
        )
        self._client: AsyncAnthropic | None = None

    def _sdk(self) -> AsyncAnthropic:
        if self._client is None:
            from anthropic import AsyncAnthropic  # noqa: PLC0415 - on first use, not at start

            self._client = AsyncAnthropic(
                api_key=self._api_key,
                base_url=self._base_url,
                timeout=self._timeout,
                max_retries=0,
            )
        return self._client

    @staticmethod
    def _arguments(request: CompletionRequest) -> dict[str, Any]:
        messages = with_sources(request)
        arguments: dict[str, Any] = {
            "model": request.model,
            "max_tokens": request.max_tokens,
            "messages": [
                {"role": m.role, "content": m.content} for m in messages if m.role != "system"
            ],
        }
        system = "\n\n".join(m.content for m in messages if m.role == "system")
        if system:
            arguments["system"] = system
        return arguments

    async def generate(self, request: CompletionRequest) -> Completion:
        try:
            response = await self._sdk().messages.create(**self._arguments(request))
        except Exception as error:
            self._fail(error)
        text = "".join(block.text for block in response.content if block.type == "text")
        reported = getattr(response, "usage", None)
        if reported is not None:
            usage = Usage(reported.input_tokens, reported.output_tokens)
        else:
            usage = self._tokens.estimated_usage(request, text)
        return Completion(text, request.model, usage, finish_reason=_finish(response.stop_reason))

    async def stream(self, request: CompletionRequest) -> AsyncIterator[Chunk]:
        try:
            events = await self._sdk().messages.create(**self._arguments(request), stream=True)
        except Exception as error:
            self._fail(error)
        prompt_tokens: int | None = None
        completion_tokens: int | None = None
        finish: FinishReason = "stop"
        try:
            async for event in events:
                if event.type == "message_start":
                    started = getattr(event.message, "usage", None)
                    if started is not None:
                        prompt_tokens = started.input_tokens
                elif event.type == "content_block_delta":
                    if event.delta.type == "text_delta" and event.delta.text:
                        yield Chunk(text=event.delta.text)
                elif event.type == "message_delta":
                    finish = _finish(event.delta.stop_reason)
                    ended = getattr(event, "usage", None)
                    if ended is not None:
                        completion_tokens = ended.output_tokens
                        if ended.input_tokens is not None:
                            prompt_tokens = ended.input_tokens
        except Exception as error:
            self._fail(error)
        finally:
            # Closing the response is what stops the upstream generation when our
            # caller has gone away.
            await events.close()
        usage = None
        if prompt_tokens is not None and completion_tokens is not None:
            usage = Usage(prompt_tokens, completion_tokens)
        # Without both halves the gateway counts what was produced, as an estimate.
        yield Chunk(usage=usage, finish_reason=finish)

    def _fail(self, error: Exception) -> NoReturn:
        import anthropic  # noqa: PLC0415 - loaded already by the call that failed

        if isinstance(error, anthropic.APITimeoutError):
            raise failures.timed_out(self.name) from error
        if isinstance(error, anthropic.APIConnectionError):
            raise failures.broken_off(self.name) from error
        if isinstance(error, anthropic.APIStatusError):
            status = error.status_code
            if status < 400:
                status = _STATUS_OF_TYPE.get(error.type or "", 500)
            raise failures.of_status(self.name, status, error.response.headers) from error
        if isinstance(error, anthropic.APIResponseValidationError | ValueError):
            raise failures.malformed(self.name) from error
        raise failures.broken_off(self.name) from error
